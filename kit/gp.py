"""A 2-D Gaussian-process model of light curves over (time, wavelength), fitted per object (numba).

The model of avocado, the winning PLAsTiCC solution: after a robust per-band background (the band's
median flux) is subtracted, an object's fluxes are a zero-mean GP over time and the passband's
effective wavelength, with a Matérn-3/2 kernel on the scaled distance
``r = sqrt((dt / l_time)^2 + (dlambda / l_wavelength)^2)``::

    k = amplitude^2 * (1 + sqrt(3) r) * exp(-sqrt(3) r)

plus each point's own ``flux_err^2`` on the diagonal. ``l_wavelength`` is a setting (avocado: 6,000 Å);
``l_time`` and ``amplitude`` are fitted per object by maximising the marginal likelihood.

Why it is fast (avocado fitted ~2.5 objects/s per core with george and scipy):
- every object is fitted in compiled code, with no Python per object; Cholesky factors come from LAPACK;
- the correlation matrices and the GP mean on a grid are computed by branch-free loops that vectorise, with
  ``exp`` as a polynomial (:func:`_matern_r2`);
- the likelihood is maximised by a fixed, short search (a coarse grid over ``l_time``, then Newton steps
  on a local quadratic model), about 24 factorisations per object, with no restarts;
- points of one band taken within :data:`NIGHT_D` of each other (deep-drilling fields revisit a band
  several times a night) are merged into their inverse-variance mean first: the same information in
  fewer points, and the cost grows with the cube of their number.

:func:`fit` returns a :class:`GPFit` of many objects (ragged, like the light curves), which predicts a
smooth mean and its uncertainty at any (time, wavelength) with :func:`predict`.
"""

from __future__ import annotations

import ctypes
import functools
import math
from dataclasses import dataclass

import numba
import numpy as np
from numba.extending import get_cython_function_address
from threadpoolctl import threadpool_limits

from kit import idsets, survey

#: Wavelength length scale (Å), fixed (avocado's package value).
WAVELENGTH_SCALE_A = 6000.0
#: Bounds and start grid of the fitted time length scale (days).
TIME_SCALE_BOUNDS_D = (1.0, 1000.0)
TIME_SCALE_START_D = (3.0, 12.0, 50.0, 200.0)
#: The start grid tries the data's rms amplitude and this much more (log): long, large trends are a second mode.
START_AMPLITUDE_STEP = 1.5
#: Newton steps after the grid, their first probe distance and longest step (log space).
NEWTON_STEPS, NEWTON_PROBE, NEWTON_MAX_STEP = 3, 0.3, 1.5
#: Then Newton steps in amplitude alone (same time scale), and their first probe distance (log).
AMPLITUDE_STEPS, AMPLITUDE_PROBE = 2, 0.1
#: A Newton step that gains less log likelihood than this halves the probe distance.
NEWTON_TOL = 0.5
#: Points of one band closer in time than this (days) are merged.
NIGHT_D = 0.5
#: Relative jitter on the kernel's diagonal that keeps factorisations stable.
JITTER = 1e-8
#: Squared scaled distance beyond which the correlation is taken as 0: (1 + r) e^-r < 1e-15 for r = sqrt(3 * 500).
NEGLIGIBLE_R2 = 500.0


@dataclass(frozen=True)
class GPFit:
    """Fitted GPs of many objects. Arrays over objects are indexed by object position.

    Attributes
    ----------
    starts
        Start of each object's points in the ragged arrays, length n_objects + 1.
    time, wavelength, alpha
        The (merged) points and ``K^-1 y`` of each object (days, Å, flux units).
    chol
        Each object's lower Cholesky factor, flattened row-major at ``chol_starts``.
    background, scale
        Per object and band background (n_objects, 6) and the flux scale each fit was made in.
    time_scale, amplitude
        Fitted hyperparameters (days; flux units).
    wavelength_scale
        The fixed wavelength length scale (Å).
    """

    starts: np.ndarray
    time: np.ndarray
    wavelength: np.ndarray
    alpha: np.ndarray
    chol: np.ndarray
    chol_starts: np.ndarray
    background: np.ndarray
    scale: np.ndarray
    time_scale: np.ndarray
    amplitude: np.ndarray
    log_likelihood: np.ndarray
    wavelength_scale: float

    @property
    def n_objects(self) -> int:
        return self.starts.size - 1


