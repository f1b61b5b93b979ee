"""The GPU kernel: its plan, the generated script (competition search, disk check, scratch), local runs,
fetched outputs, and the kernel-* make targets (against the stand-in Kaggle on 127.0.0.1)."""

from __future__ import annotations

import json
import os
import py_compile
import runpy
import shutil
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kit import survey
from kit.config import Config
from kit.errors import KitError
from kit.files import load_proba, save_proba
from kit.folds import make_folds
from kit.kaggle import kernel
from kit.standin import StandinServer

ROOT = Path(__file__).resolve().parents[1]
USER, KEY = "kit-user", "s3cret-test-key-123"


def make(*targets: str, env: dict, out: Path, data: Path, **variables) -> subprocess.CompletedProcess:
    cmd = ["make", "--no-print-directory", "-C", str(ROOT), *targets, f"DATA={data}",
           f"BUILD_ROOT={out / 'build'}", f"MODELS_ROOT={out / 'models'}", f"SUBMISSIONS={out / 'submissions'}",
           f"REPORTS_ROOT={out / 'reports'}", f"KERNEL_DIR={out / 'kernel'}", f"PY={sys.executable}", "WORKERS=1",
           *(f"{k}={v}" for k, v in variables.items())]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)


@pytest.fixture
def env(tmp_path):
    """A process environment with no Kaggle credentials and an empty Kaggle config folder."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KAGGLE_", "KIT_KAGGLE"))}
    (tmp_path / "kaggle-config").mkdir()
    return clean | {"HOME": str(tmp_path / "home"), "KAGGLE_CONFIG_DIR": str(tmp_path / "kaggle-config")}


# --- the plan ---------------------------------------------------------------------------------------------
def test_plan_trains_the_models_then_streams_the_test_set():
    assert kernel.plan(["lstm"]) == [
        ["features", "--split", "train"], ["sequences", "--split", "train"], ["folds"], ["train-lstm"],
        ["predict-stream", "--models", "lstm"],
    ]
    steps = kernel.plan(["lgbm"], smoke=True, train_args={"lgbm": ["--learning-rate", "0.1"]})
    assert ["sequences", "--split", "train"] not in steps  # LightGBM needs no sequences
    assert steps[-2] == ["train-lgbm", "--max-rounds", "50", "--learning-rate", "0.1"]
    smoke = kernel.plan(["lstm", "lgbm"], smoke=True)
    assert [s for s in smoke if s[0] == "train-lstm"][0][-2:] == ["--max-folds", "1"]
    assert smoke[-1] == ["predict-stream", "--models", "lstm,lgbm"]
    assert not any(s[0] in ("predict",) or s == ["features"] for s in smoke)  # no test features or sequences
    with pytest.raises(KitError, match="choose among"):
        kernel.plan(["nope"])


def test_plan_pretrains_before_fine_tuning():
    """lstm_ft: the first test objects' sequences, then pretrain (smoke: the demo preset), then the fine-tuning."""
    steps = kernel.plan(["lgbm", "lstm_ft"], train_args={"pretrain": ["--epochs", "3"]}, pretrain_objects=5000)
    commands = [s[0] for s in steps]
    assert commands == ["features", "sequences", "folds", "train-lgbm", "sequences", "pretrain", "train-lstm_ft",
                        "predict-stream"]
    assert steps[4] == ["sequences", "--split", "test", "--max-objects", "5000"]
    assert steps[5] == ["pretrain", "--epochs", "3"] and kernel.pretrain_objects(steps) == 5000
    smoke = kernel.plan(["lstm_ft"], smoke=True)
    assert ["pretrain", "--preset", "demo", "--epochs", "1"] in smoke
    assert kernel.pretrain_objects(kernel.plan(["lstm"])) == 0


# --- the script ----------------------------------------------------------------------------------------------
def _script(tmp_path, steps) -> Path:
    return kernel.build(tmp_path / "kernel", "someone", steps, [], 1)


