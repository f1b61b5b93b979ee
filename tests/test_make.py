"""The front door: every target `make help` lists is driven through make itself.

TABLE says how each target is exercised: ``Run`` runs it for real on a tiny simulated competition (roots in
a temporary folder, the checkout's .venv, the stand-in Kaggle on 127.0.0.1 for the Kaggle targets), ``DryRun``
only asks ``make -n`` and names why a real run cannot happen here. Whatever the mode, every ``python -m kit``
command a target would run (its prerequisites and the scripts it calls included) must be accepted by the
kit's own argument parser, so a flag the Makefile passes and the command does not know fails here, not
in front of a user.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

from kit import survey

ROOT = Path(__file__).resolve().parents[1]
NAME = "sim-make"  # the tiny competition's folder name, hence build/<NAME>, models/<NAME>
SIM_TRAIN, SIM_TEST = 120, 300
USER, KEY = "make-user", "make-test-key"


@dataclass(frozen=True)
class Run:
    """Run `make <target>` for real; afterwards ``makes`` exist, ``removes`` do not, the output has ``says``."""

    makes: tuple[str, ...] = ()
    removes: tuple[str, ...] = ()
    says: str = ""
    vars: dict[str, str] = field(default_factory=dict)  # on top of the common ones; {ws}: the workspace


@dataclass(frozen=True)
class DryRun:
    """Only `make -n <target>`: a real run needs the network, writes into the checkout or takes too long."""

    why: str


# Paths are relative to the workspace; {name} is the tiny competition's name. In `make help` order, which the
# run test follows, so each stage finds its inputs made by the previous one (alone, make builds them anyway).
TABLE: dict[str, Run | DryRun] = {
    "help": Run(says="list the targets"),
    "setup": Run(says="Nothing to be done for 'setup'"),  # the .venv is reused, never reinstalled
    "simulate": Run(vars={"DATA": "{ws}/simulated"}, makes=("simulated/test_set.csv", "simulated/test_truth.csv")),
    "download": Run(vars={"DATA": "{ws}/downloaded"}, makes=("downloaded/test_set.csv", "downloaded/.download.json")),
    "import-zenodo": Run(vars={"DATA": "{ws}/imported", "ZENODO": "{ws}/zenodo"},
                         makes=("imported/test_set.csv", "imported/test_truth.csv")),
    "check-data": Run(says=": OK"),
    "features": Run(makes=("build/{name}/features_train.parquet", "build/{name}/features_test.parquet")),
    "gp-features": Run(makes=("build/{name}/gp_features_train.parquet", "build/{name}/gp_features_test.parquet")),
    "augment": Run(makes=("build/{name}/features_augment.parquet", "build/{name}/gp_features_augment.parquet")),
    "sequences": Run(makes=("build/{name}/sequences_train/.done", "build/{name}/sequences_test/.done")),
    "adversarial": Run(makes=("build/{name}/adversarial.json",), says="AUC"),
    "folds": Run(makes=("models/{name}/folds.csv",)),
    "train-lgbm": Run(makes=("models/{name}/lgbm/oof.parquet",)),
    "train-lstm": Run(makes=("models/{name}/lstm/oof.parquet",)),
    "predict": Run(makes=("models/{name}/lgbm/test.parquet",)),
    "blend": Run(makes=("models/{name}/blend/test.parquet",)),
    "pretrain": Run(makes=("models/{name}/pretrain/encoder.keras",), says="light curves/s",
                    vars={"PRETRAIN_ARGS": "--preset demo --units 8 --epochs 1"}),
    "transfer-study": Run(makes=("models/{name}/transfer/study.csv", "models/{name}/transfer/study.png"),
                          says="pretrained", vars={"PRETRAIN_ARGS": "--preset demo --units 8 --epochs 1",
                                                   "TRANSFER_ARGS": "--preset demo --units 8 --dense-units 16 8 "
                                                   "--fractions 0.5 1 --seeds 1 --max-folds 1"}),
    "submission": Run(makes=("submissions/{name}-blend.csv.gz",)),
    "validate": Run(says="OK: "),
    "score": Run(makes=("submissions/{name}-blend.score.json",)),
    "class99-study": Run(makes=("models/{name}/blend/class99_study.json",), says="best: "),
    "submit": Run(makes=("submissions/ledger-standin.csv",), says="submitted"),
    "submissions": Run(says="public"),
    "leaderboard": Run(says="rank"),
    "kernel-build": DryRun("run through make by tests/test_kernel.py (username, ignored output folder)"),
    "kernel-push": DryRun("run through make against the stand-in by tests/test_kernel.py (round trip)"),
    "kernel-status": DryRun("run through make against the stand-in by tests/test_kernel.py (round trip)"),
    "kernel-output": DryRun("run through make against the stand-in by tests/test_kernel.py (round trip)"),
    "kernel-local": DryRun("its smoke run goes through make in tests/test_kernel.py"),
    "demo": DryRun("about 7 minutes; its script's make calls are checked through `make -n` too"),
    "report": Run(makes=("reports/{name}/index.html",)),
    "bench": DryRun("a benchmark: real-size metadata and 1000-object models whatever BENCH_ROWS, in ./bench"),
    "test": DryRun("runs this very test suite"),
    "lint": Run(says="All checks passed"),
    "clean-models": Run(removes=("models/{name}",)),
    "clean": Run(removes=("build", "models", "reports", "submissions/{name}-blend.csv.gz")),
}


def _env(**extra: str) -> dict[str, str]:
    """The environment of the make runs: no outer make's flags, no real Kaggle credentials."""
    drop = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "KAGGLE_USERNAME", "KAGGLE_KEY",
            "KAGGLE_API_TOKEN", "KAGGLE_CONFIG_DIR", "KIT_KAGGLE_ENDPOINT")
    return {**{k: v for k, v in os.environ.items() if k not in drop}, **extra}