def fit(
    starts: np.ndarray,
    mjd: np.ndarray,
    passband: np.ndarray,
    flux: np.ndarray,
    flux_err: np.ndarray,
    wavelength_scale: float = WAVELENGTH_SCALE_A,
    *,
    time_scale: np.ndarray | None = None,
    amplitude: np.ndarray | None = None,
) -> GPFit:
    """Fit one GP per object (or only factor its kernel at given hyperparameters).

    Parameters
    ----------
    starts
        Start row of each object in the arrays below, plus the total row count (length n_objects + 1);
        each object's rows are contiguous, in any order within the object.
    mjd, passband, flux, flux_err
        Light-curve rows (days, 0..5, flux units, flux units).
    time_scale, amplitude
        Given together (per object; days, flux units), nothing is fitted: each object's kernel is only
        factored at these hyperparameters (e.g. another fitter's, to compare features). NaN: no GP.

    Returns
    -------
    GPFit
        An object with no usable point (no finite flux with a positive error whose square is finite and
        positive) gets NaN hyperparameters
        and predicts its background.
    """
    if (time_scale is None) != (amplitude is None):
        raise ValueError("give both time_scale and amplitude, or neither")
    starts = np.ascontiguousarray(starts, dtype=np.int64)
    wavelengths = np.asarray(survey.PASSBAND_WAVELENGTH_A, dtype=np.float64)
    t, w, y, v, pstarts, background, scale = _prepare(
        starts,
        np.asarray(mjd, dtype=np.float64),
        np.asarray(passband, dtype=np.int64),
        np.asarray(flux, dtype=np.float64),
        np.asarray(flux_err, dtype=np.float64),
        wavelengths,
    )
    n = np.diff(pstarts)
    chol_starts = np.zeros(n.size + 1, dtype=np.int64)
    np.cumsum(n * n, out=chol_starts[1:])
    alpha = np.empty_like(y)
    chol = np.zeros(chol_starts[-1])  # factors fill the lower triangles; the upper ones stay 0
    params = np.empty((n.size, 3))
    with threadpool_limits(limits=1, user_api="blas"):  # LAPACK on 125x125 matrices: threads only cost
        if time_scale is None:
            _fit_all(t, w, y, v, pstarts, 1.0 / wavelength_scale, np.log(TIME_SCALE_BOUNDS_D),
                     np.log(np.asarray(TIME_SCALE_START_D)), alpha, chol, chol_starts, params, _dpotrf())
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                log_lt = np.log(np.asarray(time_scale, dtype=np.float64))
                log_amp = np.log(np.asarray(amplitude, dtype=np.float64) / scale)
            _factor_all(t, w, y, v, pstarts, 1.0 / wavelength_scale, log_lt, log_amp, alpha, chol, chol_starts,
                        params, _dpotrf())
    return GPFit(
        starts=pstarts, time=t, wavelength=w, alpha=alpha, chol=chol, chol_starts=chol_starts,
        background=background, scale=scale, time_scale=params[:, 0], amplitude=params[:, 1] * scale,
        log_likelihood=params[:, 2], wavelength_scale=float(wavelength_scale),
    )


