"""Class-specific model light curves: true (noise-free) difference fluxes of simulated objects.

Fluxes are in the survey's calibrated units (zero point 27.5: ``mag = 27.5 - 2.5 log10(flux)``), times in
days (MJD). Every model works on flat arrays of observations (one entry per light-curve row) and per-object
parameter arrays indexed by ``obj`` (the row's object position), so whole classes are computed at once.
Colours come from a black body seen through the passband's rest-frame wavelength, which makes colours shift
with redshift like real spectra do.
"""

from __future__ import annotations

import numpy as np

ZERO_POINT_MAG = 27.5
#: Effective wavelengths of the LSST passbands u, g, r, i, z, Y (angstrom).
BAND_WAVELENGTH_A = np.array([3670.0, 4830.0, 6220.0, 7560.0, 8690.0, 9710.0])
#: Rest wavelength at which absolute magnitudes are defined (angstrom, r band).
REFERENCE_WAVELENGTH_A = 6220.0
#: Extinction A_b / E(B-V) of the LSST passbands (R_V = 3.1).
EXTINCTION_R = np.array([4.145, 3.237, 2.273, 1.684, 1.323, 1.088])
#: h c / k in angstrom kelvin (Planck's law).
HC_OVER_K_A_K = 1.4388e8
#: Rest wavelengths beyond which the SN Ia second (near-infrared) bump shows, ramp width (angstrom).
IA_BUMP_START_A, IA_BUMP_RAMP_A = 6200.0, 1500.0
#: Most flares an M dwarf shows during the survey.
MAX_FLARES = 3
#: Flare onsets precede the observation that catches them by up to this many days.
FLARE_ONSET_LEAD_D = 0.05
#: Smallest fall time of a Bazin curve, in rise times: it needs fall > rise to have a peak (see :func:`bazin`).
MIN_FALL_OVER_RISE = 1.2
#: Days past peak at which the Paczynski curve of an unknown binary lens gets its second bump.
BINARY_LENS_SEPARATION_D = (5.0, 40.0)

