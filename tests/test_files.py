"""kit.files: a directory of outputs is replaced whole, or not at all."""

from __future__ import annotations

import os

import pytest

from kit.files import atomic_dir


def _contents(path):
    return {p.name: p.read_text() for p in sorted(path.iterdir())}


def _fill(path, tag, names):
    path.mkdir(parents=True, exist_ok=True)
    for name in names:
        (path / name).write_text(f"{tag} {name}")


def test_success_replaces_the_directory_whole(tmp_path):
    target = tmp_path / "models" / "lgbm"
    _fill(target, "old", ["fold0.txt", "fold1.txt", "fold2.txt", "test.parquet"])
    with atomic_dir(target) as tmp:
        assert tmp.parent == target.parent and not any(tmp.iterdir())
        _fill(tmp, "new", ["fold0.txt", "fold1.txt"])
    assert _contents(target) == {"fold0.txt": "new fold0.txt", "fold1.txt": "new fold1.txt"}
    assert sorted(os.listdir(target.parent)) == ["lgbm"]  # no temporary or old directory left


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_failure_leaves_the_old_directory_as_it_was(tmp_path, error):
    target = tmp_path / "lstm"
    _fill(target, "old", ["fold0.keras", "fold1.keras", "oof.parquet"])
    before = _contents(target)
    with pytest.raises(error), atomic_dir(target) as tmp:
        _fill(tmp, "new", ["fold0.keras"])
        raise error()
    assert _contents(target) == before
    assert os.listdir(tmp_path) == ["lstm"]


def test_a_swap_cut_short_is_undone_by_the_next_call(tmp_path):
    target = tmp_path / "lgbm"
    _fill(tmp_path / ".lgbm.old", "old", ["fold0.txt"])  # a process died between the two renames
    _fill(tmp_path / ".lgbm.999999999.tmp", "new", ["fold0.txt"])  # ... and left its unfinished directory
    with pytest.raises(RuntimeError), atomic_dir(target):
        raise RuntimeError
    assert _contents(target) == {"fold0.txt": "old fold0.txt"}
    assert os.listdir(tmp_path) == ["lgbm"]
