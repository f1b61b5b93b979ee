"""The LightGBM path end to end, through the same make targets the README gives."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kit import survey
from kit.config import Config
from kit.files import load_proba

ROOT = Path(__file__).resolve().parents[1]


def make(*targets: str, data: Path, out: Path, model: str = "lgbm") -> subprocess.CompletedProcess:
    cmd = [
        "make", "--no-print-directory", "-C", str(ROOT), *targets,
        f"DATA={data}", f"BUILD_ROOT={out / 'build'}", f"MODELS_ROOT={out / 'models'}",
        f"SUBMISSIONS={out / 'submissions'}", f"REPORTS_ROOT={out / 'reports'}", f"MODEL={model}",
        f"PY={sys.executable}", "WORKERS=2", "AUGMENT_COPIES=2", "GALACTIC_COPIES=1",  # the default path, tiny
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def run(competition, tmp_path_factory):
    out = tmp_path_factory.mktemp("pipeline")
    done = make("validate", "score", data=competition, out=out)
    assert done.returncode == 0, done.stdout + done.stderr
    cfg = Config(data_dir=competition, build_root=out / "build", models_root=out / "models",
                 submissions_dir=out / "submissions")
    return cfg, done


def test_lgbm_artefacts_in_native_formats(run):
    cfg, _ = run
    model_dir = cfg.model_dir("lgbm")
    boosters = sorted(model_dir.glob("fold*.txt"))
    assert len(boosters) == cfg.n_folds
    assert boosters[0].read_text().startswith("tree")  # LightGBM's own text format, not a pickle
    importance = pd.read_csv(model_dir / "importance.csv")
    assert {"feature", "gain", "split"} <= set(importance.columns) and importance["gain"].sum() > 0
    folds = pd.read_csv(cfg.folds_path)
    assert sorted(folds["fold"].unique()) == list(range(cfg.n_folds))


def test_oof_score_beats_class_prior_and_matches_saved_predictions(run):
    from kit import metric

    cfg, _ = run
    score = json.loads(cfg.score_path("lgbm").read_text())
    assert score["oof"] < score["class_prior_oof"] - 0.3
    ids, oof = load_proba(cfg.oof_path("lgbm"))
    meta = pd.read_csv(cfg.train_metadata).set_index("object_id").loc[ids]
    assert metric.weighted_log_loss(meta["target"].to_numpy(), oof) == pytest.approx(score["oof"], rel=1e-5)


def test_test_predictions_respect_galactic_split(run):
    cfg, _ = run
    ids, proba = load_proba(cfg.test_pred_path("lgbm"))
    meta = pd.read_csv(cfg.test_metadata).set_index("object_id").loc[ids]
    allowed = survey.allowed_classes_mask(survey.is_galactic(meta["hostgal_photoz"].to_numpy()))
    assert np.all(proba[~allowed] == 0)
    assert np.allclose(proba.sum(axis=1), 1, atol=1e-5)


def test_submission_is_valid_gzip_with_one_row_per_test_object(run):
    cfg, done = run
    path = cfg.submission_path("lgbm")
    with gzip.open(path, "rt") as f:
        assert f.readline().strip() == ",".join(survey.SUBMISSION_COLUMNS)
    sub = pd.read_csv(path)
    test_ids = pd.read_csv(cfg.test_metadata, usecols=["object_id"])["object_id"]
    assert sorted(sub["object_id"]) == sorted(test_ids)
    assert "OK" in done.stdout  # make validate accepted it


def test_stages_are_skipped_when_fresh(run, competition):
    cfg, _ = run
    out = Path(cfg.build_root).parent
    again = make("-n", "score", data=competition, out=out)
    assert again.returncode == 0
    assert "kit features" not in again.stdout and "kit train-lgbm" not in again.stdout


def test_lgbm_beats_the_class_prior_baseline_on_the_test_truth(run, competition):
    cfg, _ = run
    out = Path(cfg.build_root).parent
    done = make("score", data=competition, out=out, model="prior")
    assert done.returncode == 0, done.stdout + done.stderr
    scores = {m: json.loads(cfg.submission_path(m).with_name(f"{cfg.name}-{m}.score.json").read_text())["overall"]
              for m in ("lgbm", "prior")}
    assert scores["lgbm"] < scores["prior"] - 0.3
