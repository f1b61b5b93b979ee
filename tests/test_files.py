"""File helpers: the build-folder lock, provenance records, unreadable gzip inputs, directories replaced whole."""

from __future__ import annotations

import json
import os
import zlib

import pytest

from kit import files
from kit.errors import InputError, KitError


def test_lock_is_exclusive_and_a_dead_holders_record_blocks_nothing(tmp_path):
    lock = tmp_path / ".features.lock"
    lock.write_text(json.dumps({"pid": 2**22 + 1, "host": "gone", "command": "x", "since": 0}))  # a crashed run
    with files.folder_lock(tmp_path, "features"):
        record = json.loads(lock.read_text())
        assert record["pid"] != 2**22 + 1 and "since" in record
        with pytest.raises(KitError, match=rf"in use by another `features` run: pid {record['pid']} on host"):
            with files.folder_lock(tmp_path, "features"):
                pass
    with files.folder_lock(tmp_path, "features"):  # released at the end of the block
        pass


def test_source_record_refuses_another_folder_of_the_same_name(tmp_path):
    first, second, build = tmp_path / "a" / "base", tmp_path / "b" / "base", tmp_path / "build" / "base"
    first.mkdir(parents=True)
    second.mkdir(parents=True)
    files.check_source(build, second, record=False)  # nothing recorded, nothing written
    assert not (build / files.SOURCE_FILE).exists()
    files.check_source(build, first, record=True)
    files.check_source(build, first, record=False)
    with pytest.raises(KitError, match=rf"made from the data folder {first}, not from {second}.*another name"):
        files.check_source(build, second, record=True)
    first.rmdir()  # the recorded folder is gone (moved, or artefacts from a Kaggle kernel): no clash
    files.check_source(build, second, record=True)
    assert json.loads((build / files.SOURCE_FILE).read_text())["data"] == str(second.resolve())


def test_gzip_errors_only_rewords_gz_inputs(tmp_path):
    with pytest.raises(InputError, match=r"x\.csv\.gz: the gzip file is truncated or corrupt \(EOFError"):
        with files.gzip_errors(tmp_path / "x.csv.gz"):
            raise EOFError("Compressed file ended before the end-of-stream marker was reached")
    with pytest.raises(zlib.error):
        with files.gzip_errors(tmp_path / "x.csv"):
            raise zlib.error("not a gz input: a bug, keep the traceback")


def _contents(path):
    return {p.name: p.read_text() for p in sorted(path.iterdir())}


def _fill(path, tag, names):
    path.mkdir(parents=True, exist_ok=True)
    for name in names:
        (path / name).write_text(f"{tag} {name}")


def test_success_replaces_the_directory_whole(tmp_path):
    target = tmp_path / "models" / "lgbm"
    _fill(target, "old", ["fold0.txt", "fold1.txt", "fold2.txt", "test.parquet"])
    with files.atomic_dir(target) as tmp:
        assert tmp.parent == target.parent and not any(tmp.iterdir())
        _fill(tmp, "new", ["fold0.txt", "fold1.txt"])
    assert _contents(target) == {"fold0.txt": "new fold0.txt", "fold1.txt": "new fold1.txt"}
    assert sorted(os.listdir(target.parent)) == ["lgbm"]  # no temporary or old directory left


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_failure_leaves_the_old_directory_as_it_was(tmp_path, error):
    target = tmp_path / "lstm"
    _fill(target, "old", ["fold0.keras", "fold1.keras", "oof.parquet"])
    before = _contents(target)
    with pytest.raises(error), files.atomic_dir(target) as tmp:
        _fill(tmp, "new", ["fold0.keras"])
        raise error()
    assert _contents(target) == before
    assert os.listdir(tmp_path) == ["lstm"]


def test_a_swap_cut_short_is_undone_by_the_next_call(tmp_path):
    target = tmp_path / "lgbm"
    _fill(tmp_path / ".lgbm.old", "old", ["fold0.txt"])  # a process died between the two renames
    _fill(tmp_path / ".lgbm.999999999.tmp", "new", ["fold0.txt"])  # ... and left its unfinished directory
    with pytest.raises(RuntimeError), files.atomic_dir(target):
        raise RuntimeError
    assert _contents(target) == {"fold0.txt": "old fold0.txt"}
    assert os.listdir(tmp_path) == ["lgbm"]