# Parameter specs: ("norm", mean, sd), ("lognorm", median, sigma) or ("uniform", low, high).
# M: absolute peak magnitude in rest r (extragalactic); mag0: apparent quiescent magnitude (galactic).
# Times in rest-frame days, temperatures in kelvin.
CLASS_PHYSICS: dict[int, dict] = {
    90: dict(model="bazin", M=("norm", -19.2, 0.35), rise=("lognorm", 3.2, 0.3), fall=("lognorm", 26, 0.3),
             T0=("lognorm", 11000, 0.18), T_late=("lognorm", 5500, 0.12), cool=("lognorm", 18, 0.3),
             bump=("uniform", 0.15, 0.5)),
    52: dict(model="bazin", M=("norm", -17.0, 0.4), rise=("lognorm", 2.0, 0.25), fall=("lognorm", 14, 0.25),
             T0=("lognorm", 10000, 0.2), T_late=("lognorm", 5000, 0.15), cool=("lognorm", 14, 0.35),
             bump=("uniform", 0.0, 0.2)),
    62: dict(model="bazin", M=("norm", -17.9, 0.5), rise=("lognorm", 4.5, 0.2), fall=("lognorm", 28, 0.25),
             T0=("lognorm", 7000, 0.2), T_late=("lognorm", 4800, 0.15), cool=("lognorm", 16, 0.35),
             bump=("uniform", 0.0, 0.15)),
    67: dict(model="bazin", M=("norm", -16.8, 0.35), rise=("lognorm", 2.2, 0.2), fall=("lognorm", 10, 0.2),
             T0=("lognorm", 6000, 0.15), T_late=("lognorm", 4500, 0.12), cool=("lognorm", 12, 0.3),
             bump=("uniform", 0.0, 0.15)),
    42: dict(model="plateau", M=("norm", -17.2, 0.7), rise=("lognorm", 2.5, 0.4), plateau=("lognorm", 100, 0.15),
             T0=("lognorm", 14000, 0.2), T_late=("lognorm", 5500, 0.1), cool=("lognorm", 12, 0.35)),
    95: dict(model="bazin", M=("norm", -21.3, 0.7), rise=("lognorm", 18, 0.35), fall=("lognorm", 60, 0.35),
             T0=("lognorm", 15000, 0.2), T_late=("lognorm", 8000, 0.2), cool=("lognorm", 60, 0.4),
             bump=("uniform", 0.0, 0.05)),
    15: dict(model="tde", M=("norm", -19.6, 0.8), rise=("lognorm", 12, 0.4), fall=("lognorm", 40, 0.4),
             T0=("lognorm", 28000, 0.2), T_late=("lognorm", 25000, 0.2), cool=("lognorm", 200, 0.3)),
    64: dict(model="bazin", M=("norm", -16.3, 0.5), rise=("lognorm", 0.6, 0.3), fall=("lognorm", 2.5, 0.35),
             T0=("lognorm", 5500, 0.15), T_late=("lognorm", 2500, 0.15), cool=("lognorm", 2.0, 0.3),
             bump=("uniform", 0.0, 0.05)),
    88: dict(model="drw", M=("norm", -20.5, 1.0), tau=("lognorm", 150, 0.5), sigma_mag=("lognorm", 0.25, 0.4),
             T0=("lognorm", 20000, 0.3), blue_boost=("uniform", 1.0, 2.0)),
    6: dict(model="paczynski", mag0=("uniform", 17.5, 22.5), u0=("uniform", 0.05, 1.0),
            tE=("lognorm", 25, 0.5), T0=("lognorm", 5500, 0.3)),
    16: dict(model="eclipse", mag0=("uniform", 15.5, 21.5), period=("lognorm", 1.2, 0.9),
             depth1=("uniform", 0.1, 0.7), depth2=("uniform", 0.0, 0.4), width=("uniform", 0.03, 0.12),
             T0=("lognorm", 6000, 0.3), ref=("uniform", 0.85, 1.05)),
    53: dict(model="mira", mag0=("uniform", 13.5, 19.0), period=("uniform", 100, 500),
             amp_mag=("uniform", 1.5, 4.0), T0=("lognorm", 3000, 0.1), ref=("uniform", 0.3, 1.0)),
    65: dict(model="flare", mag0=("uniform", 19.0, 24.0), flare_mag=("uniform", 0.8, 4.0),
             decay=("lognorm", 0.06, 0.7), n_flares=("uniform", 1.0, 3.99), T0=("lognorm", 9000, 0.25)),
    92: dict(model="rrlyrae", mag0=("uniform", 16.0, 21.5), period=("uniform", 0.2, 1.0),
             amp_mag=("uniform", 0.5, 1.2), rise_frac=("uniform", 0.1, 0.25), T0=("lognorm", 6800, 0.1),
             ref=("uniform", 0.9, 1.1)),
    # unknown classes (test only)
    991: dict(model="binary_lens", mag0=("uniform", 17.5, 22.5), u0=("uniform", 0.05, 0.8),
              tE=("lognorm", 20, 0.5), T0=("lognorm", 5500, 0.3), sep=("uniform", *BINARY_LENS_SEPARATION_D),
              ratio=("uniform", 0.3, 1.0)),
    992: dict(model="bazin", M=("norm", -13.5, 1.0), rise=("lognorm", 8, 0.4), fall=("lognorm", 45, 0.4),
              T0=("lognorm", 7000, 0.2), T_late=("lognorm", 4000, 0.15), cool=("lognorm", 40, 0.4),
              bump=("uniform", 0.0, 0.05)),
    993: dict(model="bazin", M=("norm", -16.0, 0.6), rise=("lognorm", 2.8, 0.3), fall=("lognorm", 11, 0.3),
              T0=("lognorm", 7000, 0.15), T_late=("lognorm", 4000, 0.12), cool=("lognorm", 8, 0.3),
              bump=("uniform", 0.0, 0.05)),
    994: dict(model="bazin", M=("norm", -21.0, 0.6), rise=("lognorm", 60, 0.3), fall=("lognorm", 150, 0.3),
              T0=("lognorm", 10000, 0.2), T_late=("lognorm", 7000, 0.15), cool=("lognorm", 150, 0.3),
              bump=("uniform", 0.0, 0.05)),
}