@pytest.mark.parametrize("layout, found", [
    ("competitions/plasticc-2018", True),  # kernels pushed today
    ("plasticc-2018", True),  # the classic layout
    ("a/b/c/plasticc-2018", False),  # beyond the search depth
])
def test_script_finds_the_competition_a_few_levels_deep(competition, tmp_path, layout, found):
    script = _script(tmp_path, [["check-data"]])
    root = tmp_path / "kaggle"
    data = root / "input" / layout
    data.parent.mkdir(parents=True)
    data.symlink_to(competition, target_is_directory=True)
    (root / "input" / "unrelated-dataset").mkdir()
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                          env=os.environ | {kernel.ROOT_ENV: str(root)})
    if not found:
        assert done.returncode != 0 and "no folder with training_set.csv" in done.stderr
        return
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"competition {data} " in done.stdout
    report = json.loads((root / "working" / "models" / competition.name / kernel.RUN_REPORT).read_text())
    assert [s["command"] for s in report["steps"]] == ["check-data"]
    assert not Path(report["scratch"]).exists() and Path(report["scratch"]).parent == root / "temp"
    assert sorted(p.name for p in (root / "working").iterdir()) == ["models"]  # nothing but outputs


def test_script_refuses_to_start_without_disk_space(competition, tmp_path, monkeypatch):
    script = _script(tmp_path, [["check-data"]])
    root = tmp_path / "kaggle"
    (root / "input").mkdir(parents=True)
    (root / "input" / "plasticc-2018").symlink_to(competition, target_is_directory=True)
    monkeypatch.setenv(kernel.ROOT_ENV, str(root))
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 << 30, 10 << 30, 100 << 20))
    with pytest.raises(SystemExit, match="not enough free space"):
        runpy.run_path(str(script), run_name="__main__")
    report = json.loads((root / "working" / "models" / competition.name / kernel.RUN_REPORT).read_text())
    assert report["steps"] == [] and not Path(report["scratch"]).exists()


# --- local runs ---------------------------------------------------------------------------------------------
def test_local_smoke_run_samples_the_data_and_removes_its_root(competition, tmp_path):
    config = Config(data_dir=competition)
    report = kernel.run_local(_script(tmp_path, [["check-data"]]), config, smoke_objects=(30, 50))
    assert not report["kept"] and not Path(report["root"]).exists()
    assert report["steps"][0]["command"] == "check-data"  # check-data accepted the sampled folder

    sample = kernel.sample_competition(config, tmp_path / "sample", 30, 50)
    for lc, meta, n in ((survey.TRAIN_LIGHTCURVES, survey.TRAIN_METADATA, 30),
                        (survey.TEST_LIGHTCURVES, survey.TEST_METADATA, 50)):
        full = pd.read_csv(competition / lc)
        first = full[survey.OBJECT_ID].drop_duplicates().to_numpy()[:n]
        got = pd.read_csv(sample / lc)
        pd.testing.assert_frame_equal(got, full[full[survey.OBJECT_ID].isin(first)].reset_index(drop=True))
        assert sorted(pd.read_csv(sample / meta)[survey.OBJECT_ID]) == sorted(first)


def test_local_full_run_links_the_data_and_keeps_a_given_root(competition, tmp_path):
    report = kernel.run_local(_script(tmp_path, [["check-data"]]), Config(data_dir=competition),
                              root=tmp_path / "k", smoke=False)
    link = tmp_path / "k" / "kaggle" / "input" / "competitions" / competition.name
    assert report["kept"] and link.is_symlink() and link.resolve() == competition.resolve()


def test_failing_kernel_fails_locally(competition, tmp_path):
    with pytest.raises(KitError, match="failed locally"):
        kernel.run_local(_script(tmp_path, [["no-such-command"]]), Config(data_dir=competition))


# --- outputs --------------------------------------------------------------------------------------------------
def test_outputs_replace_model_folders_whole_and_keep_identical_folds(tmp_path):
    config = Config(data_dir=tmp_path / "data" / "comp", models_root=tmp_path / "models")
    local = config.models_dir
    (local / "lstm").mkdir(parents=True)
    (local / "lstm" / "fold4.keras").write_text("stale")
    (local / "folds.csv").write_text("object_id,fold\n1,0\n")
    os.utime(local / "folds.csv", (1e9, 1e9))
    run = tmp_path / "run"
    (run / "lstm").mkdir(parents=True)
    (run / "lstm" / "test.parquet").write_text("new")
    (run / "folds.csv").write_text("object_id,fold\n1,0\n")
    placed = kernel.install_outputs(run, "u/k", config)
    assert sorted(p.name for p in (local / "lstm").iterdir()) == [kernel.MARKER, "test.parquet"]
    assert json.loads((local / "lstm" / kernel.MARKER).read_text())["kernel"] == "u/k"
    assert (local / "folds.csv").stat().st_mtime == 1e9  # same folds: untouched, local models stay fresh
    assert local / "lstm" / "test.parquet" in placed

    (run / "lstm").mkdir()
    (run / "folds.csv").write_text("object_id,fold\n1,1\n")
    kernel.install_outputs(run, "u/k", config)
    assert (local / "folds.csv").read_text().endswith("1,1\n")


