"""Tests of kit.report: the HTML report and plot-object on a tiny hand-made competition."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kit import survey
from kit.config import Config
from kit.errors import InputError
from kit.files import save_proba
from kit.report import learning_history, write_report
from kit.report.plot_object import plot_object, read_lightcurves

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TRAIN_CLASSES = (6, 16, 42, 65, 88, 90, 15, 64)


def _lightcurves(ids: np.ndarray, rng: np.random.Generator, rows: int = 18) -> pd.DataFrame:
    oid = np.repeat(ids, rows)
    n = len(oid)
    flux = rng.normal(0, 20, n).astype(np.float32)
    err = rng.uniform(1, 5, n).astype(np.float32)
    return pd.DataFrame({
        "object_id": oid,
        "mjd": np.tile(np.linspace(59580, 60500, rows), len(ids)),
        "passband": np.tile(np.arange(rows) % 6, len(ids)),
        "flux": flux,
        "flux_err": err,
        "detected": (np.abs(flux) / err > 5).astype(int),
    })


def _metadata(ids: np.ndarray, rng: np.random.Generator, galactic: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({
        "object_id": ids,
        "ra": rng.uniform(0, 360, len(ids)),
        "decl": rng.uniform(-60, 0, len(ids)),
        "gal_l": 0.0, "gal_b": 0.0,
        "ddf": (np.arange(len(ids)) % 3 == 0).astype(int),
        "hostgal_specz": np.nan,
        "hostgal_photoz": np.where(galactic, 0.0, rng.uniform(0.1, 1.0, len(ids))),
        "hostgal_photoz_err": 0.1, "distmod": np.where(galactic, np.nan, 40.0), "mwebv": 0.02,
    })


def _dirichlet(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    return rng.dirichlet(np.full(k, 0.5), size=n)


def _config(root: Path) -> Config:
    return Config(data_dir=root / "data" / "demo", build_root=root / "build", models_root=root / "models",
                  submissions_dir=root / "submissions", reports_root=root / "reports", workers=1, chunk_rows=40)


@pytest.fixture
def empty_config(tmp_path: Path) -> Config:
    config = _config(tmp_path)
    Path(config.data_dir).mkdir(parents=True)
    return config


@pytest.fixture
def full_config(tmp_path: Path) -> Config:
    """A competition folder with every artefact the report reads."""
    rng = np.random.default_rng(0)
    config = _config(tmp_path)
    data = Path(config.data_dir)
    data.mkdir(parents=True)
    train_ids = np.arange(100, 124)
    y = np.array([TRAIN_CLASSES[i % len(TRAIN_CLASSES)] for i in range(len(train_ids))])
    gal = np.isin(y, survey.GALACTIC_CLASSES)
    _lightcurves(train_ids, rng).to_csv(data / survey.TRAIN_LIGHTCURVES, index=False)
    _metadata(train_ids, rng, gal).assign(target=y).to_csv(data / survey.TRAIN_METADATA, index=False)

    test_ids = np.arange(1000, 1030)
    true = rng.choice([6, 16, 42, 90, 88, 991, 992], size=len(test_ids))
    scored = survey.truth_to_scored(true)
    _lightcurves(test_ids, rng).to_csv(data / survey.TEST_LIGHTCURVES, index=False)
    _metadata(test_ids, rng, np.isin(scored, survey.GALACTIC_CLASSES)).to_csv(data / survey.TEST_METADATA, index=False)
    pd.DataFrame({"object_id": test_ids, "target": scored, "true_target": true}).to_csv(
        data / survey.TEST_TRUTH, index=False)

    k = len(survey.CLASSES)
    for model in ("lgbm", "lstm", "blend"):
        save_proba(config.oof_path(model), train_ids, _dirichlet(rng, len(train_ids), k))
        save_proba(config.test_pred_path(model), test_ids, _dirichlet(rng, len(test_ids), k))
        config.score_path(model).write_text(json.dumps({"oof": 1.2}))
    history = [{"fold": f, "loss": [1.5, 1.1, 0.9], "val_wloss": [1.6, 1.3, 1.2]} for f in range(2)]
    config.score_path("lstm").write_text(json.dumps({"oof": 1.2, "history": history}))
    pd.DataFrame({"feature": [f"f{i}" for i in range(40)], "gain": rng.uniform(0, 100, 40),
                  "split": 1}).to_csv(config.model_dir("lgbm") / "importance.csv", index=False)
    (config.model_dir("blend") / "weights.json").write_text(
        json.dumps({"method": "geometric", "weights": {"lgbm": 0.7, "lstm": 0.3}, "oof": 1.1}))

    sub = pd.DataFrame(_dirichlet(rng, len(test_ids), k + 1), columns=list(survey.SUBMISSION_COLUMNS[1:]))
    sub.insert(0, "object_id", test_ids)
    Path(config.submissions_dir).mkdir(parents=True)
    sub.to_csv(config.submission_path("blend"), index=False)
    row = {"time": "2024-01-01T00:00:00", "endpoint": "https://api.kaggle.com", "competition": survey.COMPETITION,
           "file": config.submission_path("blend").name, "sha256": "ab", "message": "first <b>",
           "model": "blend", "oof_score": 0.9, "local_score": 1.1, "ref": 1, "status": "COMPLETE",
           "public_score": 1.2, "private_score": 1.25}
    runs = [("scratch", f, s, 0.9 + f, 1.2 - f / 2) for f in (0.25, 1.0) for s in (0,)] + [
        ("pretrained", 0.25, 0, 0.8, 1.0), ("pretrained", 1.0, 0, 0.7, 0.9)]
    config.model_dir("transfer").mkdir(parents=True)
    pd.DataFrame(runs, columns=["arm", "fraction", "seed", "oof", "test"]).assign(n_labelled=100).to_csv(
        config.model_dir("transfer") / "study.csv", index=False)
    pd.DataFrame([row]).to_csv(config.ledger_path, index=False)
    pd.DataFrame([dict(row, endpoint="http://127.0.0.1:8765", message="demo row", public_score=2.5)]).to_csv(
        config.ledger_path.with_name("ledger-standin.csv"), index=False)
    return config


def _links(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html)


def _assert_png(path: Path) -> None:
    assert path.exists(), path
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 5_000, path


EXPECTED = ["confusion_lgbm.png", "confusion_lstm.png", "confusion_blend.png", "class_contributions.png",
            "feature_importance.png", "reliability.png", "lstm_learning_curves.png", "transfer_study.png",
            "worst_objects.png",
            "test_scores.png", "class99_hist.png", "class_distribution.png"]


def test_full_report_writes_every_figure_and_links_only_existing_files(full_config: Config) -> None:
    index = write_report(full_config, worst=6)
    out = Path(full_config.reports_dir)
    assert index == out / "index.html"
    for name in EXPECTED:
        _assert_png(out / name)
    html = index.read_text()
    links = _links(html)
    assert set(EXPECTED) <= set(links)
    assert all((out / link).exists() for link in links)
    assert "skipped" not in html
    # tables: blend weights, class-99 settings, ledger with the CV-to-leaderboard gap, escaped text
    assert "geometric" in html and "0.7" in html and str(full_config.class99_extragalactic) in html
    assert "public - oof" in html and "first &lt;b&gt;" in html
    assert "<td>pretrained</td>" in html and "test_mean" in html  # the transfer study's table
    # the ledger's rows carry their endpoint; the stand-in's have their own, labelled table after Kaggle's
    assert "<td>0.3000</td>" in html  # public - oof of the Kaggle row: 1.2 - 0.9
    kaggle_at, standin_at = html.index("https://api.kaggle.com"), html.index("http://127.0.0.1:8765")
    assert kaggle_at < html.index("Uploads to the LOCAL STAND-IN, not Kaggle") < standin_at
    assert html.index("first &lt;b&gt;") < html.index("Uploads to the LOCAL STAND-IN") < html.index("demo row")
    assert not list(out.glob(".*tmp"))


def test_report_skips_missing_inputs_with_notes(empty_config: Config) -> None:
    html = write_report(empty_config).read_text()
    assert html.count('class="skip"') >= 8
    assert "feature_importance" not in html and "<img" not in html
    assert _links(html) == []


def test_report_skips_only_what_is_missing(full_config: Config) -> None:
    (full_config.model_dir("lgbm") / "importance.csv").unlink()
    full_config.score_path("lstm").write_text(json.dumps({"oof": 1.2}))
    full_config.truth.unlink()
    out = Path(full_config.reports_dir)
    html = write_report(full_config, worst=3).read_text()
    assert "importance.csv not found" in html
    assert "no per-epoch history" in html
    assert "no truth file" in html
    for name in ("feature_importance.png", "lstm_learning_curves.png", "test_scores.png"):
        assert name not in html and not (out / name).exists()
    _assert_png(out / "confusion_blend.png")
    assert all((out / link).exists() for link in _links(html))


@pytest.mark.parametrize("score, folds, metrics", [
    ({"history": [{"fold": 0, "loss": [1.0, 0.5], "val_wloss": [1.1, 0.9]}]}, 1, {"loss", "val_wloss"}),
    ({"per_epoch": [[{"train": 1.0, "val": 1.2}, {"train": 0.8, "val": 1.0}], [{"train": 1, "val": 2}]]},
     2, {"train", "val"}),
    ({"per_epoch": [[1.2, 1.0], [1.3, 1.1]]}, 2, {"val"}),
    ({"per_epoch": [{"fold": 0, "epoch": 1, "loss": 1.0}, {"fold": 0, "epoch": 2, "loss": 0.8}]}, 1, {"loss"}),
    ({"oof": 1.0}, 0, set()),
])
def test_learning_history_layouts(score: dict, folds: int, metrics: set[str]) -> None:
    history = learning_history(score)
    assert len(history) == folds
    assert {m for _, s in history for m in s} == metrics


def test_plot_object_train_and_test(full_config: Config, tmp_path: Path) -> None:
    for oid in (105, 1029):
        out = plot_object(full_config, oid, tmp_path / f"obj_{oid}.png")
        _assert_png(out)


def test_plot_object_unknown_id_is_a_clear_error(full_config: Config, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="object 424242 was found in neither"):
        plot_object(full_config, 424242, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_plot_object_command_default_path(full_config: Config) -> None:
    from kit.report import plot_object as command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    assert command.run(parser.parse_args(["110"]), full_config) == 0
    _assert_png(Path(full_config.reports_dir) / "object_110.png")


def test_read_lightcurves_streams_whole_objects(full_config: Config) -> None:
    lc = read_lightcurves(full_config.test_lightcurves, [1003, 1007], chunk_rows=7, contiguous=True)
    assert sorted(lc["object_id"].unique()) == [1003, 1007]
    assert len(lc) == 2 * 18


def test_commands_through_the_cli(full_config: Config, capsys: pytest.CaptureFixture) -> None:
    from kit.cli import main

    common = ["--data", str(full_config.data_dir), "--models-root", str(full_config.models_root),
              "--submissions-dir", str(full_config.submissions_dir), "--reports-root", str(full_config.reports_root)]
    assert main(["plot-object", "31337", *common]) == 2
    assert "object 31337 was found in neither" in capsys.readouterr().err
    assert main(["report", "--worst", "2", *common]) == 0
    assert (Path(full_config.reports_dir) / "index.html").exists()
