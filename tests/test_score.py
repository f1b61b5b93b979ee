import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kit import cli, survey
from kit.errors import InputError
from kit.score import format_score_table, score_json_path, score_submission

CLASSES = list(survey.SUBMISSION_CLASSES)
IDS = np.arange(100, 100 + len(CLASSES))
GALACTIC = np.isin(CLASSES, survey.GALACTIC_CLASSES)
DDF = (np.arange(len(CLASSES)) % 2).astype(int)


@pytest.fixture
def data(tmp_path):
    folder = tmp_path / "tiny"
    folder.mkdir()
    meta = pd.DataFrame({"object_id": IDS, "ddf": DDF, "hostgal_photoz": np.where(GALACTIC, 0.0, 0.4)})
    meta.to_csv(folder / survey.TEST_METADATA, index=False)
    # one object per submission class; the unknown one carries its Zenodo true_target
    true_target = [c if c != 99 else 992 for c in CLASSES]
    truth = pd.DataFrame({"object_id": IDS, "target": CLASSES, "true_target": true_target})
    truth.to_csv(folder / survey.TEST_TRUTH, index=False)
    return folder


def _frame(p):
    frame = pd.DataFrame(p, columns=list(survey.SUBMISSION_COLUMNS[1:]))
    frame.insert(0, "object_id", IDS)
    return frame


def test_perfect_submission_scores_zero(data):
    result = score_submission(_frame(np.eye(15)), data / survey.TEST_TRUTH, data / survey.TEST_METADATA)
    assert result["overall"] == pytest.approx(0, abs=1e-12)
    assert result["n_scored"] == 15


def test_uniform_submission_scores_ln15(data):
    result = score_submission(_frame(np.full((15, 15), 1 / 15)), data / survey.TEST_TRUTH)
    assert result["overall"] == pytest.approx(math.log(15), abs=1e-9)
    assert result["overall"] == pytest.approx(2.70805, abs=1e-5)
    assert set(result["per_class"]) == {str(c) for c in CLASSES}
    assert result["per_class"]["99"]["weight"] == 2
    assert sum(r["contribution"] for r in result["per_class"].values()) == pytest.approx(result["overall"])
    assert result["groups"] == {}


def test_group_breakdowns(data):
    # galactic objects predicted perfectly, extragalactic ones uniformly
    p = np.where(GALACTIC[:, None], np.eye(15), 1 / 15)
    result = score_submission(_frame(p), data / survey.TEST_TRUTH, data / survey.TEST_METADATA)
    groups = result["groups"]
    assert groups["galactic"] == {"n": 5, "loss": pytest.approx(0, abs=1e-12)}
    assert groups["extragalactic"]["n"] == 10
    assert groups["extragalactic"]["loss"] == pytest.approx(math.log(15))
    assert groups["ddf"]["n"] + groups["wfd"]["n"] == 15
    # by hand: weighted mean over DDF classes of (0 if galactic else ln 15)
    for name, mask in (("ddf", DDF == 1), ("wfd", DDF == 0)):
        w = np.array([survey.CLASS_WEIGHTS[c] for c in np.array(CLASSES)[mask]])
        expected = np.dot(w, np.where(GALACTIC[mask], 0, math.log(15))) / w.sum()
        assert groups[name]["loss"] == pytest.approx(expected)
    assert result["per_class"]["6"]["loss"] == pytest.approx(0, abs=1e-12)
    assert result["per_class"]["90"]["loss"] == pytest.approx(math.log(15))


def test_submission_file_and_extra_rows(data, tmp_path):
    uniform = _frame(np.full((15, 15), 1 / 15))
    frame = pd.concat([uniform, uniform.iloc[[0]].assign(object_id=5)])
    path = tmp_path / "s.csv.gz"
    frame.to_csv(path, index=False)
    result = score_submission(path, data / survey.TEST_TRUTH)
    assert result["n_unscored"] == 1
    assert result["overall"] == pytest.approx(math.log(15), abs=1e-6)


def test_missing_truth_objects_are_an_error(data):
    with pytest.raises(InputError, match="no row in the submission"):
        score_submission(_frame(np.eye(15)).iloc[1:], data / survey.TEST_TRUTH)


def test_format_score_table(data):
    p = np.where(GALACTIC[:, None], np.eye(15), 1 / 15)
    table = format_score_table(score_submission(_frame(p), data / survey.TEST_TRUTH, data / survey.TEST_METADATA))
    assert "weighted log loss:" in table and "extragalactic" in table and "kilonova" in table


def _args(tmp_path, data):
    return ["--data", str(data), "--submissions-dir", str(tmp_path / "subs")]


def test_score_command_writes_json(data, tmp_path, capsys):
    (tmp_path / "subs").mkdir()
    sub = tmp_path / "subs" / "tiny-lgbm.csv.gz"
    _frame(np.full((15, 15), 1 / 15)).to_csv(sub, index=False)
    assert cli.main(["score", *_args(tmp_path, data)]) == 0
    assert "2.70805" in capsys.readouterr().out
    out = score_json_path(sub)
    assert out.name == "tiny-lgbm.score.json"
    assert json.loads(out.read_text())["overall"] == pytest.approx(math.log(15), abs=1e-6)


def test_score_command_without_truth_says_so(data, tmp_path, capsys):
    (data / survey.TEST_TRUTH).unlink()
    assert cli.main(["score", *_args(tmp_path, data)]) == 0
    assert "nothing to score against" in capsys.readouterr().out


def test_score_piped_into_a_reader_that_stops_ends_quietly(data, tmp_path):
    """`python -m kit score ... | head -1`: no traceback when the reader closes the pipe, exit 141 as `yes | head`."""
    (tmp_path / "subs").mkdir()
    _frame(np.full((15, 15), 1 / 15)).to_csv(tmp_path / "subs" / "tiny-lgbm.csv.gz", index=False)
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the command writes its first line
    try:
        done = subprocess.run([sys.executable, "-m", "kit", "score", *_args(tmp_path, data)], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1], timeout=120)
    finally:
        os.close(write_end)
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr
    assert done.returncode == 141


def test_a_broken_pipe_elsewhere_stays_an_error(monkeypatch, data, tmp_path):
    """Only a closed stdout is quiet: a BrokenPipeError from anything else (a socket, a child) is raised."""
    from kit import score

    def run(args, config):
        raise BrokenPipeError("a socket")

    monkeypatch.setattr(score, "run", run)
    with pytest.raises(BrokenPipeError, match="a socket"):
        cli.main(["score", *_args(tmp_path, data)])