# --- through make ---------------------------------------------------------------------------------------------
def test_make_kernel_build_needs_a_username_and_writes_only_an_ignored_folder(competition, tmp_path, env):
    done = make("kernel-build", env=env, out=tmp_path, data=competition)
    assert done.returncode != 0
    assert "no Kaggle username" in done.stderr and "KAGGLE_USER=" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "kernel").exists()

    done = make("kernel-build", env=env, out=tmp_path, data=competition, KAGGLE_USER="someone", SEED=7)
    assert done.returncode == 0, done.stdout + done.stderr
    meta = json.loads((tmp_path / "kernel" / kernel.METADATA_FILE).read_text())
    assert meta["id"] == "someone/plasticc-kit-lstm" and meta["competition_sources"] == [survey.COMPETITION]
    assert meta["enable_gpu"] and not meta["enable_internet"]
    script = tmp_path / "kernel" / meta["code_file"]
    py_compile.compile(str(script), doraise=True)
    assert "EXTRA = ['--seed', '7', '--folds', '5']" in script.read_text()  # the local folds, in the kernel
    if (ROOT / ".git").exists():  # the default kernel folder is generated, never tracked
        tracked = subprocess.run(["git", "-C", str(ROOT), "ls-files", "kernels"], capture_output=True, text=True)
        assert tracked.stdout == "kernels/.gitignore\n"
        ignored = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", "kernels/lstm/kernel-metadata.json"])
        assert ignored.returncode == 0


def _kernel_outputs(competition: Path, tmp: Path, seed: int = 0) -> dict[str, bytes]:
    """What the kernel leaves in /kaggle/working: LSTM OOF and test predictions, folds, its run report."""
    rng = np.random.default_rng(seed)
    files = {}
    train = pd.read_csv(competition / survey.TRAIN_METADATA)
    test = pd.read_csv(competition / survey.TEST_METADATA)
    folds = make_folds(train[survey.TARGET].to_numpy(), 5, 42)
    files["folds.csv"] = pd.DataFrame({survey.OBJECT_ID: train[survey.OBJECT_ID], "fold": folds}).to_csv(
        index=False).encode()
    for name, meta in (("oof", train), ("test", test)):
        proba = rng.dirichlet(np.ones(len(survey.CLASSES)), len(meta))
        save_proba(tmp / f"{name}.parquet", meta[survey.OBJECT_ID].to_numpy(), proba)
        files[f"lstm/{name}.parquet"] = (tmp / f"{name}.parquet").read_bytes()
    files["lstm/settings.json"] = b'{"n_folds": 5}'
    files[kernel.RUN_REPORT] = b'{"seconds": 1.0}'
    return {f"models/sim-kernel/{k}": v for k, v in files.items()}


