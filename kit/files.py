"""File helpers: atomic writes, staleness checks, folder locks and provenance, unreadable gzip files.

The only place that renames into place.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shlex
import shutil
import socket
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from kit import survey
from kit.errors import InputError, KitError

log = logging.getLogger(__name__)


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


# --- reading compressed inputs ------------------------------------------------------------------
@contextlib.contextmanager
def gzip_errors(path: Path) -> Iterator[None]:
    """Turn the decompressor's errors on a ``.gz`` input into an :class:`InputError` naming the file.

    A truncated download or a corrupt file otherwise ends in a raw zlib/EOF traceback.
    """
    try:
        yield
    except (EOFError, zlib.error, OSError) as err:
        if not str(path).endswith(".gz") or isinstance(err, (FileNotFoundError, PermissionError)):
            raise
        raise InputError(
            f"{path}: the gzip file is truncated or corrupt ({type(err).__name__}: {err}). "
            "Download it again (make download), or gzip the original CSV again; `make check-data` "
            "tests every file of the folder."
        ) from None


# --- one run at a time per build folder -----------------------------------------------------------
@contextlib.contextmanager
def folder_lock(folder: Path, name: str) -> Iterator[Path]:
    """Hold ``folder/.<name>.lock`` for the block, or raise :class:`KitError` naming its holder.

    The lock is an OS file lock (``flock``): it goes with the process that holds it, so a crashed
    or killed run never blocks the next one. The file records who holds it (pid, host, command,
    since when) for the message another run prints.
    """
    import fcntl

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f".{name}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise KitError(
                    f"{folder} is in use by another `{name}` run: {describe_lock(path)}. Wait for it to finish "
                    "or stop it, then run again (two runs on one build folder would overwrite each other's "
                    "files). If that run is on another machine sharing this folder, use another BUILD_ROOT."
                ) from None
            # A file system without locks (some network mounts): go on, as before locks existed.
            log.warning("%s: cannot lock (%s); make sure no other run uses %s", path, err, folder)
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": shlex.join(sys.orig_argv),
                  "since": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)


def describe_lock(path: Path) -> str:
    """Who holds the lock at ``path``, in words (from what :func:`folder_lock` recorded)."""
    try:
        holder = json.loads(Path(path).read_text() or "null")
    except (OSError, ValueError):
        holder = None
    if not isinstance(holder, dict):
        return f"a process that is just starting (see {path})"
    since = float(holder.get("since", 0.0))
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since))
    minutes = max(0.0, time.time() - since) / 60
    return (
        f"pid {holder.get('pid')} on host {holder.get('host')}, running `{holder.get('command')}` "
        f"since {when} ({minutes:.0f} min ago)"
    )


# --- where the artefacts of a data folder came from ----------------------------------------------
SOURCE_FILE = "source.json"


def check_source(folder: Path, data_dir: Path, record: bool) -> None:
    """Refuse ``folder`` (``build/<name>`` or ``models/<name>``) when it was made from another data folder.

    Artefacts are kept under the data folder's name only, so ``/a/base`` and ``/b/base`` would share
    them. ``folder/source.json`` records the resolved data path; with ``record`` it is written when
    absent (a stage about to write into ``folder``). A recorded folder that no longer exists here
    (moved, or the artefacts came from a Kaggle kernel or another machine) is not a clash: the
    record passes to ``data_dir``.
    """
    folder, here = Path(folder), str(Path(data_dir).resolve())
    path = folder / SOURCE_FILE
    if path.exists():
        try:
            recorded = read_json(path).get("data")
        except (OSError, ValueError, AttributeError):
            recorded = None
        if recorded == here:
            return
        if recorded is not None and not Path(recorded).exists():
            log.info("%s was made from %s, which is not here; taking it as made from %s", folder, recorded, here)
        elif recorded is not None:
            raise KitError(
                f"{folder} holds what was made from the data folder {recorded}, not from {here}: both are named "
                f"'{Path(here).name}', and build/, models/ and submissions/ are kept by that name. Give this data "
                f"folder another name (DATA=...), or remove {folder} (make clean) to rebuild it from {here}."
            )
    if record:
        write_json(path, {"data": here})
