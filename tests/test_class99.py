import numpy as np
import pytest

from kit import survey
from kit.class99 import (
    METHODS,
    add_class99,
    class99_probability,
    mask_by_group,
    p99_avocado,
    p99_constant,
    p99_product,
    p99_second,
    p99_third,
    wrong_group_rows,
)

GAL_COLS = np.isin(survey.CLASSES, survey.GALACTIC_CLASSES)


def _random(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.ones(len(survey.CLASSES)), size=n), rng.random(n) < 0.4


def test_mask_zeroes_the_other_group_and_renormalises():
    proba, galactic = _random(50)
    masked = mask_by_group(proba, galactic)
    assert np.allclose(masked.sum(axis=1), 1)
    assert np.all(masked[galactic][:, ~GAL_COLS] == 0)
    assert np.all(masked[~galactic][:, GAL_COLS] == 0)
    # the allowed classes keep their relative sizes
    row = proba[0] * (GAL_COLS if galactic[0] else ~GAL_COLS)
    assert np.allclose(masked[0], row / row.sum())


def test_mask_row_without_allowed_mass_becomes_uniform():
    proba = np.zeros((1, 14))
    proba[0, list(survey.CLASSES).index(90)] = 1.0  # extragalactic class only
    masked = mask_by_group(proba, np.array([True]))
    assert np.allclose(masked[0, GAL_COLS], 1 / GAL_COLS.sum())
    assert np.all(masked[0, ~GAL_COLS] == 0)


def test_add_class99_group_means_equal_scales_and_rows_sum_to_one():
    proba, galactic = _random(200, seed=1)
    out = add_class99(mask_by_group(proba, galactic), galactic, 0.014, 0.14, "product")
    assert out.shape == (200, 15)
    assert np.allclose(out.sum(axis=1), 1)
    assert out[galactic, -1].mean() == pytest.approx(0.014)
    assert out[~galactic, -1].mean() == pytest.approx(0.14)
    assert np.all(out[galactic][:, :14][:, ~GAL_COLS] == 0)
    assert np.all(out[~galactic][:, :14][:, GAL_COLS] == 0)


def test_add_class99_is_higher_for_uncertain_objects():
    confident = np.zeros(14)
    confident[list(survey.CLASSES).index(90)] = 0.97
    confident[list(survey.CLASSES).index(42)] = 0.03
    uncertain = np.where(~GAL_COLS, 1.0 / (~GAL_COLS).sum(), 0.0)
    out = add_class99(np.vstack([confident, uncertain]), np.array([False, False]), 0.0, 0.1, "product")
    assert out[1, -1] > out[0, -1]
    assert out[:, -1].mean() == pytest.approx(0.1)


def test_add_class99_all_certain_group_gets_the_scale():
    proba = np.zeros((3, 14))
    proba[:, 0] = 1.0  # class 6, galactic, certain: prod(1 - p) = 0
    out = add_class99(proba, np.ones(3, bool), 0.02, 0.14, "product")
    assert np.allclose(out[:, -1], 0.02)
    assert np.allclose(out.sum(axis=1), 1)


def test_add_class99_rejects_wrong_shape():
    with pytest.raises(ValueError, match="expected"):
        add_class99(np.ones((2, 13)), np.ones(2, bool), 0.1, 0.1)


def test_wrong_group_rows_are_those_the_mask_makes_uniform():
    proba, galactic = _random(6, seed=4)
    ext = list(survey.CLASSES).index(90)
    proba[0] = 0.0
    proba[0, ext] = 1.0  # galactic row with every bit of mass on an extragalactic class
    galactic[0] = True
    proba[1] = np.where(GAL_COLS, 0.0, proba[1])  # only extragalactic mass, and it is extragalactic: fine
    galactic[1] = False
    wrong = wrong_group_rows(proba, galactic)
    assert wrong.tolist() == [True] + [False] * 5
    uniform = np.allclose(mask_by_group(proba, galactic)[0, GAL_COLS], 1 / GAL_COLS.sum())
    assert uniform


# --- the class-99 methods, each on hand-made rows against values computed by hand -------------------------

IDX = {c: i for i, c in enumerate(survey.CLASSES)}


def _row(values: dict[int, float]) -> np.ndarray:
    row = np.zeros(14)
    for c, v in values.items():
        row[IDX[c]] = v
    return row


