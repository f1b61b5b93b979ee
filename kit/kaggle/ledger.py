"""The ledger: one row per upload, kept up to date with the scores, and never mixing endpoints.

Every row records the endpoint it was uploaded to (``https://api.kaggle.com`` or the stand-in's URL),
and uploads to the local stand-in go to their own file, ``submissions/ledger-standin.csv``, so that a
demo can never pass for a Kaggle entry in ``submissions/ledger.csv``. Written whole through
:func:`kit.files.atomic_path`, so an interrupted write never leaves half a ledger.
"""

from __future__ import annotations

import csv
from pathlib import Path

from kit.config import Config
from kit.files import atomic_path
from kit.kaggle import client

COLUMNS: tuple[str, ...] = (
    "time", "endpoint", "competition", "file", "sha256", "message", "model", "oof_score", "local_score",
    "ref", "status", "public_score", "private_score",
)
STANDIN_FILE = "ledger-standin.csv"


def path_for(config: Config) -> Path:
    """The ledger of the endpoint in use: ``config.ledger_path`` for Kaggle, :data:`STANDIN_FILE` beside it."""
    return config.ledger_path.with_name(STANDIN_FILE) if client.is_standin() else config.ledger_path


def read(path: Path) -> list[dict[str, str]]:
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [{c: row.get(c) or "" for c in COLUMNS} for row in csv.DictReader(f)]


def write(path: Path, rows: list[dict]) -> None:
    with atomic_path(Path(path)) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(COLUMNS), extrasaction="ignore")
            writer.writeheader()
            for row in rows:
                writer.writerow({c: "" if row.get(c) is None else row.get(c) for c in COLUMNS})


def append(path: Path, row: dict) -> None:
    """Add one row (missing columns left empty)."""
    write(path, read(path) + [row])


def update_by_ref(path: Path, updates: dict[str, dict], endpoint: str) -> int:
    """Overwrite status and scores of the rows of ``endpoint`` whose ``ref`` is in ``updates``; the number changed.

    Rows written before endpoints were recorded (empty ``endpoint``) match on ``ref`` alone and get the
    endpoint filled in.
    """
    rows = read(path)
    changed = 0
    for row in rows:
        new = updates.get(row["ref"])
        if new and row["endpoint"] in ("", endpoint):
            before = dict(row)
            row.update({k: "" if v is None else str(v) for k, v in new.items() if k in COLUMNS})
            row["endpoint"] = endpoint
            changed += row != before
    if changed:
        write(path, rows)
    return changed
