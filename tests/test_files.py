"""File helpers: the build-folder lock, provenance records and unreadable gzip inputs."""

from __future__ import annotations

import json
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
