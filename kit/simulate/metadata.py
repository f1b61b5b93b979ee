"""Per-object metadata of simulated objects, resampled from the real PLAsTiCC training metadata.

Sky positions, Milky-Way extinction (mwebv, E(B-V) in mag), deep-drilling flags and host redshifts come from
real objects of the same class (``real_training_metadata.csv.gz``, PLAsTiCC team, CC BY 4.0, see CREDIT.md),
slightly perturbed. The test set is shifted like the real one: higher redshift, worse photo-z, mostly WFD,
spectroscopic redshifts mostly missing. Test redshifts of SN Ia, II and Ibc follow the real test set's
quantiles (:data:`TEST_Z_QUANTILES`); the other classes' training redshifts are shifted by a log-normal factor.
A few test photo-zs are catastrophic failures taken from the real training set's failures.
"""

from __future__ import annotations

from functools import cache, lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from kit import survey

REAL_METADATA_PATH = Path(__file__).with_name("real_training_metadata.csv.gz")

#: Flat Lambda-CDM cosmology for distance moduli.
HUBBLE_KM_S_MPC = 70.0
OMEGA_MATTER = 0.3
SPEED_OF_LIGHT_KM_S = 299_792.458
Z_GRID_MAX, Z_GRID_STEPS = 6.0, 6001
#: Smallest redshift and photo-z a simulated extragalactic object may have.
Z_MIN = 0.01
#: Real class whose metadata rows an unknown test class borrows, and a factor on its redshifts.
UNKNOWN_SOURCE: dict[int, tuple[int, float]] = {991: (6, 1.0), 992: (42, 0.3), 993: (62, 0.8), 994: (95, 1.0)}
#: Log-normal perturbation of training redshifts and extinction.
TRAIN_Z_JITTER = 0.05
MWEBV_JITTER = 0.05
#: Sky-position jitter (degrees).
POSITION_JITTER_DEG = 0.02
#: Test shift: mean log redshift increase (per class, default) and its scatter; photo-z errors grow.
TEST_Z_SHIFT: dict[int, float] = {64: 0.15, 95: 0.2}
TEST_Z_SHIFT_DEFAULT = 0.4
TEST_Z_SCATTER = 0.3
TEST_Z_MAX = 3.0
TEST_PHOTOZ_ERR_GROWTH = 1.4
#: Host photo-z quantiles of the real test set's WFD supernovae (kit PLAsTiCC notes: 5,000-object sample of the
#: unblinded test metadata), at probabilities TEST_Z_QUANTILE_PROBS, and their median photo-z error. Test
#: photo-zs of these classes are drawn from them (see :func:`quantile_redshift`); these quantiles include the
#: photo-z failures, so the photo-zs are drawn from the table's lower 1 - TEST_PHOTOZ_FAILURE_FRACTION.
TEST_Z_QUANTILE_PROBS = (0.10, 0.25, 0.50, 0.75, 0.90)
TEST_Z_QUANTILES: dict[int, tuple[float, ...]] = {90: (0.29, 0.42, 0.57, 0.73, 0.87),
                                                  42: (0.18, 0.28, 0.42, 0.58, 0.80),
                                                  62: (0.14, 0.22, 0.33, 0.47, 0.59)}
TEST_PHOTOZ_ERR_MEDIAN: dict[int, float] = {90: 0.034, 42: 0.036, 62: 0.041}
#: A photo-z is a catastrophic failure when |photo-z - z| exceeds this times 1 + z (the real training set has
#: a gap between 0.4 and 1.0; 5.9% of its extragalactic objects are above, nearly all at photo-z 1.9-2.9).
PHOTOZ_FAILURE_REL = 0.5
#: Share of extragalactic test objects whose photo-z (and error) is a real training failure, unscaled. With
#: 3% the 99% photo-z quantile of simulated WFD test supernovae is about 2.6; the real test set's is 2.54-2.72.
TEST_PHOTOZ_FAILURE_FRACTION = 0.03
#: Share of test objects in deep-drilling fields, and of test objects with a spectroscopic redshift.
TEST_DDF_FRACTION = 0.015
TEST_SPECZ_FRACTION = 0.03
#: Scatter of the true distance modulus around the cosmological one (lensing, peculiar velocity; mag).
TRUE_DISTMOD_SCATTER = 0.05


@lru_cache(maxsize=1)
def load_real_metadata() -> pd.DataFrame:
    """The real training metadata shipped with the kit (7,848 rows, Kaggle's columns)."""
    return pd.read_csv(REAL_METADATA_PATH)