def make(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), *args], capture_output=True,
                          text=True, timeout=timeout, env=env or _env())


def _listed_targets() -> list[str]:
    return re.findall(r"^  ([A-Za-z0-9_-]+)\s", make("-s", "help").stdout, re.M)


TARGETS = _listed_targets()


def make_vars(target: str, ws: Path) -> list[str]:
    """The command-line variables of `make <target>`: tiny settings, every root inside the workspace."""
    common = {
        "DATA": f"{ws}/{NAME}", "BUILD_ROOT": f"{ws}/build", "MODELS_ROOT": f"{ws}/models",
        "SUBMISSIONS": f"{ws}/submissions", "REPORTS_ROOT": f"{ws}/reports", "PY": sys.executable,
        "WORKERS": "2", "MODEL": "blend", "SIM_TRAIN": str(SIM_TRAIN), "SIM_TEST": str(SIM_TEST),
        "LSTM_ARGS": "--epochs 1", "BENCH_ROWS": "20000", "AUGMENT_COPIES": "1", "GALACTIC_COPIES": "1",
    }
    entry = TABLE.get(target)
    own = {k: v.format(ws=ws) for k, v in entry.vars.items()} if isinstance(entry, Run) else {}
    return [f"{k}={v}" for k, v in {**common, **own}.items()]


# --- the workspace: a tiny competition, its Zenodo-shaped twin, the stand-in Kaggle serving it -------------


def _zenodo_release(competition: Path, out: Path) -> None:
    """``competition`` as Zenodo's unblinded release: _bool columns, -9 for missing values, true_target."""
    out.mkdir()
    truth = pd.read_csv(competition / survey.TEST_TRUTH)
    for part, meta_name, lc_name in (("train", survey.TRAIN_METADATA, survey.TRAIN_LIGHTCURVES),
                                     ("test", survey.TEST_METADATA, survey.TEST_LIGHTCURVES)):
        meta = pd.read_csv(competition / meta_name)
        targets = meta["target"] if part == "train" else meta[["object_id"]].merge(truth)["true_target"]
        meta = meta.drop(columns=["gal_l", "gal_b", "target"], errors="ignore").rename(columns={"ddf": "ddf_bool"})
        meta[["distmod", "hostgal_specz"]] = meta[["distmod", "hostgal_specz"]].fillna(-9.0)
        meta["target"] = meta["true_target"] = targets.to_numpy()
        meta.to_csv(out / f"plasticc_{part}_metadata.csv.gz", index=False)
        lc_file = "plasticc_train_lightcurves.csv.gz" if part == "train" else "plasticc_test_lightcurves_01.csv.gz"
        pd.read_csv(competition / lc_name).rename(columns={"detected": "detected_bool"}).to_csv(
            out / lc_file, index=False)


@pytest.fixture(scope="session")
def workspace(tmp_path_factory):
    """(folder, environment): the competition ``<folder>/sim-make``, ``<folder>/zenodo``, Kaggle on 127.0.0.1."""
    from kit.simulate import tiny_competition
    from kit.standin import StandinServer

    ws = tmp_path_factory.mktemp("make")
    competition = tiny_competition(ws / NAME, n_train=SIM_TRAIN, n_test=SIM_TEST, seed=7)
    _zenodo_release(competition, ws / "zenodo")
    config = ws / "kaggle"
    config.mkdir()
    (config / "kaggle.json").write_text(json.dumps({"username": USER, "key": KEY}))
    (config / "kaggle.json").chmod(0o600)
    with StandinServer(competition, username=USER, key=KEY, state_dir=ws / "standin") as server:
        yield ws, _env(KAGGLE_CONFIG_DIR=str(config), KIT_KAGGLE_ENDPOINT=server.url)


# --- what make would run ----------------------------------------------------------------------------------


def kit_commands(make_output: str) -> list[list[str]]:
    """The arguments of every `python -m kit ...` line of `make -n` output."""
    return [shlex.split(m.group(1)) for m in re.finditer(r"-m kit\s+(.*)$", make_output, re.M)]


