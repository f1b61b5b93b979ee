"""Observation times, passbands and noise levels of simulated objects (LSST-like WFD and DDF cadence).

Numbers follow the real statistics in the kit's PLAsTiCC notes: per-band visit counts and median flux
errors for the Wide-Fast-Deep and Deep-Drilling surveys, three observing seasons separated by 100+ day
gaps inside MJD 59580..60675. Times are MJD days; flux errors are in survey flux units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kit.survey import N_PASSBANDS

SURVEY_START_MJD = 59580.0
DAYS_PER_YEAR = 365.25
N_SEASONS = 3
#: Length of one observing season (days); the rest of the year is the seasonal gap.
SEASON_LENGTH_D = (120.0, 260.0)
#: Median visits per passband u, g, r, i, z, Y.
WFD_BAND_COUNTS = np.array([13, 11, 22, 20, 30, 33])
DDF_NIGHTS = 56
DDF_EXTRA_U = 14
#: Spacing of consecutive DDF exposures within one night (days).
DDF_EXPOSURE_SPACING_D = 0.0105
#: Per-object scale of the visit counts (uniform range).
VISIT_SCALE = (0.75, 1.2)
#: Median flux error per passband u..Y (survey flux units).
WFD_FLUX_ERR = np.array([10.1, 2.5, 3.6, 5.9, 13.1, 28.1])
DDF_FLUX_ERR = np.array([2.0, 1.2, 1.2, 1.8, 2.5, 5.8])
#: Log-normal scatter of flux errors between visits and between objects.
FLUX_ERR_VISIT_SIGMA = 0.3
FLUX_ERR_OBJECT_SIGMA = 0.15
#: Photon noise of the source: flux_err**2 grows by this factor times |flux|.
SOURCE_NOISE_GAIN = 0.05
#: Detection threshold in S/N and the softness of the detection probability around it.
DETECTION_SNR = 5.0
DETECTION_SOFTNESS = 0.3


@dataclass(frozen=True)
class Design:
    """A survey's cadence and depth relative to LSST's (the constants above): ``LSST`` leaves them as they are.

    ``visits`` multiplies every visit count (WFD visits per band, DDF nights, extra u visits); ``depth_mag`` moves
    the sky-noise depth by that many magnitudes (+1: one magnitude shallower, flux errors x 10**0.4).
    """

    name: str = "lsst"
    visits: float = 1.0
    depth_mag: float = 0.0

    @property
    def err_scale(self) -> float:
        return 10.0 ** (0.4 * self.depth_mag)


LSST = Design()
#: Surveys the simulator can run (``--survey``): LSST's, and a source survey for transfer learning that is
#: shallower and faster (twice the visits, one magnitude shallower), as a wide-field transient survey is.
SURVEYS = {d.name: d for d in (LSST, Design("wide-fast", visits=2.0, depth_mag=1.0))}


@dataclass
class Cadence:
    """Observations of a group of objects, rows sorted by object then time.

    ``obj`` is the object position (0..n-1), ``mjd`` in days, ``band`` 0..5, ``base_err`` the sky-noise flux
    error; ``first``/``last`` per object the MJD of its first and last observation.
    """

    obj: np.ndarray
    mjd: np.ndarray
    band: np.ndarray
    base_err: np.ndarray
    first: np.ndarray
    last: np.ndarray


def make_cadence(ddf: np.ndarray, rng: np.random.Generator, design: Design = LSST) -> Cadence:
    """Observation schedule of objects with deep-drilling flags ``ddf`` (bool array, one per object), in the
    survey ``design`` (LSST's by default)."""
    ddf = np.asarray(ddf, dtype=bool)
    n = len(ddf)
    season_len = rng.uniform(*SEASON_LENGTH_D, n)
    start = SURVEY_START_MJD + rng.uniform(0.0, 1.0, n) * (DAYS_PER_YEAR - season_len)
    scale = rng.uniform(*VISIT_SCALE, n) * design.visits

    # WFD: independent visits per band at random times within the seasons
    wfd_counts = rng.poisson(WFD_BAND_COUNTS[None, :] * scale[:, None]) * (~ddf)[:, None]
    w_obj = np.repeat(np.repeat(np.arange(n), N_PASSBANDS), wfd_counts.ravel())
    w_band = np.repeat(np.tile(np.arange(N_PASSBANDS), n), wfd_counts.ravel())
    w_t = _season_times(w_obj, start, season_len, rng)

    # DDF: nights with one exposure in every band, a few minutes apart, plus extra u visits
    nights = rng.poisson(DDF_NIGHTS * scale) * ddf
    n_obj = np.repeat(np.arange(n), nights)
    n_t = _season_times(n_obj, start, season_len, rng)
    d_obj = np.repeat(n_obj, N_PASSBANDS)
    d_band = np.tile(np.arange(N_PASSBANDS), len(n_obj))
    d_t = np.repeat(n_t, N_PASSBANDS) + d_band * DDF_EXPOSURE_SPACING_D
    extra = rng.poisson(DDF_EXTRA_U * scale) * ddf
    e_obj = np.repeat(np.arange(n), extra)
    e_t = _season_times(e_obj, start, season_len, rng)

    obj = np.concatenate([w_obj, d_obj, e_obj])
    mjd = np.concatenate([w_t, d_t, e_t])
    band = np.concatenate([w_band, d_band, np.zeros(len(e_obj), dtype=np.int64)])
    order = np.lexsort((mjd, obj))
    obj, mjd, band = obj[order], mjd[order], band[order]

    median = np.where(ddf[obj], DDF_FLUX_ERR[band], WFD_FLUX_ERR[band]) * design.err_scale
    obj_factor = np.exp(rng.normal(0.0, FLUX_ERR_OBJECT_SIGMA, n))
    base_err = median * obj_factor[obj] * np.exp(rng.normal(0.0, FLUX_ERR_VISIT_SIGMA, len(obj)))
    first = np.full(n, np.nan)
    last = np.full(n, np.nan)
    if len(obj):
        starts = np.flatnonzero(np.r_[True, obj[1:] != obj[:-1]])
        ends = np.r_[starts[1:], len(obj)] - 1
        first[obj[starts]] = mjd[starts]
        last[obj[ends]] = mjd[ends]
    return Cadence(obj, mjd, band.astype(np.int64), base_err, first, last)



def _season_times(obj: np.ndarray, start: np.ndarray, season_len: np.ndarray, rng) -> np.ndarray:
    season = rng.integers(0, N_SEASONS, len(obj))
    return start[obj] + season * DAYS_PER_YEAR + rng.uniform(0.0, 1.0, len(obj)) * season_len[obj]


def observe(true_flux: np.ndarray, base_err: np.ndarray, rng: np.random.Generator):
    """Noisy flux, its error and the detection flag of every row.

    Returns
    -------
    flux, flux_err : ndarray
        Observed flux and its 1-sigma error (survey flux units).
    detected : ndarray of int8
        1 with a probability that rises steeply through S/N = 5.
    """
    flux_err = np.sqrt(base_err**2 + SOURCE_NOISE_GAIN * np.abs(true_flux))
    flux = true_flux + flux_err * rng.standard_normal(len(true_flux))
    snr = np.abs(flux) / flux_err
    p_det = 1.0 / (1.0 + np.exp(-np.clip((snr - DETECTION_SNR) / DETECTION_SOFTNESS, -50, 50)))
    detected = (rng.random(len(flux)) < p_det).astype(np.int8)
    return flux, flux_err, detected