@lru_cache(maxsize=1)
def _distance_grid() -> tuple[np.ndarray, np.ndarray]:
    z = np.linspace(0.0, Z_GRID_MAX, Z_GRID_STEPS)
    inv_e = 1.0 / np.sqrt(OMEGA_MATTER * (1 + z) ** 3 + 1.0 - OMEGA_MATTER)
    comoving = np.r_[0.0, np.cumsum(0.5 * (inv_e[1:] + inv_e[:-1]) * np.diff(z))]
    return z, comoving * SPEED_OF_LIGHT_KM_S / HUBBLE_KM_S_MPC


def distmod(z: np.ndarray) -> np.ndarray:
    """Distance modulus (mag) of redshift ``z`` in a flat Lambda-CDM cosmology (H0 = 70, Omega_m = 0.3)."""
    grid, comoving_mpc = _distance_grid()
    z = np.asarray(z, dtype=np.float64)
    lum_mpc = np.interp(z, grid, comoving_mpc) * (1.0 + z)
    with np.errstate(divide="ignore"):
        return 5.0 * np.log10(lum_mpc * 1e5)


def source_class(kind: int) -> int:
    """The real class whose metadata a simulated class (or unknown true target) resamples."""
    return UNKNOWN_SOURCE.get(kind, (kind, 1.0))[0]


def is_galactic_kind(kind: int) -> bool:
    return source_class(kind) in survey.GALACTIC_CLASSES


def photoz_failed(meta: pd.DataFrame) -> np.ndarray:
    """Whether each object's photo-z is a catastrophic failure (see :data:`PHOTOZ_FAILURE_REL`)."""
    specz = meta["hostgal_specz"].to_numpy()
    photoz = meta["hostgal_photoz"].to_numpy()
    return (photoz > 0) & (np.abs(photoz - specz) > PHOTOZ_FAILURE_REL * (1.0 + specz))


def quantile_redshift(kind: int, u: np.ndarray) -> np.ndarray:
    """Redshifts at cumulative probabilities ``u`` (0 <= u < 1) of class ``kind``'s real test quantiles.

    Linear between the quantiles of :data:`TEST_Z_QUANTILES`; below the first, a volume-limited tail
    (z = q10 * (u / 0.1) ** (1/3)); above the last, an exponential tail whose density at the last quantile
    continues the linear piece below it. Clipped to Z_MIN..TEST_Z_MAX.
    """
    probs = np.array(TEST_Z_QUANTILE_PROBS)
    q = np.array(TEST_Z_QUANTILES[kind])
    u = np.asarray(u, dtype=np.float64)
    z = np.interp(u, probs, q)
    low, high = u < probs[0], u > probs[-1]
    z[low] = q[0] * (u[low] / probs[0]) ** (1.0 / 3.0)
    scale = (1.0 - probs[-1]) * (q[-1] - q[-2]) / (probs[-1] - probs[-2])
    with np.errstate(divide="ignore"):
        z[high] = q[-1] - scale * np.log((1.0 - u[high]) / (1.0 - probs[-1]))
    return np.clip(z, Z_MIN, TEST_Z_MAX)


@cache
def _train_photoz_err_median(kind: int) -> float:
    """Median photo-z error of the real training objects of class ``kind`` whose photo-z did not fail."""
    real = load_real_metadata()
    keep = (real["target"].to_numpy() == kind) & ~photoz_failed(real)
    return float(np.median(real["hostgal_photoz_err"].to_numpy()[keep]))


def quantile_test_redshifts(kind: int, z_real, photo_real, err_real, rng: np.random.Generator):
    """True redshift, photo-z and photo-z error of test objects of a class of :data:`TEST_Z_QUANTILES`.

    The photo-z follows the real test quantiles; the true redshift is the photo-z minus the resampled
    training object's photo-z error (``photo_real - z_real``), both that error and ``err_real`` scaled so the
    class's median photo-z error becomes the real test set's (:data:`TEST_PHOTOZ_ERR_MEDIAN`).
    """
    growth = TEST_PHOTOZ_ERR_MEDIAN[kind] / _train_photoz_err_median(kind)
    photoz = quantile_redshift(kind, rng.random(len(z_real)) * (1.0 - TEST_PHOTOZ_FAILURE_FRACTION))
    z = np.clip(photoz - (photo_real - z_real) * growth, Z_MIN, TEST_Z_MAX)
    return z, photoz, err_real * growth


