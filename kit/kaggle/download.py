"""Download the competition files with the official client, unpack and check them.

Safe to interrupt and to rerun: the client writes ``<folder>/.download/<competition>.zip`` and
resumes it (HTTP Range) after an interruption; members are unpacked to temporary names and
renamed into place; ``<folder>/.download.json`` records what a complete download holds, and a
rerun finds it and downloads nothing.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import shutil
import zipfile
from pathlib import Path

from kit import survey
from kit.config import Config
from kit.errors import InputError, KitError
from kit.files import atomic_path, write_json
from kit.kaggle.client import authenticated_api, kaggle_errors, source_label

log = logging.getLogger(__name__)

MARKER = ".download.json"
#: The files the kit needs, with the header each must start with.
EXPECTED_HEADERS: dict[str, tuple[str, ...]] = {
    survey.TRAIN_LIGHTCURVES: survey.LIGHTCURVE_COLUMNS,
    survey.TRAIN_METADATA: survey.METADATA_COLUMNS + (survey.TARGET,),
    survey.TEST_LIGHTCURVES: survey.LIGHTCURVE_COLUMNS,
    survey.TEST_METADATA: survey.METADATA_COLUMNS,
    survey.SAMPLE_SUBMISSION: survey.SUBMISSION_COLUMNS,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--competition", default=survey.COMPETITION, help="Kaggle competition (default %(default)s)")
    parser.add_argument("--check-rows", action="store_true",
                        help="also count the rows of every file (reads all 20 GB of the real competition)")
    parser.add_argument("--force", action="store_true", help="download again even if complete")
    parser.add_argument("--keep-zip", action="store_true", help="keep the downloaded zip after unpacking")
    parser.add_argument("--out", type=Path, default=None, help="folder to unpack into (default data/<competition>)")


def target_folder(args: argparse.Namespace) -> Path:
    """``--out`` when given, else ``data/<competition>``."""
    return Path(args.out) if args.out else Path("data") / args.competition


def is_complete(folder: Path) -> bool:
    """True when the marker exists and every file it lists has its recorded size."""
    marker = folder / MARKER
    if not marker.exists():
        return False
    try:
        files = json.loads(marker.read_text())["files"]
    except (ValueError, KeyError):
        return False
    return all((folder / name).is_file() and (folder / name).stat().st_size == size for name, size in files.items())


def fetch(competition: str, folder: Path, force: bool = False) -> Path:
    """Download ``<competition>.zip`` into ``folder/.download`` with the official client (resumable)."""
    api = authenticated_api()
    staging = folder / ".download"
    staging.mkdir(parents=True, exist_ok=True)
    with kaggle_errors(f"downloading the files of {competition}"):
        api.competition_download_files(competition, path=str(staging), force=force, quiet=False)
    zips = sorted(staging.glob("*.zip"))
    if not zips:
        raise KitError(f"the kaggle client left no zip in {staging}; rerun `python -m kit download`")
    return zips[0]


def _final_name(member: str) -> str:
    name = Path(member).name
    for suffix in (".zip", ".gz"):
        if name.endswith(".csv" + suffix):
            return name[: -len(suffix)]
    return name


def _copy_member(src, folder: Path, member: str) -> str:
    """Write one zip member (``.csv``, ``.csv.gz`` or ``.csv.zip``) as a plain CSV; its final name."""
    final = _final_name(member)
    with atomic_path(folder / final) as tmp:
        if member.endswith(".csv.gz"):
            with gzip.open(src) as g, open(tmp, "wb") as out:
                shutil.copyfileobj(g, out, 1 << 20)
        elif member.endswith(".csv.zip"):
            spooled = folder / f".{final}.inner.zip"
            try:
                with open(spooled, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
                with zipfile.ZipFile(spooled) as inner:
                    csvs = [n for n in inner.namelist() if n.endswith(".csv")]
                    if len(csvs) != 1:
                        raise InputError(f"{member} holds {csvs}, expected one CSV; delete {folder} and rerun")
                    with inner.open(csvs[0]) as s, open(tmp, "wb") as out:
                        shutil.copyfileobj(s, out, 1 << 20)
            finally:
                spooled.unlink(missing_ok=True)
        else:
            with open(tmp, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
    return final


def unpack(archive: Path, folder: Path) -> list[str]:
    """Unpack every file of the downloaded zip into ``folder``; the names written."""
    written = []
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if info.is_dir() or Path(info.filename).name.startswith("."):
                    continue
                log.info("unpacking %s", info.filename)
                with zf.open(info) as src:
                    written.append(_copy_member(src, folder, info.filename))
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        archive.unlink(missing_ok=True)
        raise KitError(f"{archive} is damaged ({err}); it was deleted: rerun `python -m kit download`") from None
    return written


def _header(path: Path) -> list[str]:
    with open(path, "rb") as f:
        return f.readline().decode("utf-8", "replace").strip().split(",")


def _count_rows(path: Path) -> int:
    n = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            n += block.count(b"\n")
    return n - 1


def check(folder: Path, competition: str, check_rows: bool = False) -> list[str]:
    """Problems of an unpacked competition folder: missing files, wrong headers, wrong row counts."""
    problems = []
    for name, columns in EXPECTED_HEADERS.items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{path}: missing")
            continue
        found = _header(path)
        if tuple(found) != tuple(columns):
            problems.append(f"{path}: header {found}, expected {list(columns)}")
        expected = survey.REAL_ROW_COUNTS.get(name)
        if check_rows and competition == survey.COMPETITION and expected is not None:
            rows = _count_rows(path)
            if rows != expected:
                problems.append(f"{path}: {rows:,} rows, expected {expected:,}")
    return problems


def download(competition: str, folder: Path, check_rows: bool = False, force: bool = False,
             keep_zip: bool = False) -> Path:
    """Download, unpack and check the competition into ``folder`` (nothing happens when already complete)."""
    folder = Path(folder)
    if not force and is_complete(folder):
        log.info("%s is complete (see %s); nothing to download", folder, MARKER)
    else:
        (folder / MARKER).unlink(missing_ok=True)
        archive = fetch(competition, folder, force=force)
        names = unpack(archive, folder)
        problems = check(folder, competition)
        if problems:
            raise InputError("the download is incomplete:\n" + "\n".join(f"  - {p}" for p in problems))
        write_json(folder / MARKER, {
            "competition": competition,
            "zip": {"name": archive.name, "size": archive.stat().st_size},
            "files": {n: (folder / n).stat().st_size for n in sorted(set(names))},
        })
        if not keep_zip:
            shutil.rmtree(folder / ".download", ignore_errors=True)
    if check_rows:
        problems = check(folder, competition, check_rows=True)
        if problems:
            raise InputError("the downloaded files are not as expected:\n" + "\n".join(f"  - {p}" for p in problems))
    return folder


def run(args: argparse.Namespace, config: Config) -> int:
    folder = download(args.competition, target_folder(args), check_rows=args.check_rows, force=args.force,
                      keep_zip=args.keep_zip)
    print(source_label())
    print(f"OK: {args.competition} in {folder}")
    return 0