def object_arrays(lightcurves) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The rows of a light-curve frame grouped by object, as :func:`fit` takes them.

    Returns the object ids (ascending), their row starts plus the row count, and the ``mjd``, ``passband``,
    ``flux`` and ``flux_err`` arrays (rows stably sorted by object when they were not already).
    """
    ids = lightcurves[survey.OBJECT_ID].to_numpy()
    order = None if idsets.is_sorted(ids) else np.argsort(ids, kind="stable")
    col = {k: (lightcurves[k].to_numpy() if order is None else lightcurves[k].to_numpy()[order])
           for k in ("mjd", "passband", "flux", "flux_err")}
    ids = ids if order is None else ids[order]
    run = idsets.run_starts(ids)
    return ids[run], np.append(run, ids.size).astype(np.int64), col


def predict(
    gp: GPFit, obj: np.ndarray, time: np.ndarray, passband_or_wavelength: np.ndarray, *, wavelength: bool = False,
    return_std: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """GP mean (background included) and standard deviation at query points.

    Parameters
    ----------
    obj
        Object position (0..n_objects-1) of each query point.
    time
        Query times (days, MJD).
    passband_or_wavelength
        Passband 0..5 of each query (its background is added back), or, with ``wavelength=True``, a
        wavelength in Å (the background of the nearest passband is added back).
    return_std
        Compute the standard deviation too (a triangular solve per point; ``False`` returns NaN).
    """
    obj = np.asarray(obj, dtype=np.int64)
    x = np.asarray(passband_or_wavelength, dtype=np.float64)
    bands_a = np.asarray(survey.PASSBAND_WAVELENGTH_A, dtype=np.float64)
    if wavelength:
        wl = x
        band = np.abs(x[:, None] - bands_a[None, :]).argmin(axis=1)
    else:
        band = x.astype(np.int64)
        wl = bands_a[band]
    mean = np.empty(obj.size)
    std = np.empty(obj.size)
    _predict(gp.time, gp.wavelength, gp.alpha, gp.chol, gp.chol_starts, gp.starts, gp.time_scale,
             gp.amplitude / gp.scale, 1.0 / gp.wavelength_scale, obj, np.asarray(time, dtype=np.float64), wl,
             return_std, mean, std)
    mean = mean * gp.scale[obj] + gp.background[obj, band]
    return mean, std * gp.scale[obj]


@functools.lru_cache(maxsize=1)
def _dpotrf():
    """LAPACK's Cholesky (scipy's dpotrf), as a function the compiled code calls in place.

    Passed as an argument (not a global) so that numba can cache the functions that call it. In place and
    without numpy's copies it takes about half the time of ``np.linalg.cholesky`` on a 125 x 125 matrix.
    """
    address = get_cython_function_address("scipy.linalg.cython_lapack", "dpotrf")
    return ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * 5)(address)


# --- compiled parts -----------------------------------------------------------------------------------
@numba.njit(cache=True)
def _median(x: np.ndarray) -> float:
    return np.median(x) if x.size else 0.0


@numba.njit(cache=True)
def _prepare(starts, mjd, passband, flux, flux_err, wavelengths):
    """Background-subtracted, scaled and night-merged points of every object (ragged)."""
    n_obj = starts.size - 1
    n_rows = starts[-1]
    t = np.empty(n_rows)
    w = np.empty(n_rows)
    y = np.empty(n_rows)
    v = np.empty(n_rows)
    pstarts = np.zeros(n_obj + 1, dtype=np.int64)
    background = np.zeros((n_obj, 6))
    scale = np.ones(n_obj)
    k = 0
    for o in range(n_obj):
        a, b = starts[o], starts[o + 1]
        # usable rows, ordered by (band, time)
        keys = np.empty(b - a)
        idx = np.empty(b - a, dtype=np.int64)
        m = 0
        for r in range(a, b):
            e2 = flux_err[r] * flux_err[r]  # its weight 1 / e2 must be finite and positive
            if np.isfinite(flux[r]) and np.isfinite(mjd[r]) and 0.0 < e2 < np.inf and 0 <= passband[r] < 6:
                keys[m] = passband[r] * 1e6 + mjd[r]
                idx[m] = r
                m += 1
        order = idx[:m][np.argsort(keys[:m], kind="mergesort")]
        for band in range(6):
            vals = np.empty(m)
            nb = 0
            for r in order:
                if passband[r] == band:
                    vals[nb] = flux[r]
                    nb += 1
            background[o, band] = _median(vals[:nb])
        peak = 0.0
        for r in order:
            peak = max(peak, abs(flux[r] - background[o, passband[r]]))
        s = peak if peak > 0 else 1.0
        scale[o] = s
        pstarts[o] = k
        i = 0
        while i < m:
            r0 = order[i]
            sw = 0.0
            swy = 0.0
            swt = 0.0
            j = i
            while j < m and passband[order[j]] == passband[r0] and mjd[order[j]] - mjd[r0] < NIGHT_D:
                rj = order[j]
                wt = 1.0 / (flux_err[rj] * flux_err[rj])
                sw += wt
                swy += wt * (flux[rj] - background[o, passband[rj]])
                swt += wt * mjd[rj]
                j += 1
            t[k] = swt / sw
            w[k] = wavelengths[passband[r0]]
            y[k] = swy / sw / s
            v[k] = 1.0 / sw / (s * s)
            k += 1
            i = j
    pstarts[n_obj] = k
    return t[:k].copy(), w[:k].copy(), y[:k].copy(), v[:k].copy(), pstarts, background, scale


@numba.njit(cache=True, fastmath={"contract"}, inline="always")
def _matern_r2(r2):
    """The kernel's correlation ``(1 + r) e^-r``, ``r = sqrt(3 r2)``, at a squared scaled distance ``r2``; 0 beyond
    :data:`NEGLIGIBLE_R2`.

    Branch-free so that loops over it vectorise (numba's LLVM has no vector ``exp`` here): ``e^-r`` is
    ``(e^(-r/128))^128``, a degree-12 Taylor polynomial (|r/128| < 0.31 inside the cut) then 7 squarings,
    within about 1e-14 of ``math.exp``'s value relative to 1.
    """
    r = math.sqrt(3.0 * r2)
    x = r * (-1.0 / 128.0)
    p = 1.0 / 479001600.0
    for k in (39916800.0, 3628800.0, 362880.0, 40320.0, 5040.0, 720.0, 120.0, 24.0, 6.0, 2.0, 1.0, 1.0):
        p = p * x + 1.0 / k
    for _ in range(7):
        p = p * p
    c = (1.0 + r) * p
    return c if r2 <= NEGLIGIBLE_R2 else 0.0


@numba.njit(cache=True, inline="always")
def _matern(dt, dw, inv_lt, inv_lw):
    a = dt * inv_lt
    b = dw * inv_lw
    return _matern_r2(a * a + b * b)


@numba.njit(cache=True, fastmath={"contract"})
def _correlation(t, w, log_lt, inv_lw, C):
    """The kernel's correlation matrix (amplitude 1) at time scale ``exp(log_lt)``, into ``C``'s lower triangle
    (the upper one is left as it was: nothing reads it)."""
    n = t.size
    inv_lt = math.exp(-log_lt)
    for i in range(n):
        ti = t[i]
        wi = w[i]
        row = C[i]
        for j in range(i):
            dt = (ti - t[j]) * inv_lt
            dw = (wi - w[j]) * inv_lw
            row[j] = _matern_r2(dt * dt + dw * dw)
        row[i] = 1.0


@numba.njit(cache=True)
def _loglik(C, y, v, log_amp, alpha, K, potrf, ints):
    """Log marginal likelihood of amplitude ``exp(log_amp)`` given the correlation ``C``.

    ``K`` (n x n, preallocated) receives the kernel matrix and then, in its lower triangle, its Cholesky factor
    (LAPACK's dpotrf, called in place: ``potrf`` is its address, ``ints`` = [ord('U'), n, info]);
    ``alpha`` receives ``K^-1 y``. Returns -inf where K is not positive definite (never the maximum).
    """
    n = y.size
    amp2 = math.exp(2.0 * log_amp)
    for i in range(n):
        for j in range(i + 1):
            K[i, j] = C[i, j] * amp2
        K[i, i] += amp2 * JITTER + v[i]
    ints[1] = n
    potrf(ints[0:].ctypes, ints[1:].ctypes, K.ctypes, ints[1:].ctypes, ints[2:].ctypes)
    if ints[2] != 0:
        return -np.inf
    L = K
    logdet = 0.0
    quad = 0.0
    for i in range(n):
        s = y[i]
        for q in range(i):
            s -= L[i, q] * alpha[q]
        alpha[i] = s / L[i, i]
        logdet += math.log(L[i, i])
        quad += alpha[i] * alpha[i]
    for i in range(n - 1, -1, -1):  # L^T alpha = z, by rows of L (contiguous)
        a = alpha[i] / L[i, i]
        alpha[i] = a
        row = L[i]
        for q in range(i):
            alpha[q] -= row[q] * a
    return -0.5 * quad - logdet - 0.5 * n * math.log(2.0 * math.pi)


@numba.njit(cache=True)
def _grid_start(t, w, y, v, inv_lw, log_starts, u0, alpha, K, potrf, ints, C):
    """The best (log amplitude, log time scale, log likelihood) of a coarse grid: the time scales
    ``log_starts`` at the data's rms amplitude ``u0`` and :data:`START_AMPLITUDE_STEP` more."""
    best, lt, u = -np.inf, log_starts[0], u0
    for s in log_starts:
        _correlation(t, w, s, inv_lw, C)
        for du in (0.0, START_AMPLITUDE_STEP):
            ll = _loglik(C, y, v, u0 + du, alpha, K, potrf, ints)
            if ll > best:
                best, lt, u = ll, s, u0 + du
    return u, lt, best


@numba.njit(cache=True)
def _newton(t, w, y, v, inv_lw, log_bounds, u, lt, best, alpha, K, potrf, ints, C, C_hi):
    """:data:`NEWTON_STEPS` Newton steps from (``u``, ``lt``), whose log likelihood is ``best``, on a quadratic
    model of the log likelihood fitted to 5 points around it (a long step up the gradient where the model is not
    concave; the best point seen wins; a step that gains less than :data:`NEWTON_TOL` halves the probe
    distance). Returns (u, lt, best)."""
    h = NEWTON_PROBE
    for _ in range(NEWTON_STEPS):
        lt_lo = max(lt - h, log_bounds[0])
        lt_hi = min(lt + h, log_bounds[1])
        _correlation(t, w, lt, inv_lw, C)
        f_up = _loglik(C, y, v, u + h, alpha, K, potrf, ints)
        f_um = _loglik(C, y, v, u - h, alpha, K, potrf, ints)
        _correlation(t, w, lt_hi, inv_lw, C_hi)
        f_lp = _loglik(C_hi, y, v, u, alpha, K, potrf, ints)
        f_pp = _loglik(C_hi, y, v, u + h, alpha, K, potrf, ints)
        _correlation(t, w, lt_lo, inv_lw, C)
        f_lm = _loglik(C, y, v, u, alpha, K, potrf, ints)
        cand_u, cand_l, cand_f = u, lt, best
        for pu, pl, pf in ((u + h, lt, f_up), (u - h, lt, f_um), (u, lt_hi, f_lp), (u, lt_lo, f_lm),
                           (u + h, lt_hi, f_pp)):
            if pf > cand_f:
                cand_u, cand_l, cand_f = pu, pl, pf
        hl = lt_hi - lt_lo
        finite = (np.isfinite(f_up) and np.isfinite(f_um) and np.isfinite(f_lp) and np.isfinite(f_lm)
                  and np.isfinite(f_pp) and np.isfinite(best))
        if finite and hl > 0:
            g_u = (f_up - f_um) / (2 * h)
            g_l = (f_lp - f_lm) / hl
            h_uu = (f_up - 2 * best + f_um) / (h * h)
            h_ll = -1.0
            h_ul = 0.0
            if lt_hi > lt and lt_lo < lt:
                h_ll = ((f_lp - best) / (lt_hi - lt) - (best - f_lm) / (lt - lt_lo)) / (0.5 * hl)
            if lt_hi > lt:
                h_ul = (f_pp - f_up - f_lp + best) / (h * (lt_hi - lt))
            det = h_uu * h_ll - h_ul * h_ul
            if h_uu < 0 and det > 0:
                du = -(h_ll * g_u - h_ul * g_l) / det
                dl = -(-h_ul * g_u + h_uu * g_l) / det
            else:  # not concave here: a long step up the gradient
                norm = math.sqrt(g_u * g_u + g_l * g_l)
                du = g_u / norm * NEWTON_MAX_STEP if norm > 0 else 0.0
                dl = g_l / norm * NEWTON_MAX_STEP if norm > 0 else 0.0
            norm = math.sqrt(du * du + dl * dl)
            if norm > NEWTON_MAX_STEP:
                du *= NEWTON_MAX_STEP / norm
                dl *= NEWTON_MAX_STEP / norm
            if norm > 0:
                nl = min(max(lt + dl, log_bounds[0]), log_bounds[1])
                _correlation(t, w, nl, inv_lw, C)
                fn = _loglik(C, y, v, u + du, alpha, K, potrf, ints)
                if fn > cand_f:
                    cand_u, cand_l, cand_f = u + du, nl, fn
        if cand_f - best < NEWTON_TOL:
            h *= 0.5
        u, lt, best = cand_u, cand_l, cand_f
    return u, lt, best


@numba.njit(cache=True)
def _fit_one(t, w, y, v, inv_lw, log_bounds, log_starts, alpha, K, potrf, ints):
    """Maximise the marginal likelihood over (log amplitude, log time scale).

    The grid of :func:`_grid_start`, :data:`NEWTON_STEPS` steps of :func:`_newton`, then Newton steps in
    amplitude alone at the time scale found. Correlation matrices are shared by the points that differ only in
    amplitude. Returns (log amplitude, log time scale, log likelihood); ``K`` holds the Cholesky factor at those.
    """
    n = t.size
    power = 0.0
    for i in range(n):
        power += y[i] * y[i]
    u0 = 0.5 * math.log(max(power / n, 1e-6))
    C = np.empty((n, n))
    C_hi = np.empty((n, n))
    u, lt, best = _grid_start(t, w, y, v, inv_lw, log_starts, u0, alpha, K, potrf, ints, C)
    u, lt, best = _newton(t, w, y, v, inv_lw, log_bounds, u, lt, best, alpha, K, potrf, ints, C, C_hi)
    # the likelihood of bright objects peaks sharply in amplitude: Newton steps in amplitude alone, C kept
    _correlation(t, w, lt, inv_lw, C)
    h = AMPLITUDE_PROBE
    for _ in range(AMPLITUDE_STEPS):
        f_p = _loglik(C, y, v, u + h, alpha, K, potrf, ints)
        f_m = _loglik(C, y, v, u - h, alpha, K, potrf, ints)
        cand_u, cand_f = u, best
        if f_p > cand_f:
            cand_u, cand_f = u + h, f_p
        if f_m > cand_f:
            cand_u, cand_f = u - h, f_m
        curv = (f_p - 2 * best + f_m) / (h * h)
        if curv < 0 and np.isfinite(curv):
            du = min(max(-(f_p - f_m) / (2 * h) / curv, -NEWTON_MAX_STEP), NEWTON_MAX_STEP)
            fn = _loglik(C, y, v, u + du, alpha, K, potrf, ints)
            if fn > cand_f:
                cand_u, cand_f = u + du, fn
        u, best = cand_u, cand_f
        h *= 0.5
    best = _loglik(C, y, v, u, alpha, K, potrf, ints)
    return u, lt, best


@numba.njit(cache=True)
def _fit_all(t, w, y, v, pstarts, inv_lw, log_bounds, log_starts, alpha, chol, chol_starts, params, potrf):
    ints = np.array([ord("U"), 0, 0], dtype=np.int32)
    for o in range(pstarts.size - 1):
        a, b = pstarts[o], pstarts[o + 1]
        n = b - a
        if n == 0:
            params[o, 0] = np.nan
            params[o, 1] = np.nan
            params[o, 2] = np.nan
            continue
        K = chol[chol_starts[o]:chol_starts[o + 1]].reshape((n, n))
        log_amp, log_lt, ll = _fit_one(t[a:b], w[a:b], y[a:b], v[a:b], inv_lw, log_bounds, log_starts,
                                       alpha[a:b], K, potrf, ints)
        params[o, 0] = math.exp(log_lt)
        params[o, 1] = math.exp(log_amp)
        params[o, 2] = ll


@numba.njit(cache=True)
def _factor_all(t, w, y, v, pstarts, inv_lw, log_lt, log_amp, alpha, chol, chol_starts, params, potrf):
    """:func:`_fit_all` at given (log) hyperparameters: one factorisation per object, no search."""
    ints = np.array([ord("U"), 0, 0], dtype=np.int32)
    for o in range(pstarts.size - 1):
        a, b = pstarts[o], pstarts[o + 1]
        n = b - a
        if n == 0 or not (np.isfinite(log_lt[o]) and np.isfinite(log_amp[o])):
            params[o, 0] = np.nan
            params[o, 1] = np.nan
            params[o, 2] = np.nan
            continue
        C = np.empty((n, n))
        _correlation(t[a:b], w[a:b], log_lt[o], inv_lw, C)
        K = chol[chol_starts[o]:chol_starts[o + 1]].reshape((n, n))
        ll = _loglik(C, y[a:b], v[a:b], log_amp[o], alpha[a:b], K, potrf, ints)
        params[o, 0] = math.exp(log_lt[o])
        params[o, 1] = math.exp(log_amp[o])
        params[o, 2] = ll


@numba.njit(cache=True, fastmath=True)
def _predict(t, w, alpha, chol, chol_starts, pstarts, time_scale, amplitude, inv_lw, obj, qt, qw, with_std,
             mean, std):
    kvec = np.empty(0)
    for q in range(obj.size):
        o = obj[q]
        a, b = pstarts[o], pstarts[o + 1]
        n = b - a
        if n == 0 or not np.isfinite(time_scale[o]):
            mean[q] = 0.0
            std[q] = np.nan
            continue
        inv_lt = 1.0 / time_scale[o]
        amp2 = amplitude[o] * amplitude[o]
        if kvec.size < n:
            kvec = np.empty(n)
        m = 0.0
        for i in range(n):
            kvec[i] = amp2 * _matern(qt[q] - t[a + i], qw[q] - w[a + i], inv_lt, inv_lw)
            m += kvec[i] * alpha[a + i]
        mean[q] = m
        if not with_std:
            std[q] = np.nan
            continue
        L = chol[chol_starts[o]:chol_starts[o + 1]].reshape((n, n))
        s2 = amp2
        for i in range(n):  # solve L z = k in place
            s = kvec[i]
            for j in range(i):
                s -= L[i, j] * kvec[j]
            kvec[i] = s / L[i, i]
            s2 -= kvec[i] * kvec[i]
        std[q] = math.sqrt(max(s2, 0.0))
