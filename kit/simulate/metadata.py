"""Per-object metadata of simulated objects, resampled from the real PLAsTiCC training metadata.

Sky positions, Milky-Way extinction (mwebv, E(B-V) in mag), deep-drilling flags and host redshifts come from
real objects of the same class (``real_training_metadata.csv.gz``, PLAsTiCC team, CC BY 4.0, see CREDIT.md),
slightly perturbed. The test set is shifted like the real one: higher redshift, worse photo-z, mostly WFD,
spectroscopic redshifts mostly missing.
"""

from __future__ import annotations

from functools import lru_cache
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


def sample_metadata(kinds: np.ndarray, test: bool, rng: np.random.Generator) -> pd.DataFrame:
    """Metadata of objects of true classes ``kinds`` (one per object, no object_id yet).

    Returns Kaggle's metadata columns (without object_id and target) plus ``true_z`` and ``true_distmod``.
    """
    real = load_real_metadata()
    kinds = np.asarray(kinds)
    n = len(kinds)
    src = np.array([source_class(int(k)) for k in kinds])
    zfac = np.array([UNKNOWN_SOURCE.get(int(k), (0, 1.0))[1] for k in kinds])
    galactic = np.isin(src, survey.GALACTIC_CLASSES)
    rows = np.empty(n, dtype=np.int64)
    for c in np.unique(src):
        pool = np.flatnonzero(real["target"].to_numpy() == c)
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
