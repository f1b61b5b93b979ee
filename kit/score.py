"""Score a submission against a truth file: overall, per class and per group.

The truth file (``test_truth.csv``: object_id,target[,true_target]) exists for simulated
competitions and the unblinded Zenodo release; ``target`` is 99 for the unknown classes (any
class outside the 14 training classes also scores as 99). Groups (galactic / extragalactic,
DDF / WFD) need the test metadata; each group's figure is the competition metric computed on
that group's objects alone.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from kit import files, metric, survey
from kit.config import Config
from kit.errors import InputError


def read_submission(path: Path) -> pd.DataFrame:
    """A submission file as a frame (object_id int64, class columns float32)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"submission not found: {path}")
    types = {survey.OBJECT_ID: pa.int64()} | {c: pa.float32() for c in survey.SUBMISSION_COLUMNS[1:]}
    try:
        table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types=types))
    except (pa.ArrowInvalid, OSError) as err:
        raise InputError(f"{path}: cannot read it as a submission ({err}); run `python -m kit validate`") from err
    return table.to_pandas()


def read_truth(path: Path) -> pd.DataFrame:
    """Truth as object_id and scored class (``target``, unknowns mapped to 99)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"truth file not found: {path}")
    truth = pd.read_csv(path)
    if survey.OBJECT_ID not in truth or survey.TARGET not in truth:
        raise InputError(f"{path}: expected columns object_id,target[,true_target]; found {list(truth.columns)}")
    return pd.DataFrame(
        {
            survey.OBJECT_ID: truth[survey.OBJECT_ID].to_numpy(np.int64),
            survey.TARGET: survey.truth_to_scored(truth[survey.TARGET].to_numpy()),
        }
    )


def _loss(y: np.ndarray, p: np.ndarray) -> float:
    return metric.weighted_log_loss(y, p, survey.SUBMISSION_CLASSES)


def score_submission(
    submission: pd.DataFrame | Path | str, truth_path: Path, test_metadata_path: Path | None = None
) -> dict:
    """Weighted log loss of a submission, with per-class and per-group breakdowns.

    Parameters
    ----------
    submission : DataFrame or path
        Frame with ``survey.SUBMISSION_COLUMNS``, or a submission file.
    truth_path : Path
        ``test_truth.csv`` (object_id,target[,true_target]).
    test_metadata_path : Path, optional
        ``test_set_metadata.csv``; needed for the galactic/extragalactic and DDF/WFD figures.

    Returns
    -------
    dict
        ``overall`` (float), ``n_scored``, ``n_unscored`` (submission rows without truth),
        ``per_class`` {class: {name, n, loss, weight, contribution}} (keys are strings, JSON-ready)
        and ``groups`` {galactic, extragalactic, ddf, wfd: {n, loss}} (empty without metadata).
    """
    sub = submission if isinstance(submission, pd.DataFrame) else read_submission(Path(submission))
    missing_cols = [c for c in survey.SUBMISSION_COLUMNS if c not in sub.columns]
    if missing_cols:
        raise InputError(f"submission lacks columns {missing_cols}; run `python -m kit validate`")
    truth = read_truth(truth_path)
    sub_ids = sub[survey.OBJECT_ID].to_numpy(np.int64)
    pos = pd.Index(sub_ids).get_indexer(truth[survey.OBJECT_ID].to_numpy())
    if (pos < 0).any():
        absent = truth[survey.OBJECT_ID].to_numpy()[pos < 0]
        raise InputError(
            f"{absent.size} objects of {truth_path} have no row in the submission (e.g. {absent[:5].tolist()})"
        )
    y = truth[survey.TARGET].to_numpy()
    p = sub[list(survey.SUBMISSION_COLUMNS[1:])].to_numpy(np.float64)[pos]

    losses = metric.per_class_log_loss(y, p, survey.SUBMISSION_CLASSES)
    contrib = metric.class_contributions(y, p, survey.SUBMISSION_CLASSES)
    per_class = {
        str(c): {
            "name": survey.CLASS_NAMES[c],
            "n": int(np.sum(y == c)),
            "loss": losses[c],
            "weight": survey.CLASS_WEIGHTS[c],
            "contribution": contrib[c],
        }
        for c in survey.SUBMISSION_CLASSES
        if c in losses
    }
    groups: dict[str, dict] = {}
    if test_metadata_path is not None:
        meta = pd.read_csv(
            test_metadata_path,
            usecols=[survey.OBJECT_ID, "ddf", "hostgal_photoz"],
            dtype={c: survey.METADATA_DTYPES[c] for c in (survey.OBJECT_ID, "ddf", "hostgal_photoz")},
        )
        mpos = pd.Index(meta[survey.OBJECT_ID].to_numpy(np.int64)).get_indexer(truth[survey.OBJECT_ID].to_numpy())
        if (mpos < 0).any():
            raise InputError(f"{int((mpos < 0).sum())} truth objects are not in {test_metadata_path}")
        galactic = survey.is_galactic(meta["hostgal_photoz"].to_numpy())[mpos]
        ddf = meta["ddf"].to_numpy()[mpos] == 1
        for name, mask in (("galactic", galactic), ("extragalactic", ~galactic), ("ddf", ddf), ("wfd", ~ddf)):
            if mask.any():
                groups[name] = {"n": int(mask.sum()), "loss": _loss(y[mask], p[mask])}
    return {
        "overall": _loss(y, p),
        "n_scored": int(len(y)),
        "n_unscored": int(len(sub_ids) - len(y)),
        "per_class": per_class,
        "groups": groups,
    }


def format_score_table(result: dict) -> str:
    """A plain-text table of :func:`score_submission`'s result."""
    lines = [
        f"weighted log loss: {result['overall']:.5f}  ({result['n_scored']} objects scored"
        + (f", {result['n_unscored']} without truth)" if result.get("n_unscored") else ")"),
    ]
    if result.get("groups"):
        lines += ["", f"{'group':<14} {'objects':>9} {'loss':>9}"]
        for name, g in result["groups"].items():
            lines.append(f"{name:<14} {g['n']:>9} {g['loss']:>9.5f}")
    lines += ["", f"{'class':>5} {'name':<18} {'objects':>9} {'loss':>9} {'weight':>6} {'share':>9}"]
    for c, row in result["per_class"].items():
        lines.append(
            f"{c:>5} {row['name']:<18} {row['n']:>9} {row['loss']:>9.5f} "
            f"{row['weight']:>6g} {row['contribution']:>9.5f}"
        )
    return "\n".join(lines)


def score_json_path(submission_path: Path) -> Path:
    """``submissions/<name>-<model>.csv.gz`` -> ``submissions/<name>-<model>.score.json``."""
    path = Path(submission_path)
    stem = path.name.removesuffix(".gz").removesuffix(".csv")
    return path.with_name(f"{stem}.score.json")


# --- command ------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--file", type=Path, default=None, help="submission (default: newest for this competition)")


def run(args: argparse.Namespace, config: Config) -> int:
    from kit.validate import newest_submission

    if not config.truth.exists():
        print(
            f"nothing to score against: {config.truth} does not exist (only simulated competitions and "
            "the unblinded Zenodo import have a truth file); Kaggle scores real submissions"
        )
        return 0
    path = args.file or newest_submission(config)
    metadata = config.test_metadata if config.test_metadata.exists() else None
    result = score_submission(path, config.truth, metadata)
    result["submission"] = str(path)
    print(f"{path}")
    print(format_score_table(result))
    out = score_json_path(path)
    files.write_json(out, result)
    print(f"wrote {out}")
    return 0