def script_calls(script: Path) -> tuple[list[list[str]], list[list[str]]]:
    """(make calls, kit commands) of a shell script, with the script's variables expanded by bash."""
    text = script.read_text().replace("\\\n", " ")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    assignments = "\n".join(line for line in lines if re.match(r"^[A-Z_]+=", line))
    calls, commands = [], []
    for line in lines:
        found = re.search(r"(?:^|[\s;])(make|\S+ -m kit)\s+(.*)$", line)
        if not found:
            continue
        words = re.split(r"\s\d*>|\s&", found.group(2))[0]  # no redirections or background
        program = f'{assignments}\nset -- {words}\nprintf "%s\\0" "$@"'
        expanded = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True,
                                  env=_env()).stdout.split("\0")[:-1]
        if found.group(1) == "make":
            calls.append([w for w in expanded if not w.startswith("-")])
        else:
            commands.append(expanded)
    return calls, commands


def rejection(argv: list[str]) -> str | None:
    """argparse's complaint about `python -m kit <argv>`, or None when the kit accepts it."""
    from kit.cli import build_parser

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            build_parser(argv[0] if argv else None).parse_args(argv)
    except SystemExit:
        return err.getvalue().strip().splitlines()[-1]
    return None


def test_every_listed_target_is_in_the_table():
    assert "help" in TARGETS, f"`make help` lists no targets the test can read:\n{make('help').stdout}"
    for target in TARGETS:
        assert target in TABLE, (f"add target {target} to the table in tests/test_make.py: Run(...) on tiny "
                                 "data, or DryRun(why) when it needs the network or takes too long")
    for target in TABLE:
        assert target in TARGETS, f"`make help` no longer lists {target}: remove it from the table"


@pytest.mark.parametrize("target", TARGETS)
def test_kit_accepts_every_command_make_runs(target, workspace):
    ws, env = workspace
    args = make_vars(target, ws)
    dry = make("-n", "-B", target, *args, env=env)
    assert dry.returncode == 0, f"make -n {target} failed:\n{dry.stdout}{dry.stderr}"
    commands = kit_commands(dry.stdout)
    for script in re.findall(r"^bash\s+(\S+\.sh)\s*$", dry.stdout, re.M):
        calls, direct = script_calls(ROOT / script)
        commands += direct
        for call in calls:  # the script's own variables (DATA=...), the test's for the rest (roots)
            own = {w.split("=")[0] for w in call if "=" in w}
            nested = make("-n", "-B", *call, *(a for a in args if a.split("=")[0] not in own), env=env)
            assert nested.returncode == 0, f"{script}: make -n {' '.join(call)} failed:\n{nested.stderr}"
            commands += kit_commands(nested.stdout)
    refused = [f"`kit {' '.join(argv)}`: {why}" for argv in commands if (why := rejection(argv))]
    assert not refused, f"make {target} runs command(s) the kit rejects:\n" + "\n".join(refused)


def _deleted_paths(make_output: str) -> list[str]:
    return [w for line in make_output.splitlines() if line.startswith("rm ")
            for w in shlex.split(line)[1:] if not w.startswith("-")]


@pytest.mark.parametrize("target", [t for t in TARGETS if isinstance(TABLE.get(t), Run)])
def test_target_runs_on_tiny_data(target, workspace):
    ws, env = workspace
    entry, args = TABLE[target], make_vars(target, ws)
    planned = make("-n", target, *args, env=env)
    assert planned.returncode == 0, f"make -n {target} failed:\n{planned.stdout}{planned.stderr}"
    outside = [p for p in _deleted_paths(planned.stdout) if not Path(p).is_relative_to(ws)]
    assert not outside, (f"make {target} would delete {outside}, outside the test's roots: a recipe ignores "
                         "the *_ROOT settings, or the .venv is stale (run `make setup` first)")

    done = make(target, *args, env=env, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"make {target} failed (exit {done.returncode}):\n{output[-4000:]}"
    assert entry.says in output, f"make {target} did not say {entry.says!r}:\n{output[-2000:]}"
    for path in entry.makes:
        assert (ws / path.format(name=NAME)).exists(), f"make {target} did not make {path.format(name=NAME)}"
    for path in entry.removes:
        assert not (ws / path.format(name=NAME)).exists(), f"make {target} left {path.format(name=NAME)}"


@pytest.mark.parametrize("target, var", [("train-cnn", "CNN_ARGS"), ("train-lstm", "LSTM_ARGS")])
def test_a_network_on_copies_makes_the_copies_first_and_accepts_the_option(target, var, workspace):
    ws, env = workspace
    args = [a for a in make_vars(target, ws) if not a.startswith(f"{var}=")] + [f"{var}=--augmented-copies 2"]
    dry = make("-n", "-B", target, *args, env=env)
    assert dry.returncode == 0, f"make -n {target} failed:\n{dry.stdout}{dry.stderr}"
    names = [argv[0] for argv in kit_commands(dry.stdout)]
    assert "augment" in names and names.index("augment") < names.index(target), names
    refused = [why for argv in kit_commands(dry.stdout) if (why := rejection(argv))]
    assert not refused, refused
    plain = make("-n", "-B", target, *args[:-1], f"{var}=", env=env)
    assert "augment" not in [argv[0] for argv in kit_commands(plain.stdout)]  # copies only when asked for