def draw_params(kind: int, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Draw the model parameters of ``n`` objects of class ``kind`` (arrays of length ``n``)."""
    out = {}
    for name, spec in CLASS_PHYSICS[kind].items():
        if name == "model":
            continue
        law, a, b = spec
        if law == "norm":
            out[name] = rng.normal(a, b, n)
        elif law == "lognorm":
            out[name] = a * np.exp(rng.normal(0.0, b, n))
        else:
            out[name] = rng.uniform(a, b, n)
    return out


def mag_to_flux(mag: np.ndarray) -> np.ndarray:
    """Flux (survey units) of an apparent magnitude."""
    return 10.0 ** (-0.4 * (np.asarray(mag) - ZERO_POINT_MAG))


def _planck(wavelength_a: np.ndarray, temperature_k: np.ndarray) -> np.ndarray:
    x = np.minimum(HC_OVER_K_A_K / (wavelength_a * temperature_k), 700.0)
    return wavelength_a**-5.0 / np.expm1(x)


def blackbody_ratio(band: np.ndarray, temperature_k: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Flux in passband ``band`` relative to rest r, for a black body at ``temperature_k`` and redshift ``z``."""
    rest = BAND_WAVELENGTH_A[band] / (1.0 + z)
    return _planck(rest, temperature_k) / _planck(np.full_like(rest, REFERENCE_WAVELENGTH_A), temperature_k)


def _temperature(p, obj, tau):
    cooled = np.exp(-np.maximum(tau, 0.0) / p["cool"][obj])
    return p["T_late"][obj] + (p["T0"][obj] - p["T_late"][obj]) * cooled


def bazin(tau: np.ndarray, rise: np.ndarray, fall: np.ndarray) -> np.ndarray:
    """Bazin et al. (2009) transient shape ``exp(-tau/fall) / (1 + exp(-tau/rise))``, divided by its peak.

    The curve has a peak only when it falls more slowly than it rises: at ``rise * ln(fall/rise - 1)``, where
    it is ``(1 - rise/fall) * (fall/rise - 1) ** (-rise/fall)``. A quicker fall would make it grow without bound
    into the past, so falls are slowed to at least ``MIN_FALL_OVER_RISE * rise``. The result lies in (0, 1] for
    any positive ``rise`` and ``fall`` (days, arrays broadcasting with ``tau``).
    """
    rise = np.asarray(rise, dtype=np.float64)
    fall = np.maximum(np.asarray(fall, dtype=np.float64), MIN_FALL_OVER_RISE * rise)
    ratio = fall / rise
    log_peak = np.log1p(-1.0 / ratio) - np.log(ratio - 1.0) / ratio
    return np.exp(np.minimum(-tau / fall - np.logaddexp(0.0, -tau / rise) - log_peak, 0.0))


def _transient_shape(model, p, obj, tau, band, z):
    """Rest-frame shape (peak about 1) and black-body temperature of the transient models."""
    rise = p["rise"][obj]
    if model == "plateau":
        onset = 1.0 / (1.0 + np.exp(-np.clip(tau / rise, -50, 50)))
        drop = 1.0 / (1.0 + np.exp(np.clip((tau - p["plateau"][obj]) / 6.0, -50, 50)))
        shape = onset * (0.85 * np.exp(-np.maximum(tau, 0) / 400.0) * drop + 0.15 * np.exp(-np.maximum(tau, 0) / 80.0))
    elif model == "tde":
        onset = 1.0 / (1.0 + np.exp(-np.clip(tau / rise, -50, 50)))
        fall = p["fall"][obj]
        shape = onset * ((np.maximum(tau, 0.0) + fall) / fall) ** (-5.0 / 3.0)
    else:
        fall = p["fall"][obj]
        shape = bazin(tau, rise, fall)
        rest = BAND_WAVELENGTH_A[band] / (1.0 + z)
        ramp = np.clip((rest - IA_BUMP_START_A) / IA_BUMP_RAMP_A, 0.0, 1.0)
        shape = shape + p["bump"][obj] * ramp * np.exp(-0.5 * ((tau - 2.0 * fall) / (0.5 * fall)) ** 2)
    return shape, _temperature(p, obj, tau)


def _drw(p, obj, t, rng):
    """Damped random walk in magnitudes (rows sorted by object then time)."""
    starts = np.flatnonzero(np.r_[True, obj[1:] != obj[:-1]])
    counts = np.diff(np.r_[starts, len(obj)])
    dt = np.diff(t, prepend=t[0])
    dt[starts] = np.inf
    decay = np.exp(-dt / p["tau"][obj])
    kick = p["sigma_mag"][obj] * np.sqrt(1.0 - decay**2) * rng.standard_normal(len(obj))
    x = kick.copy()  # first row of each object: decay 0, a stationary draw
    for k in range(1, int(counts.max()) if len(counts) else 0):
        rows = starts[counts > k] + k
        x[rows] += x[rows - 1] * decay[rows]
    return x


def _paczynski(t, t0, u0, te):
    u = np.sqrt(u0**2 + ((t - t0) / te) ** 2)
    return (u**2 + 2.0) / (u * np.sqrt(u**2 + 4.0)) - 1.0


def model_flux(kind: int, p: dict[str, np.ndarray], obj: np.ndarray, t: np.ndarray, band: np.ndarray,
               z: np.ndarray, mu: np.ndarray, t0: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """True difference flux of every row (before Milky-Way extinction).

    Parameters
    ----------
    kind
        Class (or unknown true target 991-994).
    p
        Per-object parameters from :func:`draw_params`.
    obj, t, band
        Per row: object position (0..n-1), MJD (days), passband 0..5; rows sorted by object then time.
    z, mu, t0
        Per object: true redshift (0 for galactic), true distance modulus (mag; unused for galactic),
        reference time (MJD: peak of transients, phase zero of variables).
    rng
        Random generator for stochastic models (AGN, flares).
    """
    model = CLASS_PHYSICS[kind]["model"]
    zr, dt = z[obj], t - t0[obj]
    if model in ("bazin", "plateau", "tde"):
        tau = dt / (1.0 + zr)
        shape, temp = _transient_shape(model, p, obj, tau, band, zr)
        return mag_to_flux(p["M"] + mu)[obj] * shape * blackbody_ratio(band, temp, zr)
    if model == "drw":
        x = _drw(p, obj, t, rng)
        boost = 1.0 + (p["blue_boost"][obj] - 1.0) * np.clip((6220.0 - BAND_WAVELENGTH_A[band]) / 2550.0, 0, 1)
        return mag_to_flux(p["M"] + mu)[obj] * np.expm1(-0.4 * np.log(10) * x * boost) * blackbody_ratio(
            band, p["T0"][obj], zr)
    base = mag_to_flux(p["mag0"])[obj] * blackbody_ratio(band, p["T0"][obj], zr)
    if model == "paczynski":
        return base * _paczynski(t, t0[obj], p["u0"][obj], p["tE"][obj])
    if model == "binary_lens":
        first = _paczynski(t, t0[obj], p["u0"][obj], p["tE"][obj])
        second = _paczynski(t, t0[obj] + p["sep"][obj], p["u0"][obj] / p["ratio"][obj], p["tE"][obj] * p["ratio"][obj])
        return base * (first + second)
    if model == "eclipse":
        phase = np.mod(dt / p["period"][obj], 1.0)
        w = p["width"][obj]
        dip = p["depth1"][obj] * np.exp(-0.5 * (np.minimum(phase, 1 - phase) / w) ** 2)
        dip += p["depth2"][obj] * np.exp(-0.5 * ((phase - 0.5) / w) ** 2)
        return base * (1.0 - dip - p["ref"][obj])
    if model in ("mira", "rrlyrae"):
        phase = np.mod(dt / p["period"][obj], 1.0)
        if model == "mira":
            wave = 0.5 * np.cos(2 * np.pi * phase)
        else:
            rf = p["rise_frac"][obj]
            wave = np.where(phase < rf, phase / rf, 1.0 - (phase - rf) / (1.0 - rf)) - 0.5
        return base * (10.0 ** (0.4 * p["amp_mag"][obj] * wave) - p["ref"][obj])
    if model == "flare":
        return base * _flares(p, obj, t, rng)
    raise ValueError(f"unknown light-curve model {model!r}")


def _flares(p, obj, t, rng):
    """Sum of exponentially decaying flares anchored on random observations (relative to quiescence)."""
    starts = np.flatnonzero(np.r_[True, obj[1:] != obj[:-1]])
    counts = np.diff(np.r_[starts, len(obj)])
    out = np.zeros(len(obj))
    n_flares = p["n_flares"].astype(int)
    for k in range(MAX_FLARES):
        anchor = starts + (rng.random(len(starts)) * counts).astype(int)
        onset = t[anchor] - rng.uniform(0.0, FLARE_ONSET_LEAD_D, len(starts))
        amp = np.where(n_flares > k, mag_to_flux(-p["flare_mag"]) / mag_to_flux(0.0) - 1.0, 0.0)
        since = t - onset[obj]
        out += np.where(since >= 0, amp[obj] * np.exp(-np.maximum(since, 0) / p["decay"][obj]), 0.0)
    return out
