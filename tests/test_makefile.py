"""The Makefile itself: FILE= is honoured, and make keeps the finished outputs the kit says it kept."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def make(*args: str, out: Path, data: Path, py: str = sys.executable, env: dict | None = None,
         new_session: bool = False) -> subprocess.CompletedProcess:
    cmd = [
        "make", "--no-print-directory", "-C", str(ROOT), *args,
        f"DATA={data}", f"BUILD_ROOT={out / 'build'}", f"MODELS_ROOT={out / 'models'}",
        f"SUBMISSIONS={out / 'submissions'}", f"REPORTS_ROOT={out / 'reports'}", "MODEL=lgbm", f"PY={py}",
        "WORKERS=1",
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env,
                          start_new_session=new_session)


@pytest.fixture
def no_kaggle(tmp_path) -> dict:
    """An environment in which no real Kaggle can be reached: no credentials, a closed local port."""
    (tmp_path / "kaggle").mkdir()
    return os.environ | {"KAGGLE_CONFIG_DIR": str(tmp_path / "kaggle"), "KIT_KAGGLE_ENDPOINT": "http://127.0.0.1:9"}


def test_validate_and_score_check_the_file_given_and_build_nothing(competition, tmp_path):
    out = tmp_path / "out"
    empty = tmp_path / "empty.csv.gz"
    empty.write_bytes(b"")
    done = make("validate", f"FILE={empty}", out=out, data=competition)
    assert done.returncode != 0
    assert str(empty) in done.stderr  # the error names the file given, not the default submission
    assert not out.exists()  # no features, models or default submission were built

    mine = tmp_path / "mine.csv"
    shutil.copy(competition / "sample_submission.csv", mine)
    done = make("validate", f"FILE={mine}", out=out, data=competition)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"OK: {mine}" in done.stdout
    done = make("score", f"FILE={mine}", out=out, data=competition)
    assert done.returncode == 0, done.stdout + done.stderr
    assert str(mine) in done.stdout
    assert not (out / "build").exists() and not (out / "models").exists()


def test_submit_uploads_the_file_given_or_nothing(competition, tmp_path, no_kaggle):
    out = tmp_path / "out"
    mine = tmp_path / "mine.csv"
    dry = make("-n", "submit", f"FILE={mine}", out=out, data=competition)
    assert dry.returncode == 0, dry.stderr
    assert f"--file '{mine}'" in dry.stdout
    assert "kit submission" not in dry.stdout and "kit features" not in dry.stdout  # the default is not rebuilt

    mine.write_bytes(b"")  # an empty file is refused before anything is uploaded
    done = make("submit", f"FILE={mine}", out=out, data=competition, env=no_kaggle)
    assert done.returncode != 0
    assert str(mine) in done.stderr and "127.0.0.1" not in done.stderr
    assert not out.exists()


@pytest.mark.parametrize("ending", ["error", "interrupt"])
def test_make_keeps_the_outputs_a_failed_command_finished(tmp_path, ending):
    """The kit writes atomically and says "finished outputs are kept": make must not delete them afterwards."""
    data = tmp_path / "comp"
    data.mkdir()
    for name in ("training_set.csv", "training_set_metadata.csv", "test_set.csv", "test_set_metadata.csv"):
        (data / name).write_text("")
    out = tmp_path / "out"
    finished = out / "build" / "comp" / "features_train.parquet"
    # a stand-in for `python -m kit features`: it finishes the training features, then fails or gets Ctrl-C
    fake = tmp_path / "fake-python"
    fake.write_text(
        "#!/bin/bash\n"
        f"mkdir -p {finished.parent} && echo finished > {finished}\n"
        f"{'kill -INT 0; sleep 10' if ending == 'interrupt' else ''}\n"
        "exit 1\n"
    )
    fake.chmod(0o755)
    done = make(str(finished), out=out, data=data, py=str(fake), new_session=True)  # its own process group
    assert done.returncode != 0
    assert "Deleting file" not in done.stdout + done.stderr
    assert finished.read_text() == "finished\n"


def test_class99_method_names_its_own_submission(competition, tmp_path):
    from kit import class99

    out = tmp_path / "out"
    other = "avocado" if class99.DEFAULT_METHOD != "avocado" else "third"
    planned = make("-n", "-B", "submission", f"CLASS99={other}", out=out, data=competition)
    assert planned.returncode == 0, planned.stderr
    assert f"--class99 {other}" in planned.stdout
    assert f"{out / 'submissions'}/{competition.name}-lgbm-{other}.csv.gz" in make(
        "-n", "-B", "validate", f"CLASS99={other}", out=out, data=competition).stdout
    # the Makefile's idea of the default method is the kit's: its submission keeps the plain name
    default = make("-n", "-B", "validate", f"CLASS99={class99.DEFAULT_METHOD}", out=out, data=competition).stdout
    assert f"{competition.name}-lgbm.csv.gz'" in default
