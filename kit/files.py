"""File helpers: atomic writes and staleness checks. The only place that renames into place."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from kit import survey


@contextlib.contextmanager
def atomic_path(path: Path, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    An interrupted or failed write leaves nothing under the final name (and removes the temporary).
    ``keep_suffix`` ends the temporary name with ``path``'s suffix, for writers that insist on one
    (Keras wants ``.keras``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tail = f".tmp{path.suffix}" if keep_suffix else ".tmp"
    tmp = path.with_name(f".{path.name}.{os.getpid()}{tail}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield an empty temporary directory beside ``path``; it replaces ``path`` whole only if the block succeeds.

    For outputs made of several files that belong together (a model's fold models and predictions): a failed or
    interrupted block leaves ``path`` as it was, never a mix of old and new files. The swap is two renames; if the
    process dies between them, the old directory waits as ``.<name>.old`` and the next call puts it back.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.with_name(f".{path.name}.old")
    _restore(path, old)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a killed process
        if not _alive(stale.name.split(".")[-2]):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
    finally:
        _restore(path, old)
        shutil.rmtree(tmp, ignore_errors=True)


def _restore(path: Path, old: Path) -> None:
    """Put back the old directory of an unfinished swap, or remove it once the new one is in place."""
    if old.exists():
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, path)


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def write_json(path: Path, obj) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=float) + "\n")


def read_json(path: Path):
    return json.loads(Path(path).read_text())


#: Parquet options for the kit's numeric tables: dictionary encoding finds nothing to share in
#: float features or probabilities, and trying costs four times the writing time.
PARQUET_OPTIONS = {"use_dictionary": False}


def write_parquet(path: Path, frame: pd.DataFrame) -> None:
    """Write a frame as parquet, atomically."""
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False, **PARQUET_OPTIONS)


def is_fresh(outputs: list[Path], inputs: list[Path]) -> bool:
    """True when every output exists and is newer than every existing input."""
    outs = [Path(p) for p in outputs]
    if not all(p.exists() for p in outs):
        return False
    newest_in = max((Path(p).stat().st_mtime for p in inputs if Path(p).exists()), default=0.0)
    return min(p.stat().st_mtime for p in outs) >= newest_in


def save_proba(path: Path, object_ids: np.ndarray, proba: np.ndarray) -> None:
    """Save 14-class probabilities (rows = objects, columns = survey.CLASSES) as parquet."""
    proba = np.asarray(proba, dtype=np.float32)
    if proba.shape != (len(object_ids), len(survey.CLASSES)):
        raise ValueError(f"proba has shape {proba.shape}, expected ({len(object_ids)}, {len(survey.CLASSES)})")
    frame = pd.DataFrame(proba, columns=list(survey.PROBA_COLUMNS))
    frame.insert(0, survey.OBJECT_ID, np.asarray(object_ids, dtype=np.int64))
    write_parquet(path, frame)


def load_proba(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Load what :func:`save_proba` wrote: ``(object_ids, proba)``."""
    frame = pd.read_parquet(path)
    return frame[survey.OBJECT_ID].to_numpy(), frame[list(survey.PROBA_COLUMNS)].to_numpy(np.float64)