EXTRA = _row({42: 0.5, 90: 0.3, 62: 0.2})  # extragalactic, sums to 1
GAL = _row({6: 0.6, 16: 0.1, 53: 0.1, 65: 0.1, 92: 0.1})  # galactic, sums to 1
ROWS, FLAGS = np.vstack([EXTRA, GAL]), np.array([False, True])


def test_product_is_the_rescaled_product_of_complements():
    raw = np.array([0.5 * 0.7 * 0.8, 0.2 * 0.8])  # prod(1 - p) of two extragalactic rows
    two = np.vstack([EXTRA, _row({90: 0.8, 42: 0.2})])
    assert np.allclose(p99_product(two, np.array([False, False]), 0.02, 0.1), raw * 0.1 / raw.mean())
    # one object per group: rescaling to the group mean gives each exactly its scale
    assert np.allclose(p99_product(ROWS, FLAGS, 0.02, 0.1), [0.1, 0.02])


def test_constant_is_the_group_scale():
    assert np.array_equal(p99_constant(ROWS, FLAGS, 0.02, 0.1), [0.1, 0.02])


def test_second_place_formula():
    x_e = (2 * (1 - 0.5) + 0.14) / 3  # 0.38
    x_g = (2 * (1 - 0.6) + 0.014) / 3
    assert np.allclose(p99_second(ROWS, FLAGS, 0.014, 0.14), [x_e / (1 + x_e), x_g / (1 + x_g)])
    assert p99_second(ROWS, FLAGS, 0.014, 0.14)[0] == pytest.approx(0.38 / 1.38)


def test_third_place_formula():
    x_e = 1.65 * (0.5 + 0.2) ** 2.5 * (1 - 0.2) ** 0.635
    x_g = 0.2 * 0.4 * 0.9**4
    assert np.allclose(p99_third(ROWS, FLAGS), [x_e / (1 + x_e), x_g / (1 + x_g)])
    # an all-SN II object: x = 1.65, which is why x is a column before normalisation, not a probability
    assert p99_third(_row({42: 1.0})[None], np.array([False]))[0] == pytest.approx(1.65 / 2.65)


def test_avocado_constant_logit_before_the_softmax():
    # galactic row: centred logits l = ln p - mean ln p; the two largest average to 0.54 > 0.4: c = 0.4 stands
    logp = np.log([0.6, 0.1, 0.1, 0.1, 0.1])
    logits = logp - logp.mean()
    assert (logits[0] + logits[1]) / 2 > 0.4
    expected_g = np.exp(0.4) / (np.exp(0.4) + np.exp(logits).sum())
    # extragalactic row: ln 0 is floored at 1e-15 over the 9 allowed classes (6 of them empty)
    logp = np.log([0.5, 0.3, 0.2] + [1e-15] * 6)
    logits = logp - logp.mean()
    c = min(1.4, (logits[0] + logits[1]) / 2)
    expected_e = np.exp(c) / (np.exp(c) + np.exp(logits).sum())
    assert np.allclose(p99_avocado(ROWS, FLAGS), [expected_e, expected_g], rtol=1e-12)
    assert expected_g == pytest.approx(0.1759, abs=1e-4)  # e^0.4 / (e^0.4 + 1 / geometric mean)


def test_avocado_caps_the_logit_at_the_best_classes():
    # uniform over the 9 extragalactic classes: c is capped at the (equal) logits, class 99 ties with each class
    uniform = np.where(~GAL_COLS, 1 / 9, 0.0)[None]
    assert p99_avocado(uniform, np.array([False]))[0] == pytest.approx(1 / 10)
    confident = _row({90: 0.99, 42: 0.01})[None]
    assert p99_avocado(confident, np.array([False]))[0] < 0.01


@pytest.mark.parametrize("method", METHODS)
def test_every_method_gives_rows_summing_to_one(method):
    proba, galactic = _random(100, seed=3)
    out = add_class99(proba, galactic, 0.014, 0.14, method)
    assert out.shape == (100, 15)
    assert np.allclose(out.sum(axis=1), 1)
    assert np.all(out >= 0) and np.all(out[:, -1] <= 0.999)
    assert np.all(out[galactic][:, :14][:, ~GAL_COLS] == 0)
    p99 = class99_probability(proba, galactic, method, 0.014, 0.14)
    assert np.array_equal(out[:, -1], p99)
    # the known classes keep their masked shares of the rest
    masked = mask_by_group(proba, galactic)
    assert np.allclose(out[:, :14], masked * (1 - p99)[:, None])


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="avocado"):
        class99_probability(ROWS, FLAGS, "fourth")
