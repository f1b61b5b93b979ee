"""``submissions/ledger.csv``: one row per upload, kept up to date with Kaggle's scores.

Written whole through :func:`kit.files.atomic_path`, so an interrupted write never leaves half a ledger.
"""

from __future__ import annotations

import csv
from pathlib import Path

from kit.files import atomic_path

COLUMNS: tuple[str, ...] = (
    "time", "competition", "file", "sha256", "message", "model", "oof_score", "local_score",
    "ref", "status", "public_score", "private_score",
)


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


def update_by_ref(path: Path, updates: dict[str, dict]) -> int:
    """Overwrite status and scores of the rows whose ``ref`` is in ``updates``; the number changed."""
    rows = read(path)
    changed = 0
    for row in rows:
        new = updates.get(row["ref"])
        if new:
            before = dict(row)
            row.update({k: "" if v is None else str(v) for k, v in new.items() if k in COLUMNS})
            changed += row != before
    if changed:
        write(path, rows)
    return changed
