"""Class 99 (objects unlike any training class) and the galactic/extragalactic mask.

Pure functions: arrays in, arrays out. Columns of 14-class matrices follow ``survey.CLASSES``;
the 15-column result follows ``survey.SUBMISSION_CLASSES`` (class 99 last).

Each method below turns the masked probabilities of the 14 known classes and the galactic flag into
the final class-99 probability ``p99`` of every object; :func:`add_class99` then gives the known
classes the rest of each row (``p * (1 - p99)``), so rows sum to 1. The methods (``METHODS``):

``product`` (the public kernels' score)
    ``prod_i (1 - p_i)``, high when no known class is confident, rescaled within each group so its
    mean over the group's objects equals the group's scale (``Config.class99_galactic`` /
    ``class99_extragalactic``).
``constant``
    The group's scale for every object of the group.
``second`` (2nd place, Mike & Silogram)
    ``x = (2 (1 - max_i p_i) + s) / 3`` with ``s`` the group's scale: with the default scales the
    extragalactic formula is exactly 2nd place's (``s = 0.14``); 2nd place published no galactic
    formula, so galactic objects get the same doubt-plus-prior blend with the galactic scale (0.014).
``third`` (3rd place, Major Tom; the default)
    extragalactic ``x = 1.65 (p42 + p52 + p62 + p95)^2.5 (1 - p95 - p62)^0.635``,
    galactic ``x = 0.2 prod_i (1 - p_i)``.
``avocado`` (1st place, the honest version)
    A constant logit ``c`` (0.4 galactic, 1.4 extragalactic) put next to the model's logits before the
    softmax: ``p99 = e^c / (e^c + sum_k e^{l_k})``. See :func:`p99_avocado` for how the logits are
    rebuilt from probabilities.

The winners' ``x`` is the value of the class-99 column written next to known-class probabilities that
sum to 1, which Kaggle then normalises per row, hence ``p99 = x / (1 + x)`` (3rd place's ``x`` reaches
1.65, so it cannot be a probability itself). ``python -m kit class99-study`` scores every method against
a truth file.
"""

from __future__ import annotations

import numpy as np

from kit import survey

#: Cap on class 99 so that the known classes keep some probability after rescaling.
_MAX_P99 = 0.999
#: Probabilities are floored here before a logarithm (the metric's own floor).
_EPS = 1e-15

#: The class-99 methods (see the module docstring).
METHODS: tuple[str, ...] = ("product", "constant", "second", "third", "avocado")
#: The method a submission uses unless told otherwise: the best of `python -m kit class99-study` on the acceptance
#: competition (7,848 training / 100,000 test objects, seed 2018), weighted log loss of LightGBM with
#: aggregate features / + GP features / + augmentation / + photo-z reweighting:
#: constant 0.8591 / 0.7156 / 0.6857 / 0.6813; second 0.8645 / 0.7069 / 0.6905 / 0.6865;
#: product 0.8826 / 0.7325 / 0.7609 / 0.7571; third 0.8839 / 0.7623 / 0.7906 / 0.7889;
#: avocado 0.9101 / 0.7842 / 0.8849 / 0.8876. (On two small simulations, 2,000 / 10,000 objects, third and
#: avocado led by ~0.02.) The Makefile's CLASS99_DEFAULT names it too (tests/test_makefile.py checks they agree).
DEFAULT_METHOD = "constant"

#: 3rd place's formula: extragalactic 1.65 (p42+p52+p62+p95)^2.5 (1 - p95 - p62)^0.635, galactic 0.2 prod(1-p).
THIRD_SCALE, THIRD_POWER, THIRD_TAIL_POWER, THIRD_GALACTIC = 1.65, 2.5, 0.635, 0.2
THIRD_SUPERNOVAE: tuple[int, ...] = (42, 52, 62, 95)
THIRD_TAIL: tuple[int, ...] = (62, 95)
#: avocado's constant class-99 logits (its `convert_scores`).
AVOCADO_LOGIT_GALACTIC, AVOCADO_LOGIT_EXTRAGALACTIC = 0.4, 1.4


