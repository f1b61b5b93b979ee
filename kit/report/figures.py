"""Plotting functions of the report: arrays and frames in, a matplotlib :class:`Figure` out.

No file is read or written here and pyplot is never used: every figure is a standalone
``matplotlib.figure.Figure`` (rendered by Agg when saved), so nothing depends on a GUI backend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from kit import survey

#: Passband colours in wavelength order, u (blue) to Y (dark red).
PASSBAND_COLORS: tuple[str, ...] = ("#1f4e9c", "#2ca02c", "#d4a000", "#ff7f0e", "#d62728", "#7f0000")


def class_label(c: int) -> str:
    """Axis label of class ``c``: its name and number, e.g. ``'SN Ia (90)'``."""
    return f"{survey.CLASS_NAMES.get(int(c), str(c))} ({int(c)})"


def _labels(classes: Sequence[int]) -> list[str]:
    return [class_label(c) for c in classes]


def confusion_matrix(
    y_true: np.ndarray, proba: np.ndarray, title: str, classes: Sequence[int] = survey.CLASSES
) -> Figure:
    """Row-normalised confusion matrix of the arg-max predictions.

    Parameters
    ----------
    y_true : (n,) true classes
    proba : (n, len(classes)) probabilities, columns in the order of ``classes``
    title : figure title
    """
    classes = list(classes)
    index = {c: i for i, c in enumerate(classes)}
    true_idx = np.array([index.get(int(c), -1) for c in y_true])
    pred_idx = np.asarray(proba).argmax(axis=1)
    keep = true_idx >= 0
    k = len(classes)
    counts = np.zeros((k, k))
    np.add.at(counts, (true_idx[keep], pred_idx[keep]), 1)
    rows = counts.sum(axis=1, keepdims=True)
    norm = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    fig = Figure(figsize=(9, 8))
    ax = fig.add_subplot()
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            if norm[i, j] >= 0.01:
                ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(k), _labels(classes), rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(k), [f"{lab}, n={int(n)}" for lab, n in zip(_labels(classes), rows[:, 0], strict=True)],
                  fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="fraction of the true class")
    fig.tight_layout()
    return fig


def grouped_bars(
    values: Mapping[str, Mapping[int, float]], title: str, ylabel: str, classes: Sequence[int] = survey.CLASSES
) -> Figure:
    """Bars per class, one bar per series side by side (e.g. each model's class contributions).

    Parameters
    ----------
    values : series name -> {class: value}; a class missing from a series gets no bar
    """
    classes = list(classes)
    names = list(values)
    width = 0.8 / max(len(names), 1)
    x = np.arange(len(classes))
    fig = Figure(figsize=(11, 5))
    ax = fig.add_subplot()
    for i, name in enumerate(names):
        heights = [values[name].get(c, np.nan) for c in classes]
        ax.bar(x - 0.4 + width * (i + 0.5), heights, width, label=name)
    ax.set_xticks(x, _labels(classes), rotation=45, ha="right", fontsize=8)
    ax.set_xlabel("class")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def feature_importance(importance: pd.DataFrame, top: int = 30) -> Figure:
    """Horizontal bars of the ``top`` features by gain.

    Parameters
    ----------
    importance : columns ``feature``, ``gain`` (other columns are ignored)
    """
    frame = importance.groupby("feature", as_index=False)["gain"].sum()
    frame = frame.sort_values("gain", ascending=False).head(top).iloc[::-1]
    fig = Figure(figsize=(8, max(3.0, 0.25 * len(frame) + 1.2)))
    ax = fig.add_subplot()
    ax.barh(frame["feature"].astype(str), frame["gain"], color="tab:blue", label="gain")
    ax.set_xlabel("total gain")
    ax.set_ylabel("feature")
    ax.set_title(f"LightGBM feature importance (top {len(frame)} by gain)")
    ax.legend(loc="lower right")
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    return fig


def _reliability_points(p: np.ndarray, hit: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges) - 1, 0, bins - 1)
    n = np.bincount(which, minlength=bins)
    mean_p = np.bincount(which, weights=p, minlength=bins)
    freq = np.bincount(which, weights=hit.astype(float), minlength=bins)
    ok = n > 0
    return mean_p[ok] / n[ok], freq[ok] / n[ok]


def reliability(
    y_true: np.ndarray,
    proba: np.ndarray,
    title: str,
    classes: Sequence[int] = survey.CLASSES,
    bins: int = 10,
    n_major: int = 4,
) -> Figure:
    """Reliability curves: observed frequency against mean predicted probability.

    One curve pools every (object, class) pair one-vs-rest; one curve per major class (the
    ``n_major`` most frequent classes of ``y_true``).
    """
    y = np.asarray(y_true).astype(int)
    p = np.asarray(proba, dtype=float)
    hits = y[:, None] == np.asarray(classes)[None, :]
    fig = Figure(figsize=(7, 6))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="grey", ls="--", label="perfect calibration")
    mp, fr = _reliability_points(p.ravel(), hits.ravel(), bins)
    ax.plot(mp, fr, "o-", color="black", lw=2, label="all classes, one-vs-rest")
    present, counts = np.unique(y, return_counts=True)
    for c in present[np.argsort(-counts)][:n_major]:
        if c not in classes:
            continue
        j = list(classes).index(c)
        mp, fr = _reliability_points(p[:, j], hits[:, j], bins)
        ax.plot(mp, fr, ".-", alpha=0.8, label=class_label(c))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed frequency")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def learning_curves(history: Sequence[tuple[str, Mapping[str, Sequence[float]]]], title: str) -> Figure:
    """Training and validation metrics per epoch, one line per fold and metric.

    Parameters
    ----------
    history : (fold label, {metric name: values per epoch}) pairs; metric names starting with
        ``val`` are drawn solid, the others dashed
    """
    fig = Figure(figsize=(9, 5))
    ax = fig.add_subplot()
    metrics = sorted({m for _, series in history for m in series})
    colors = {m: f"C{i % 10}" for i, m in enumerate(metrics)}
    for fold, series in history:
        for metric, values in series.items():
            ls = "-" if metric.startswith("val") else "--"
            ax.plot(np.arange(1, len(values) + 1), values, ls=ls, color=colors[metric], alpha=0.7,
                    label=f"{metric} (fold {fold})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("metric")
    ax.set_title(title)
    handles, labels = ax.get_legend_handles_labels()
    if len(labels) > 12:  # one entry per metric is enough when there are many folds
        seen: dict[str, object] = {}
        for h, lab in zip(handles, labels, strict=True):
            seen.setdefault(lab.split(" (fold")[0], h)
        ax.legend(list(seen.values()), list(seen), fontsize=8)
    else:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def draw_light_curve(ax, lightcurve: pd.DataFrame, title: str) -> None:
    """Flux against MJD per passband with error bars on ``ax``; detected points filled, others open.

    Parameters
    ----------
    lightcurve : columns ``mjd``, ``passband`` (0..5), ``flux``, ``flux_err`` and ``detected``
    """
    for band, name in enumerate(survey.PASSBANDS):
        rows = lightcurve[lightcurve["passband"] == band]
        if rows.empty:
            continue
        color = PASSBAND_COLORS[band]
        det = rows["detected"].to_numpy() == 1
        for mask, face in ((det, color), (~det, "none")):
            if mask.any():
                r = rows[mask]
                ax.errorbar(r["mjd"], r["flux"], yerr=r["flux_err"], fmt="o", ms=3, color=color,
                            mfc=face, elinewidth=0.6, label=name if face != "none" or not det.any() else None)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel("MJD")
    ax.set_ylabel("flux")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6, ncol=3, title="passband (filled: detected)", title_fontsize=6)


def light_curve_gallery(items: Sequence[tuple[pd.DataFrame, str]], title: str, ncols: int = 3) -> Figure:
    """A grid of light curves, each ``(lightcurve, panel title)``."""
    nrows = max(1, -(-len(items) // ncols))
    fig = Figure(figsize=(5 * ncols, 3.4 * nrows))
    for i, (lc, panel_title) in enumerate(items):
        draw_light_curve(fig.add_subplot(nrows, ncols, i + 1), lc, panel_title)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def object_figure(lightcurve: pd.DataFrame, title: str, proba: Mapping[int, float] | None, source: str) -> Figure:
    """One object's light curve and, when known, a bar chart of its class probabilities."""
    fig = Figure(figsize=(12, 4.5))
    if proba:
        ax_lc = fig.add_subplot(1, 3, (1, 2))
        ax_p = fig.add_subplot(1, 3, 3)
        classes = list(proba)
        ax_p.barh(_labels(classes), [proba[c] for c in classes], color="tab:purple", label=source)
        ax_p.invert_yaxis()
        ax_p.set_xlim(0, 1)
        ax_p.set_xlabel("probability")
        ax_p.set_ylabel("class")
        ax_p.tick_params(axis="y", labelsize=7)
        ax_p.set_title("predicted class probabilities", fontsize=9)
        ax_p.legend(fontsize=7, loc="lower right")
    else:
        ax_lc = fig.add_subplot()
    draw_light_curve(ax_lc, lightcurve, title)
    fig.tight_layout()
    return fig


def scores_by_group(per_class: Mapping[int, float], groups: Mapping[str, float], title: str) -> Figure:
    """Local test score: mean -ln p per class (left) and the metric by object group (right)."""
    fig = Figure(figsize=(13, 5))
    ax = fig.add_subplot(1, 2, 1)
    classes = list(per_class)
    ax.bar(_labels(classes), [per_class[c] for c in classes], color="tab:red", label="mean -ln p of true class")
    ax.tick_params(axis="x", rotation=60, labelsize=8)
    for lab in ax.get_xticklabels():
        lab.set_horizontalalignment("right")
    ax.set_xlabel("true class")
    ax.set_ylabel("log loss")
    ax.set_title("per class")
    ax.legend(fontsize=8)
    ax2 = fig.add_subplot(1, 2, 2)
    names = list(groups)
    ax2.bar(names, [groups[g] for g in names], color="tab:blue", label="weighted log loss")
    for i, g in enumerate(names):
        ax2.text(i, groups[g], f"{groups[g]:.3f}", ha="center", va="bottom", fontsize=8)
    ax2.set_xlabel("objects")
    ax2.set_ylabel("weighted log loss")
    ax2.set_title("by group")
    ax2.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def class99_histogram(p99: np.ndarray, unknown: np.ndarray, title: str) -> Figure:
    """Histograms of the predicted class-99 probability for true unknowns and for known objects."""
    p99 = np.asarray(p99, dtype=float)
    unknown = np.asarray(unknown, dtype=bool)
    fig = Figure(figsize=(8, 5))
    ax = fig.add_subplot()
    edges = np.linspace(0, 1, 41)
    for mask, label, color in ((~unknown, "known classes", "tab:blue"), (unknown, "true unknowns (99)", "tab:red")):
        if mask.any():
            ax.hist(p99[mask], bins=edges, density=True, alpha=0.55, color=color, label=f"{label}, n={mask.sum()}")
    ax.set_xlabel("predicted class-99 probability")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def class_distribution(series: Mapping[str, Mapping[int, float]], title: str, classes: Sequence[int]) -> Figure:
    """Share of objects per class, for several sources (training prior, test predictions)."""
    return grouped_bars(series, title, "share of objects", classes)