def sample_metadata(kinds: np.ndarray, test: bool, rng: np.random.Generator) -> pd.DataFrame:
    """Metadata of objects of true classes ``kinds`` (one per object, no object_id yet).

    Returns Kaggle's metadata columns (without object_id and target) plus ``true_z`` and ``true_distmod``.
    """
    real = load_real_metadata()
    failed = photoz_failed(real)
    kinds = np.asarray(kinds)
    n = len(kinds)
    src = np.array([source_class(int(k)) for k in kinds])
    zfac = np.array([UNKNOWN_SOURCE.get(int(k), (0, 1.0))[1] for k in kinds])
    galactic = np.isin(src, survey.GALACTIC_CLASSES)
    rows = np.empty(n, dtype=np.int64)
    for c in np.unique(src):
        pool = np.flatnonzero(real["target"].to_numpy() == c)
        if test:  # photo-z failures are added separately, at the test set's own rate
            pool = pool[~failed[pool]]
        idx = np.flatnonzero(src == c)
        rows[idx] = rng.choice(pool, len(idx))
    base = real.iloc[rows].reset_index(drop=True)
    out = pd.DataFrame(index=range(n))

    ddf = base["ddf"].to_numpy().astype(bool)
    pos_rows = rows
    if test:
        ddf = rng.random(n) < TEST_DDF_FRACTION
        pos_rows = rows.copy()
        real_gal = real["hostgal_photoz"].to_numpy() == 0
        for want_ddf in (False, True):
            for gal in (False, True):
                idx = np.flatnonzero((ddf == want_ddf) & (galactic == gal))
                pool = np.flatnonzero((real["ddf"].to_numpy() == want_ddf) & (real_gal == gal))
                if len(idx):
                    pos_rows[idx] = rng.choice(pool, len(idx))
    pos = real.iloc[pos_rows].reset_index(drop=True)
    for col in ("ra", "decl", "gal_l", "gal_b"):
        out[col] = pos[col].to_numpy() + rng.normal(0.0, POSITION_JITTER_DEG, n)
    out["ra"] = np.mod(out["ra"], 360.0)
    out["gal_l"] = np.mod(out["gal_l"], 360.0)
    out["decl"] = out["decl"].clip(-90, 90)
    out["gal_b"] = out["gal_b"].clip(-90, 90)
    out["ddf"] = ddf.astype(np.int64)

    z_real = np.maximum(base["hostgal_specz"].to_numpy(), Z_MIN)
    photo_real = base["hostgal_photoz"].to_numpy()
    err_real = base["hostgal_photoz_err"].to_numpy()
    z = z_real * zfac * np.exp(rng.normal(0.0, TRAIN_Z_JITTER, n))
    err_growth = 1.0
    if test:
        shift = np.array([TEST_Z_SHIFT.get(int(c), TEST_Z_SHIFT_DEFAULT) for c in src])
        z = np.minimum(z * np.exp(rng.normal(shift, TEST_Z_SCATTER)), TEST_Z_MAX)
        err_growth = TEST_PHOTOZ_ERR_GROWTH
    stretch = (1.0 + z) / (1.0 + z_real)
    photoz = np.maximum(z + (photo_real - z_real) * stretch * err_growth, Z_MIN)
    photoz_err = err_real * stretch * err_growth
    if test:
        for kind in TEST_Z_QUANTILES:
            i = np.flatnonzero(kinds == kind)
            z[i], photoz[i], photoz_err[i] = quantile_test_redshifts(kind, z_real[i], photo_real[i], err_real[i], rng)
        # a failed photo-z lands at a wrong redshift (mostly 2-3), not at a scaled-up one
        fail = ~galactic & (rng.random(n) < TEST_PHOTOZ_FAILURE_FRACTION)
        donors = rng.choice(np.flatnonzero(failed), int(fail.sum()))
        photoz[fail] = real["hostgal_photoz"].to_numpy()[donors]
        photoz_err[fail] = real["hostgal_photoz_err"].to_numpy()[donors]
    specz = z.copy()
    if test:
        specz[rng.random(n) >= TEST_SPECZ_FRACTION] = np.nan
    out["hostgal_specz"] = np.where(galactic, 0.0, specz)
    out["hostgal_photoz"] = np.where(galactic, 0.0, photoz)
    out["hostgal_photoz_err"] = np.where(galactic, 0.0, photoz_err)
    out["distmod"] = np.where(galactic, np.nan, distmod(np.where(galactic, 1.0, photoz)))
    out["mwebv"] = base["mwebv"].to_numpy() * np.exp(rng.normal(0.0, MWEBV_JITTER, n))
    out["true_z"] = np.where(galactic, 0.0, z)
    true_mu = distmod(np.where(galactic, 1.0, z)) + rng.normal(0.0, TRUE_DISTMOD_SCATTER, n)
    out["true_distmod"] = np.where(galactic, np.nan, true_mu)
    return out
