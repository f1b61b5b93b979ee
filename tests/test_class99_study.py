import json

import numpy as np
import pandas as pd
import pytest

from kit import class99, cli, files, survey
from kit.class99_study import best_method, format_table, unknown_auc
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


def test_study_ranks_the_unknowns_per_group_as_a_hand_count_does(study):
    """The AUC of each method's written class-99 column, per group, counts the (unknown, known) pairs it orders
    right (ties half); a constant per group is 0.5, and the product of doubts finds the fixture's hedged unknowns."""
    summary, subs, competition = study
    meta = pd.read_csv(competition / survey.TEST_METADATA).set_index(survey.OBJECT_ID)
    truth = read_truth(competition / survey.TEST_TRUTH).set_index(survey.OBJECT_ID)[survey.TARGET]
    for method, row in summary["methods"].items():
        suffix = "" if method == class99.DEFAULT_METHOD else f"-{method}"
        written = pd.read_csv(subs / f"{competition.name}-lgbm{suffix}.csv.gz").set_index(survey.OBJECT_ID)
        galactic = survey.is_galactic(meta.loc[written.index, "hostgal_photoz"].to_numpy())
        for group, in_group in (("galactic", galactic), ("extragalactic", ~galactic)):
            p99 = written["class_99"].to_numpy()[in_group]
            unknown = truth.loc[written.index].to_numpy()[in_group] == survey.CLASS_UNKNOWN
            pairs = p99[unknown][:, None] - p99[~unknown][None, :]
            hand = ((pairs > 0).sum() + 0.5 * (pairs == 0).sum()) / pairs.size
            assert row[f"auc_{group}"] == pytest.approx(hand, abs=1e-9)
    assert summary["methods"]["constant"]["auc_extragalactic"] == pytest.approx(0.5)
    assert summary["methods"]["product"]["auc_extragalactic"] > 0.8


def test_unknown_auc_needs_both_kinds_and_skips_objects_without_truth():
    assert unknown_auc(np.array([0.1, 0.9, 0.5]), np.array([42.0, 99.0, np.nan])) == 1.0
    assert unknown_auc(np.array([0.1, 0.9]), np.array([42.0, 90.0])) is None
    assert unknown_auc(np.array([0.1, 0.9]), np.array([99.0, 99.0])) is None


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


def test_gap_floor_is_the_hand_computed_optimum():
    from kit.class99_study import gap_floor

    oof_loss, galactic_class = {6: 0.1, 42: 0.5}, {6: True, 42: False}
    floor = gap_floor(oof_loss, galactic_class, unknown_galactic_share=0.0)
    # weights: 6 and 42 count 1, class 99 counts 2; all unknowns extragalactic: p_ext = 2 / (1 + 2), p_gal = 0
    assert floor["p99_galactic"] == 0.0 and floor["p99_extragalactic"] == pytest.approx(2 / 3)
    expected_test = (0.1 + 0.5 - np.log(1 / 3) - 2 * np.log(2 / 3)) / 4
    assert floor["oof"] == pytest.approx(0.3)
    assert floor["test"] == pytest.approx(expected_test) and floor["gap"] == pytest.approx(expected_test - 0.3)

    def test_score(p_gal, p_ext, share=0.25):  # the same total at any probabilities, by brute force
        known = 1 * (0.1 - np.log(1 - p_gal)) + 1 * (0.5 - np.log(1 - p_ext))
        return (known + 2 * (-share * np.log(p_gal) - (1 - share) * np.log(p_ext))) / 4

    best = gap_floor(oof_loss, galactic_class, unknown_galactic_share=0.25)
    grid = np.linspace(0.01, 0.99, 99)
    assert best["test"] <= min(test_score(a, b) for a in grid for b in grid) + 1e-12
    assert best["test"] == pytest.approx(test_score(best["p99_galactic"], best["p99_extragalactic"]))


def test_study_reports_where_the_gap_comes_from(competition, tmp_path):
    from kit import metric

    models = tmp_path / "models" / competition.name / "lgbm"
    rng = np.random.default_rng(1)
    train = pd.read_csv(competition / survey.TRAIN_METADATA)
    y_train = train[survey.TARGET].to_numpy()
    oof = rng.dirichlet(np.full(14, 0.5), size=len(y_train))
    oof[np.arange(len(y_train)), np.searchsorted(survey.CLASSES, y_train)] += 3.0
    oof /= oof.sum(axis=1, keepdims=True)
    files.save_proba(models / "oof.parquet", train[survey.OBJECT_ID].to_numpy(), oof)
    meta = pd.read_csv(competition / survey.TEST_METADATA)
    y = read_truth(competition / survey.TEST_TRUTH).set_index(survey.OBJECT_ID).loc[meta[survey.OBJECT_ID],
                                                                                    survey.TARGET].to_numpy()
    proba = rng.dirichlet(np.full(14, 0.5), size=len(y))
    known = y != survey.CLASS_UNKNOWN
    proba[known, np.searchsorted(survey.CLASSES, y[known])] += 1.0
    proba /= proba.sum(axis=1, keepdims=True)
    files.save_proba(models / "test.parquet", meta[survey.OBJECT_ID].to_numpy(), proba)
    args = ["class99-study", "--data", str(competition), "--models-root", str(tmp_path / "models"), "--model", "lgbm"]
    assert cli.main(args) == 0
    summary = json.loads((models / "class99_study.json").read_text())
    gap = summary["gap"]
    assert gap["oof"] == pytest.approx(metric.weighted_log_loss(y_train, oof))
    galactic = survey.is_galactic(meta["hostgal_photoz"].to_numpy())
    masked = class99.mask_by_group(proba, galactic)
    assert gap["known_test"] == pytest.approx(metric.weighted_log_loss(y[known], masked[known]))
    for method, row in summary["methods"].items():
        assert gap["gaps"][method] == pytest.approx(row["overall"] - gap["oof"])
    from kit.class99_study import gap_floor

    train_galactic = survey.is_galactic(train["hostgal_photoz"].to_numpy())
    expected = gap_floor(metric.per_class_log_loss(y_train, oof),
                         {c: bool(train_galactic[y_train == c].all()) for c in survey.CLASSES if (y_train == c).any()},
                         float(galactic[~known].mean()))
    assert gap["floor"] == pytest.approx(expected)