def _check(proba: np.ndarray, galactic: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(proba, dtype=np.float64)
    g = np.asarray(galactic, dtype=bool).ravel()
    if p.ndim != 2 or p.shape[1] != len(survey.CLASSES) or p.shape[0] != len(g):
        raise ValueError(f"proba has shape {p.shape}, expected ({len(g)}, {len(survey.CLASSES)})")
    return p, g


def mask_by_group(proba: np.ndarray, galactic: np.ndarray) -> np.ndarray:
    """Zero the classes of the other group and renormalise each row.

    Parameters
    ----------
    proba : (n, 14) array
        Probabilities, columns in ``survey.CLASSES`` order.
    galactic : (n,) bool array
        True for galactic objects (``survey.is_galactic``).

    Returns
    -------
    (n, 14) float64 array
        Rows sum to 1; a row with no mass left on its allowed classes becomes uniform over them.
    """
    p, g = _check(proba, galactic)
    allowed = survey.allowed_classes_mask(g)
    p = np.where(allowed, np.clip(p, 0.0, None), 0.0)
    total = p.sum(axis=1, keepdims=True)
    uniform = allowed / allowed.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, p / total, uniform)


def wrong_group_rows(proba: np.ndarray, galactic: np.ndarray) -> np.ndarray:
    """(n,) bool: rows with no probability on the classes their group allows.

    :func:`mask_by_group` makes these rows uniform over the allowed classes: the model put all its mass on the
    other group, a sign of inputs it has not seen (the callers count and report them).
    """
    p, g = _check(proba, galactic)
    return ~(np.where(survey.allowed_classes_mask(g), np.clip(p, 0.0, None), 0.0).sum(axis=1) > 0)


