"""Simulated objects of one class at a time: metadata, cadence, model fluxes, noise and the trigger."""

from __future__ import annotations

import numpy as np
import pandas as pd

from kit.simulate import cadence as cad
from kit.simulate import physics
from kit.simulate.metadata import sample_metadata

#: Redraws of an object's parameters (peak time, brightness) while it fails the detection trigger.
MAX_REDRAWS = 8
#: Objects still undetected are brightened until their brightest true point reaches this S/N.
FORCED_PEAK_SNR = 12.0
MAX_FORCED_ROUNDS = 6
#: Detections an object needs to enter the data set.
MIN_DETECTIONS = 2
#: Transient peaks fall between this many rest-frame days before the first visit and after the last.
PEAK_BEFORE_FIRST_D = 30.0
PEAK_AFTER_LAST_D = 10.0
#: Rest-frame days between an anchored peak and the visit after it (uniform range).
ANCHOR_OFFSET_D = (-2.0, 1.0)
TRANSIENT_MODELS = ("bazin", "plateau", "tde", "paczynski", "binary_lens")


def _reference_time(kind, c: cad.Cadence, z, rng, anchored: bool = False):
    """Peak time of transients (MJD); an arbitrary phase zero for variables.

    ``anchored`` puts transient peaks just after a random visit (for objects that missed the trigger).
    """
    n = len(c.first)
    if physics.CLASS_PHYSICS[kind]["model"] in TRANSIENT_MODELS and anchored:
        starts = np.flatnonzero(np.r_[True, c.obj[1:] != c.obj[:-1]])
        counts = np.diff(np.r_[starts, len(c.obj)])
        anchor = starts + (rng.random(n) * counts).astype(int)
        return c.mjd[anchor] - rng.uniform(*ANCHOR_OFFSET_D, n) * (1.0 + z)
    if physics.CLASS_PHYSICS[kind]["model"] in TRANSIENT_MODELS:
        lo = c.first - PEAK_BEFORE_FIRST_D * (1.0 + z)
        hi = c.last + PEAK_AFTER_LAST_D
        return rng.uniform(lo, hi)
    return cad.SURVEY_START_MJD + rng.uniform(0.0, cad.DAYS_PER_YEAR, n)


def _subset(todo: np.ndarray, c: cad.Cadence, arrays: dict):
    """Rows and per-object arrays restricted to the objects ``todo`` (bool per object)."""
    rows = todo[c.obj]
    local = (np.cumsum(todo) - 1)[c.obj[rows]]
    return rows, local, {k: v[todo] for k, v in arrays.items()}


def simulate_kind(kind: int, meta: pd.DataFrame, rng: np.random.Generator, design: cad.Design = cad.LSST):
    """Light curves of objects of one true class.

    Parameters
    ----------
    kind
        Class id, or an unknown true target 991-994.
    meta
        Their metadata (from :func:`kit.simulate.metadata.sample_metadata`), one row per object.
    design
        The survey's cadence and depth (:data:`kit.simulate.cadence.SURVEYS`).

    Returns
    -------
    obj, mjd, band, flux, flux_err, detected : ndarray
        One entry per light-curve row, sorted by object position then MJD.
    """
    n = len(meta)
    z = meta["true_z"].to_numpy()
    mu = np.nan_to_num(meta["true_distmod"].to_numpy())
    c = cad.make_cadence(meta["ddf"].to_numpy().astype(bool), rng, design)
    ext = 10.0 ** (-0.4 * physics.EXTINCTION_R[c.band] * meta["mwebv"].to_numpy()[c.obj])
    flux = np.zeros(len(c.obj))
    err = np.zeros(len(c.obj))
    det = np.zeros(len(c.obj), dtype=np.int8)
    todo = np.ones(n, dtype=bool)
    for attempt in range(MAX_REDRAWS + MAX_FORCED_ROUNDS):
        if not todo.any():
            break
        forced = attempt >= MAX_REDRAWS
        rows, local, sub = _subset(todo, c, {"z": z, "mu": mu, "first": c.first, "last": c.last})
        params = physics.draw_params(kind, int(todo.sum()), rng)
        sub_c = cad.Cadence(local, c.mjd[rows], c.band[rows], c.base_err[rows], sub["first"], sub["last"])
        t0 = _reference_time(kind, sub_c, sub["z"], rng, anchored=forced)
        true = physics.model_flux(kind, params, local, c.mjd[rows], c.band[rows], sub["z"], sub["mu"], t0, rng)
        true = true * ext[rows]
        if forced:
            peak_snr = np.zeros(int(todo.sum()))
            np.maximum.at(peak_snr, local, np.abs(true) / c.base_err[rows])
            scale = np.maximum(1.0, FORCED_PEAK_SNR / np.maximum(peak_snr, 1e-9))
            true = true * scale[local]
        f, e, d = cad.observe(true, c.base_err[rows], rng)
        flux[rows], err[rows], det[rows] = f, e, d
        todo[todo] = np.bincount(local, weights=d, minlength=int(todo.sum())) < MIN_DETECTIONS
    if todo.any():  # pathological leftovers: mark the two highest-S/N rows detected
        for i in np.flatnonzero(todo):
            rows = np.flatnonzero(c.obj == i)
            best = rows[np.argsort(-np.abs(flux[rows]) / err[rows])[:MIN_DETECTIONS]]
            det[best] = 1
    return c.obj, c.mjd, c.band, flux, err, det


def simulate_group(kinds: np.ndarray, object_ids: np.ndarray, test: bool, rng: np.random.Generator,
                   design: cad.Design = cad.LSST):
    """Metadata and light curves of a group of objects (any mix of classes).

    Returns
    -------
    meta : DataFrame
        Kaggle's metadata columns with object_id, plus true_target, true_z and true_distmod.
    rows : dict of ndarray
        Light-curve columns (survey.LIGHTCURVE_COLUMNS), sorted by object_id then mjd.
    """
    kinds = np.asarray(kinds)
    meta = sample_metadata(kinds, test, rng)
    meta.insert(0, "object_id", np.asarray(object_ids, dtype=np.int64))
    meta["true_target"] = kinds
    parts = []
    for kind in np.unique(kinds):
        idx = np.flatnonzero(kinds == kind)
        obj, mjd, band, flux, err, det = simulate_kind(int(kind), meta.iloc[idx].reset_index(drop=True), rng,
                                                     design)
        parts.append((meta["object_id"].to_numpy()[idx][obj], mjd, band, flux, err, det))
    cols = [np.concatenate([p[i] for p in parts]) for i in range(6)]
    order = np.lexsort((cols[1], cols[0]))
    names = ("object_id", "mjd", "passband", "flux", "flux_err", "detected")
    return meta, {name: col[order] for name, col in zip(names, cols, strict=True)}
