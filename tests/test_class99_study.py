import json

import numpy as np
import pandas as pd
import pytest

from kit import class99, cli, files, survey
from kit.class99_study import best_method, format_table
from kit.score import read_truth, score_submission


@pytest.fixture
def study(competition, tmp_path):
    """Test predictions for the tiny competition (leaning to the truth, hedging on the unknowns); the study run."""
    meta = pd.read_csv(competition / survey.TEST_METADATA)
    truth = read_truth(competition / survey.TEST_TRUTH).set_index(survey.OBJECT_ID)
    y = truth.loc[meta[survey.OBJECT_ID], survey.TARGET].to_numpy()
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.full(14, 0.5), size=len(y))
    known = y != survey.CLASS_UNKNOWN
    proba[known, np.searchsorted(survey.CLASSES, y[known])] += 2.0
    proba /= proba.sum(axis=1, keepdims=True)
    # stored in another order than the metadata's, as predictions may be
    files.save_proba(tmp_path / "models" / competition.name / "lgbm" / "test.parquet",
                     meta[survey.OBJECT_ID].to_numpy()[::-1], proba[::-1])
    args = ["class99-study", "--data", str(competition), "--models-root", str(tmp_path / "models"),
            "--submissions-dir", str(tmp_path / "subs"), "--model", "lgbm", "--write"]
    assert cli.main(args) == 0
    summary = json.loads((tmp_path / "models" / competition.name / "lgbm" / "class99_study.json").read_text())
    return summary, tmp_path / "subs", competition


def test_study_scores_every_method_as_kit_score_does(study):
    summary, subs, competition = study
    assert set(summary["methods"]) == set(class99.METHODS)
    overall = {}
    for method, row in summary["methods"].items():
        suffix = "" if method == class99.DEFAULT_METHOD else f"-{method}"
        written = subs / f"{competition.name}-lgbm{suffix}.csv.gz"
        scored = score_submission(written, competition / survey.TEST_TRUTH, competition / survey.TEST_METADATA)
        assert row["overall"] == pytest.approx(scored["overall"], abs=1e-9)
        assert row["galactic"] == pytest.approx(scored["groups"]["galactic"]["loss"], abs=1e-9)
        assert row["extragalactic"] == pytest.approx(scored["groups"]["extragalactic"]["loss"], abs=1e-9)
        assert row["class99_term"] == pytest.approx(scored["per_class"]["99"]["contribution"], abs=1e-9)
        overall[method] = row["overall"]
    # the methods really differ, and the best one is the lowest
    assert len({round(v, 6) for v in overall.values()}) == len(overall)
    assert summary["best"] == min(overall, key=overall.get)


def test_study_constant_row_is_the_scales(study):
    summary, _, _ = study
    row = summary["methods"]["constant"]
    assert row["mean_p99_galactic"] == pytest.approx(0.014)
    assert row["mean_p99_extragalactic"] == pytest.approx(0.14)
    assert summary["methods"]["product"]["mean_p99_extragalactic"] == pytest.approx(0.14, rel=1e-6)


def test_study_without_truth_says_what_to_do(tmp_path, capsys):
    data = tmp_path / "kaggle"
    data.mkdir()
    assert cli.main(["class99-study", "--data", str(data), "--models-root", str(tmp_path / "m")]) == 2
    assert "--class99" in capsys.readouterr().err


def test_table_marks_the_best():
    rows = {m: {"overall": v, "galactic": 0.1, "extragalactic": None, "class99_term": 0.2, "class99_loss": 2.0,
                "mean_p99_galactic": 0.01, "mean_p99_extragalactic": 0.1}
            for m, v in (("product", 1.2), ("third", 1.1))}
    assert best_method(rows) == "third"
    lines = format_table(rows).splitlines()
    assert lines[2].startswith("third") and lines[2].endswith("*") and not lines[1].endswith("*")