def _masked(proba: np.ndarray, galactic: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validated, masked, row-normalised probabilities and the boolean galactic flag."""
    p, g = _check(proba, galactic)
    return mask_by_group(p, g), g


def _column(p: np.ndarray, c: int) -> np.ndarray:
    return p[:, survey.CLASSES.index(c)]


def _normalised_column(x: np.ndarray) -> np.ndarray:
    """A class-99 column written next to probabilities summing to 1, after the row is normalised."""
    return x / (1.0 + x)


def p99_product(
    proba: np.ndarray, galactic: np.ndarray, scale_galactic: float = 0.014, scale_extragalactic: float = 0.14
) -> np.ndarray:
    """``prod_i (1 - p_i)`` rescaled so its mean over each group is the group's scale: (n,) p99.

    A group whose products are all zero (every object certain) gets the scale for every object.
    """
    p, g = _masked(proba, galactic)
    p99 = np.prod(1.0 - p, axis=1)
    for group, scale in ((g, scale_galactic), (~g, scale_extragalactic)):
        if not group.any():
            continue
        mean = p99[group].mean()
        p99[group] = p99[group] * (scale / mean) if mean > 0 else scale
    return p99


def p99_constant(
    proba: np.ndarray, galactic: np.ndarray, scale_galactic: float = 0.014, scale_extragalactic: float = 0.14
) -> np.ndarray:
    """The group's scale for every object: (n,) p99."""
    _, g = _check(proba, galactic)
    return np.where(g, scale_galactic, scale_extragalactic).astype(np.float64)


def p99_second(
    proba: np.ndarray, galactic: np.ndarray, scale_galactic: float = 0.014, scale_extragalactic: float = 0.14
) -> np.ndarray:
    """2nd place: ``x = (2 (1 - max p) + s) / 3``, ``s`` the group's scale; (n,) p99 = x / (1 + x)."""
    p, g = _masked(proba, galactic)
    s = np.where(g, scale_galactic, scale_extragalactic)
    return _normalised_column((2.0 * (1.0 - p.max(axis=1)) + s) / 3.0)


def p99_third(proba: np.ndarray, galactic: np.ndarray) -> np.ndarray:
    """3rd place: (n,) p99 = x / (1 + x) with

    extragalactic ``x = 1.65 (p42 + p52 + p62 + p95)^2.5 (1 - p95 - p62)^0.635``, galactic
    ``x = 0.2 prod_i (1 - p_i)``.
    """
    p, g = _masked(proba, galactic)
    supernovae = sum(_column(p, c) for c in THIRD_SUPERNOVAE)
    tail = np.clip(1.0 - sum(_column(p, c) for c in THIRD_TAIL), 0.0, None)
    extragalactic = THIRD_SCALE * supernovae**THIRD_POWER * tail**THIRD_TAIL_POWER
    galactic_x = THIRD_GALACTIC * np.prod(1.0 - p, axis=1)
    return _normalised_column(np.where(g, galactic_x, extragalactic))


def p99_avocado(
    proba: np.ndarray,
    galactic: np.ndarray,
    logit_galactic: float = AVOCADO_LOGIT_GALACTIC,
    logit_extragalactic: float = AVOCADO_LOGIT_EXTRAGALACTIC,
) -> np.ndarray:
    """avocado: a constant class-99 logit ``c`` beside the known classes' logits, then the softmax.

    ``p99 = e^c / (e^c + sum_k e^{l_k})``. avocado adds ``c`` to LightGBM's raw scores; a probability file
    only knows the logits up to a constant per row (the softmax ignores it), and with ``l_k = ln p_k`` every
    object would get ``e^c / (e^c + 1)`` (0.6 and 0.8), which says nothing about the object. The logits are
    rebuilt in the gauge of LightGBM's raw scores instead: a multiclass booster starts every class at 0 and
    its updates roughly cancel across classes, so its raw scores are close to the centred log-probabilities
    ``l_k = ln p_k - mean_j ln p_j``, taken here over the group's allowed classes (the other group's
    probabilities are zero by construction, not the model's word). Then ``p99 = 1 / (1 + e^{-c} sum_k p_k /
    G)`` with ``G`` the geometric mean of the allowed probabilities: small when one class dominates, large
    when the model hedges. As in avocado, ``c`` is capped at the midpoint of the two largest logits (its
    12.5/13 percentile of the 14 scores), so class 99 never beats the best class: a uniform row over ``K``
    allowed classes gets ``1 / (K + 1)``. avocado tuned 0.4 / 1.4 on its own raw scores over all 14 classes,
    so they carry over only approximately: the class-99 study measures how well.
    """
    p, g = _masked(proba, galactic)
    allowed = survey.allowed_classes_mask(g)
    logp = np.log(np.clip(p, _EPS, 1.0))
    centre = np.where(allowed, logp, 0.0).sum(axis=1) / allowed.sum(axis=1)
    logits = np.where(allowed, logp - centre[:, None], -np.inf)
    top2 = np.sort(logits, axis=1)[:, -2:]
    c = np.minimum(np.where(g, logit_galactic, logit_extragalactic), top2.mean(axis=1))
    top = top2[:, 1]
    # log-sum-exp of the allowed logits, shifted by the largest for stability
    lse = top + np.log(np.where(allowed, np.exp(logits - top[:, None]), 0.0).sum(axis=1))
    return 1.0 / (1.0 + np.exp(lse - c))


def class99_probability(
    proba: np.ndarray,
    galactic: np.ndarray,
    method: str = DEFAULT_METHOD,
    scale_galactic: float = 0.014,
    scale_extragalactic: float = 0.14,
) -> np.ndarray:
    """(n,) class-99 probability of ``method`` (one of ``METHODS``), capped at 0.999.

    The scales are used by ``product``, ``constant`` and ``second``; ``third`` and ``avocado`` have their
    own constants.
    """
    if method in ("product", "constant", "second"):
        fn = {"product": p99_product, "constant": p99_constant, "second": p99_second}[method]
        p99 = fn(proba, galactic, scale_galactic, scale_extragalactic)
    elif method == "third":
        p99 = p99_third(proba, galactic)
    elif method == "avocado":
        p99 = p99_avocado(proba, galactic)
    else:
        raise ValueError(f"unknown class-99 method {method!r}; expected one of {', '.join(METHODS)}")
    return np.clip(p99, 0.0, _MAX_P99)


def add_class99(
    proba: np.ndarray,
    galactic: np.ndarray,
    scale_galactic: float,
    scale_extragalactic: float,
    method: str = DEFAULT_METHOD,
) -> np.ndarray:
    """Append a class-99 column and renormalise rows.

    Parameters
    ----------
    proba : (n, 14) array
        Probabilities in ``survey.CLASSES`` order; masked by group here (a no-op if already masked).
    galactic : (n,) bool array
        Galactic flag of each object.
    scale_galactic, scale_extragalactic : float
        Mean class-99 probability given to each group's objects by ``product`` and ``constant`` (e.g. 0.014
        and 0.14), the prior term of ``second``.
    method : str
        One of ``METHODS`` (see the module docstring).

    Returns
    -------
    (n, 15) float64 array
        Columns in ``survey.SUBMISSION_CLASSES`` order; rows sum to 1. The known classes are masked and
        normalised to sum 1, then scaled by ``1 - p99``; for ``product`` the class-99 column has exactly
        the group's scale as its mean (unless the cap of 0.999 on one object bites).
    """
    p99 = class99_probability(proba, galactic, method, scale_galactic, scale_extragalactic)
    p, _ = _masked(proba, galactic)
    return np.column_stack([p * (1.0 - p99)[:, None], p99])