def test_make_kernel_round_trip_then_blend_without_retraining(competition, tmp_path, env, tmp_path_factory):
    config_dir = Path(env["KAGGLE_CONFIG_DIR"])
    (config_dir / "kaggle.json").write_text(json.dumps({"username": USER, "key": KEY}))
    (config_dir / "kaggle.json").chmod(0o600)
    outputs = _kernel_outputs(competition, tmp_path_factory.mktemp("outputs"))
    with StandinServer(competition, username=USER, key=KEY) as server:
        env = env | {"KIT_KAGGLE_ENDPOINT": server.url}
        done = make("kernel-push", env=env, out=tmp_path, data=competition)
        assert done.returncode == 0, done.stdout + done.stderr
        kernel_id = f"{USER}/{kernel.KERNEL_SLUG}"
        assert server.kernels[kernel_id]["enableGpu"]
        done = make("kernel-status", env=env, out=tmp_path, data=competition)
        assert done.returncode == 0 and f"{kernel_id}: COMPLETE" in done.stdout
        server.set_kernel_output(kernel_id, outputs, "kernel log")
        done = make("kernel-output", env=env, out=tmp_path, data=competition)
        assert done.returncode == 0, done.stdout + done.stderr
        refused = make("kernel-output", "blend", env=env, out=tmp_path, data=competition)
        assert refused.returncode != 0 and "on its own" in refused.stderr

    models = tmp_path / "models" / competition.name
    fetched = (models / "lstm" / "test.parquet").read_bytes()
    assert fetched == outputs["models/sim-kernel/lstm/test.parquet"]
    assert (models / "lstm" / kernel.MARKER).exists() and (models / "kernel.log").read_text() == "kernel log"
    up_to_date = make("-q", str(models / "lstm" / "test.parquet"), env=env, out=tmp_path, data=competition)
    assert up_to_date.returncode == 0  # no local prerequisites: nothing to rebuild

    done = make("blend", env=env, out=tmp_path, data=competition)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "train-lstm" not in done.stdout and "kit sequences" not in done.stdout and "--model lstm" not in done.stdout
    assert not (tmp_path / "build" / competition.name / "sequences_train").exists()
    assert (models / "lstm" / "test.parquet").read_bytes() == fetched
    weights = json.loads((models / "blend" / "weights.json").read_text())
    assert weights["models"] == ["lgbm", "lstm"]
    ids, proba = load_proba(models / "blend" / "test.parquet")
    assert len(ids) == len(pd.read_csv(competition / survey.TEST_METADATA))


def test_make_kernel_local_smoke_trains_and_predicts_the_sampled_test_set(competition, tmp_path, env):
    root = tmp_path / "local"
    done = make("kernel-local", env=env, out=tmp_path, data=competition,
                KERNEL_ARGS=f"--smoke-objects 150 300 --root {root}")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "kernel smoke run done locally in" in out and "disk: peak scratch" in out
    assert "lstm: test set predicted, 300 objects" in out
    working = root / "kaggle" / "working"
    models = working / "models" / competition.name
    assert sorted(p.name for p in working.iterdir()) == ["models"]
    assert list((root / "kaggle" / "temp").iterdir()) == []  # the scratch folder is gone
    ids, proba = load_proba(models / "lstm" / "test.parquet")
    sampled = pd.read_csv(root / "kaggle" / "input" / "competitions" / competition.name / survey.TEST_METADATA)
    assert sorted(ids) == sorted(sampled[survey.OBJECT_ID]) and len(ids) == 300
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-4)
    galactic = survey.is_galactic(sampled.set_index(survey.OBJECT_ID).loc[ids, "hostgal_photoz"].to_numpy())
    extragalactic_cols = np.isin(survey.CLASSES, survey.EXTRAGALACTIC_CLASSES)
    assert np.all(proba[galactic][:, extragalactic_cols] == 0)
    assert (models / "lstm" / "fold0.keras").exists()
    report = json.loads((models / kernel.RUN_REPORT).read_text())
    assert [s["command"].split()[0] for s in report["steps"]] == [
        "features", "sequences", "folds", "train-lstm", "predict-stream"]


def test_kernel_local_smoke_pretrains_then_fine_tunes(competition, tmp_path, env):
    """The kernel runs pretraining on its first test objects and the fine-tuned network from that encoder."""
    root = tmp_path / "local"
    done = make("kernel-local", env=env, out=tmp_path, data=competition, KERNEL_MODELS="lstm_ft",
                KERNEL_ARGS=f"--smoke-objects 150 300 --pretrain-objects 200 --root {root}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "lstm_ft: test set predicted, 300 objects" in done.stdout
    models = root / "kaggle" / "working" / "models" / competition.name
    pretrained = json.loads((models / "pretrain" / "pretrain.json").read_text())
    assert pretrained["n_objects"] == 200  # the first 200 of the 300 sampled test objects
    assert json.loads((models / "lstm_ft" / "score.json").read_text())["plan"]["encoder"].endswith(
        "pretrain/encoder.keras")
    report = json.loads((models / kernel.RUN_REPORT).read_text())
    assert [s["command"].split()[0] for s in report["steps"]] == [
        "features", "sequences", "folds", "sequences", "pretrain", "train-lstm_ft", "predict-stream"]
