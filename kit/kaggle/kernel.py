"""The GPU kernel: build, push, poll, fetch its outputs, or run it locally first.

The kernel is one self-contained script (:mod:`kit.kaggle.kernel_script`): the kit package travels inside
it as a base64 zip. On Kaggle it trains the models (default: the LSTM) on the training set and predicts the
3.5M test objects with ``predict-stream``, which builds features and sequences chunk by chunk in memory:
no 18 GB of test sequences, no 3 GB of test features. Build files go to a scratch folder
(``/kaggle/temp``), outputs to ``/kaggle/working/models/<name>/``: the fold models, ``oof.parquet``,
``test.parquet``, ``folds.csv`` and ``kernel-run.json`` (time and disk of each step).

``kernel build`` / ``push`` write the script and ``kernel-metadata.json`` into ``--kernel-dir``
(``kernels/lstm``, ignored by git). ``kernel output`` moves the outputs into ``models/<name>/`` and marks
each model folder with ``kernel.json``; the Makefile treats such models as authoritative (it does not
retrain or repredict them from local features or sequences). ``kernel local`` runs the same script in a
Kaggle-like folder: by default a smoke run (a sample of the data, one fold, two epochs), ``--full`` for
the run the pushed kernel does.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import gzip
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from kit import survey
from kit.config import Config
from kit.errors import KitError
from kit.files import atomic_path, read_json, write_json
from kit.kaggle import kernel_script
from kit.kaggle.client import _config_dir, authenticated_api, kaggle_errors, username

log = logging.getLogger(__name__)

KERNEL_SLUG = "plasticc-kit-lstm"
KERNEL_TITLE = "PLAsTiCC kit LSTM"
DEFAULT_DIR = Path("kernels/lstm")
SCRIPT_NAME = f"{KERNEL_SLUG}.py"
METADATA_FILE = "kernel-metadata.json"
#: Models the kernel trains and predicts (override with --models).
DEFAULT_MODELS = ("lstm",)
#: Objects of each split kept by a smoke run (the first ones of each file).
SMOKE_TRAIN, SMOKE_TEST = 400, 1000
#: Test objects a kernel pretrains on when a model fine-tunes a pretrained encoder (the first ones of the test set;
#: their sequences take about this many x 5.5 kB of scratch). A smoke run pretrains on its whole sample.
PRETRAIN_OBJECTS = 1_000_000
#: Environment variable the script reads for its root (Kaggle's is /kaggle).
ROOT_ENV = "KIT_KAGGLE_ROOT"
#: Marker beside each model fetched from the kernel: the Makefile does not rebuild such models.
MARKER = "kernel.json"
RUN_REPORT = "kernel-run.json"
PACKAGE = Path(__file__).resolve().parents[1]
COMPETITION_FILES = {
    "train_lightcurves": survey.TRAIN_LIGHTCURVES,
    "train_metadata": survey.TRAIN_METADATA,
    "test_lightcurves": survey.TEST_LIGHTCURVES,
    "test_metadata": survey.TEST_METADATA,
}
MB = 1 << 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("build", "push", "status", "output", "local"))
    parser.add_argument("--kernel-dir", type=Path, default=DEFAULT_DIR, help="default %(default)s (not tracked)")
    parser.add_argument("--competition", default=survey.COMPETITION,
                        help="Kaggle competition the kernel reads (its competition source; default %(default)s)")
    parser.add_argument("--user", default=None,
                        help="Kaggle user owning the kernel (default: KAGGLE_USERNAME or the one in kaggle.json)")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS),
                        help="comma-separated models the kernel trains and predicts (default %(default)s)")
    parser.add_argument("--train-args", action="append", default=[], metavar="MODEL=OPTIONS",
                        help="options of one model's training command, e.g. 'lstm=--epochs 30' (repeatable)")
    parser.add_argument("--extra", default="", help="options given to every kit command, e.g. '--folds 3'")
    parser.add_argument("--smoke", action="store_true",
                        help="build/push: a smoke kernel (one fold, two epochs); local runs a smoke run unless --full")
    parser.add_argument("--full", action="store_true", help="local: the full run on all of --data")
    parser.add_argument("--root", type=Path, default=None, help="local: the Kaggle-like root (kept; default: temp)")
    parser.add_argument("--keep", action="store_true", help="local: keep the temporary root and its outputs")
    parser.add_argument("--smoke-objects", type=int, nargs=2, default=(SMOKE_TRAIN, SMOKE_TEST),
                        metavar=("TRAIN", "TEST"), help="local smoke run: objects of each split (default %(default)s)")
    parser.add_argument("--wait", type=float, default=0, help="status: poll until finished, at most this many s")
    parser.add_argument("--pretrain-objects", type=int, default=PRETRAIN_OBJECTS,
                        help="test objects to pretrain on when a model needs it (lstm_ft; default %(default)s); "
                             "pretraining options: --train-args 'pretrain=--epochs 3'")


# --- what the kernel runs ---------------------------------------------------------------------------
def plan(models: list[str], smoke: bool = False, train_args: dict[str, list[str]] | None = None,
         pretrain_objects: int = PRETRAIN_OBJECTS) -> list[list[str]]:
    """The kit commands the kernel runs: training inputs, folds, each model's training, the streamed test.

    Training features and sequences are built (small); the test set is never featurised to disk. A model that
    fine-tunes a pretrained encoder (``PRETRAIN_SMOKE_ARGS`` in its module: ``lstm_ft``) gets the sequences of the
    first ``pretrain_objects`` test objects and ``pretrain`` on them before its training (options of
    ``train_args['pretrain']``).
    """
    from kit import models as registry
    from kit.predict_stream import check_models, needs_sequences

    models = check_models(models)
    train_args = train_args or {}
    steps = [["features", "--split", "train"]]
    if needs_sequences(models):
        steps.append(["sequences", "--split", "train"])
    steps.append(["folds"])
    for model in models:
        module = registry.get(model)
        pretrain = getattr(module, "PRETRAIN_SMOKE_ARGS", None)
        if pretrain is not None and not any(s[0] == "pretrain" for s in steps):
            steps.append(["sequences", "--split", "test", "--max-objects", str(pretrain_objects)])
            steps.append(["pretrain", *(pretrain if smoke else []), *train_args.get("pretrain", [])])
        # a smoke run: each model's own small settings (its SMOKE_ARGS: one fold, few epochs or rounds)
        args = (list(module.SMOKE_ARGS) if smoke else []) + train_args.get(model, [])
        steps.append([f"train-{model}", *args])
    steps.append(["predict-stream", "--models", ",".join(models)])
    return steps


def pretrain_objects(steps: list[list[str]]) -> int:
    """Test objects whose sequences the planned ``steps`` build (0: none)."""
    for step in steps:
        if step[:3] == ["sequences", "--split", "test"] and "--max-objects" in step:
            return int(step[step.index("--max-objects") + 1])
    return 0


def package_zip() -> bytes:
    """The kit package (sources and data files, no caches) as zip bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(PACKAGE.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".tmp"):
                zf.write(path, str(Path("kit") / path.relative_to(PACKAGE)))
    return buf.getvalue()


def render_script(steps: list[list[str]], extra: list[str], n_models: int) -> str:
    return kernel_script.render(root_env=ROOT_ENV, steps=steps, extra=list(extra), n_models=n_models,
                                files=COMPETITION_FILES, payload=base64.b64encode(package_zip()).decode(),
                                pretrain_objects=pretrain_objects(steps))


def metadata(user: str, competition: str = survey.COMPETITION, enable_gpu: bool = True) -> dict:
    return {
        "id": f"{user}/{KERNEL_SLUG}",
        "title": KERNEL_TITLE,
        "code_file": SCRIPT_NAME,
        "language": "python",
        "kernel_type": "script",
        "is_private": True,
        "enable_gpu": enable_gpu,
        "enable_tpu": False,
        "enable_internet": False,
        "dataset_sources": [],
        "competition_sources": [competition],
        "kernel_sources": [],
        "model_sources": [],
        "machine_shape": "NvidiaTeslaT4",
    }


def build(kernel_dir: Path, user: str, steps: list[list[str]], extra: list[str], n_models: int = 1,
          competition: str = survey.COMPETITION) -> Path:
    """Write the kernel script and kernel-metadata.json into ``kernel_dir``; the script's path."""
    kernel_dir = Path(kernel_dir)
    with atomic_path(kernel_dir / SCRIPT_NAME) as tmp:
        tmp.write_text(render_script(steps, extra, n_models))
    with atomic_path(kernel_dir / METADATA_FILE) as tmp:
        tmp.write_text(json.dumps(metadata(user, competition), indent=2) + "\n")
    return kernel_dir / SCRIPT_NAME


def local_username() -> str:
    """The Kaggle username from KAGGLE_USERNAME or kaggle.json, without a network call ('' if none)."""
    name = os.environ.get("KAGGLE_USERNAME", "").strip()
    if name:
        return name
    path = Path(_config_dir()) / "kaggle.json"
    try:
        return str(json.loads(path.read_text()).get("username") or "").strip()
    except (OSError, ValueError, AttributeError):
        return ""


def require_user(user: str | None, ask_kaggle: bool = False) -> str:
    """``user``, else the local username, else (``ask_kaggle``) the authenticated one; KitError if none."""
    user = (user or local_username()).strip()
    if not user and ask_kaggle:
        user = username(authenticated_api()).strip()
    if not user:
        raise KitError(
            "no Kaggle username for the kernel's id (<user>/" + KERNEL_SLUG + "): give it with "
            "`make kernel-build KAGGLE_USER=<you>` (--user), export KAGGLE_USERNAME, or put your credentials "
            f"in {Path(_config_dir()) / 'kaggle.json'}"
        )
    return user


# --- Kaggle round trip --------------------------------------------------------------------------------
def push(kernel_dir: Path) -> dict:
    """SaveKernel through the client; :class:`KitError` naming anything Kaggle refused."""
    api = authenticated_api()
    with kaggle_errors(f"pushing the kernel in {kernel_dir}"):
        response = api.kernels_push(str(kernel_dir))
    invalid = {
        "competition sources": response.invalid_competition_sources,
        "dataset sources": response.invalid_dataset_sources,
        "kernel sources": response.invalid_kernel_sources,
        "model sources": response.invalid_model_sources,
        "tags": response.invalid_tags,
    }
    named = "; ".join(f"invalid {k}: {', '.join(v)}" for k, v in invalid.items() if v)
    if response.error or named:
        raise KitError(
            f"Kaggle refused the kernel in {kernel_dir}: {response.error or 'invalid metadata'}"
            f"{'; ' + named if named else ''}. Check the competition (--competition / COMPETITION=) and that "
            "you accepted its rules, then push again."
        )
    return {"ref": response.ref, "url": response.url, "version": response.version_number}


def kernel_id(kernel_dir: Path, user: str | None = None) -> str:
    """``<user>/<slug>`` from the pushed kernel's metadata, else from the username."""
    path = Path(kernel_dir) / METADATA_FILE
    if path.exists():
        return json.loads(path.read_text())["id"]
    return f"{require_user(user)}/{KERNEL_SLUG}"


def status(kernel: str) -> tuple[str, str]:
    api = authenticated_api()
    with kaggle_errors(f"reading the status of kernel {kernel}"):
        response = api.kernels_status(kernel)
    return getattr(response.status, "name", str(response.status)), response.failure_message or ""


def _replace_dir(src: Path, dest: Path) -> None:
    """Put folder ``src`` at ``dest``, replacing what was there as a whole (no stale fold models left)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    old = dest.with_name(f".{dest.name}.{os.getpid()}.old")
    if dest.exists():
        os.replace(dest, old)
    os.replace(src, dest)
    shutil.rmtree(old, ignore_errors=True)


def install_outputs(run_dir: Path, kernel: str, config: Config) -> list[Path]:
    """Move a kernel's ``models/<name>/`` folder ``run_dir`` into ``config.models_dir``; the files placed.

    Each model folder replaces the local one whole and gets a ``kernel.json`` marker; ``folds.csv`` is
    replaced only when it differs (so models trained locally on the same folds stay up to date).
    """
    out = config.models_dir
    out.mkdir(parents=True, exist_ok=True)
    placed: list[Path] = []
    fetched_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    for path in sorted(run_dir.iterdir()):
        dest = out / path.name
        if path.is_dir():
            files = sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())
            write_json(path / MARKER, {"kernel": kernel, "fetched_at": fetched_at, "files": files})
            _replace_dir(path, dest)
            placed.extend(dest / f for f in files)
        elif path.name == "folds.csv" and dest.exists() and dest.read_bytes() == path.read_bytes():
            continue
        else:
            if path.name == "folds.csv" and dest.exists():
                log.warning("the kernel's %s differs from the local one: replaced; local models on the old folds "
                            "will be retrained by make", dest)
            os.replace(path, dest)
            placed.append(dest)
    return placed


def fetch_output(kernel: str, config: Config) -> list[Path]:
    """Download the kernel's outputs and install ``models/<name>/...`` into ``config.models_dir``."""
    api = authenticated_api()
    Path(config.models_root).mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".kernel-output-", dir=config.models_root))
    try:
        with kaggle_errors(f"downloading the outputs of kernel {kernel}"):
            api.kernels_output(kernel, str(staging), force=True, quiet=True)
        models = staging / "models"
        runs = sorted(d for d in models.iterdir() if d.is_dir()) if models.is_dir() else []
        if not runs:
            raise KitError(f"kernel {kernel} left no models/<competition>/ in its outputs; see its log "
                           "(make kernel-status, or the kernel's page on Kaggle)")
        if len(runs) > 1:
            log.warning("kernel %s left several runs %s; installing %s", kernel, [r.name for r in runs], runs[0].name)
        placed = install_outputs(runs[0], kernel, config)
        logs = list(staging.glob("*.log"))
        if logs:
            shutil.copy(logs[0], config.models_dir / "kernel.log")
        return placed
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# --- local runs -----------------------------------------------------------------------------------------
def _open_text(path: Path):
    return gzip.open(path, "rt", newline="") if path.suffix == ".gz" else open(path, newline="")


def _first_objects(src: Path, dest: Path, n_objects: int) -> set[int]:
    """Copy the rows of the first ``n_objects`` objects of a light-curve CSV; their ids."""
    ids: set[int] = set()
    last = None
    with _open_text(src) as fin, open(dest, "w", newline="") as fout:
        fout.write(fin.readline())
        for line in fin:
            oid = line.split(",", 1)[0]
            if oid != last:
                if len(ids) == n_objects:
                    break
                ids.add(int(oid))
                last = oid
            fout.write(line)
    return ids


def sample_competition(config: Config, dest: Path, n_train: int, n_test: int) -> Path:
    """A small competition folder at ``dest``: the first objects of each light-curve file and their metadata."""
    import pandas as pd

    dest.mkdir(parents=True, exist_ok=True)
    for lc_file, meta_file, n in ((survey.TRAIN_LIGHTCURVES, survey.TRAIN_METADATA, n_train),
                                  (survey.TEST_LIGHTCURVES, survey.TEST_METADATA, n_test)):
        src = config.competition_file(lc_file)
        if not src.exists():
            raise KitError(f"{src} not found: point DATA= at a competition folder")
        ids = _first_objects(src, dest / lc_file, n)
        meta = pd.read_csv(config.competition_file(meta_file))
        meta[meta[survey.OBJECT_ID].isin(ids)].to_csv(dest / meta_file, index=False)
    return dest


def run_local(script: Path, config: Config, root: Path | None = None, smoke: bool = True,
              smoke_objects: tuple[int, int] = (SMOKE_TRAIN, SMOKE_TEST), keep: bool = False) -> dict:
    """Run the kernel script in a Kaggle-like layout: ``<root>/kaggle/{input/competitions/<name>,working}``.

    A smoke run copies a sample of the competition; a full run links ``config.data_dir``. Returns the
    script's run report plus the wall time, the outputs and where they are (removed unless ``keep``
    or ``root`` was given).
    """
    import pyarrow.parquet as pq

    data_dir = Path(config.data_dir).resolve()
    if not config.test_metadata.exists():
        raise KitError(f"{data_dir} holds no {survey.TEST_METADATA}: point DATA= (--data) at a competition folder")
    own_root = root is None
    root = Path(root) if root else Path(tempfile.mkdtemp(prefix="kaggle-local-"))
    kaggle_root = root.resolve() / "kaggle"
    inputs = kaggle_root / "input" / "competitions" / config.name  # the layout of kernels pushed today
    (kaggle_root / "working").mkdir(parents=True, exist_ok=True)
    try:
        if smoke:
            sample_competition(config, inputs, *smoke_objects)
        elif not inputs.exists():
            inputs.parent.mkdir(parents=True, exist_ok=True)
            inputs.symlink_to(data_dir, target_is_directory=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KAGGLE_", "KIT_KAGGLE_ENDPOINT"))}
        env[ROOT_ENV] = str(kaggle_root)
        env["TMPDIR"] = str(root.resolve())  # the scratch fallback stays inside the root too
        started = time.perf_counter()
        result = subprocess.run([sys.executable, str(Path(script).resolve())], cwd=kaggle_root / "working", env=env)
        seconds = time.perf_counter() - started
        if result.returncode != 0:
            raise KitError(f"the kernel script failed locally (exit {result.returncode}) in {kaggle_root}; "
                           "fix it before pushing (the output above shows the failing command)")
        out = kaggle_root / "working" / "models" / config.name
        report = read_json(out / RUN_REPORT) if (out / RUN_REPORT).exists() else {}
        report["wall_seconds"] = seconds
        report["outputs"] = {str(p.relative_to(out)): p.stat().st_size for p in sorted(out.rglob("*")) if p.is_file()}
        report["predicted"] = {p.parent.name: pq.ParquetFile(p).metadata.num_rows for p in out.glob("*/test.parquet")}
        report["root"] = str(root)
        report["kept"] = keep or not own_root
        return report
    finally:
        if own_root and not keep:
            shutil.rmtree(root, ignore_errors=True)


def _train_args(pairs: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for pair in pairs:
        model, sep, options = pair.partition("=")
        if not sep or not model.strip():
            raise KitError(f"--train-args {pair!r}: write it as MODEL=OPTIONS, e.g. 'lstm=--epochs 30'")
        out.setdefault(model.strip(), []).extend(options.split())
    return out


def _print_local(report: dict, smoke: bool) -> None:
    kind = "smoke run" if smoke else "full run"
    print(f"kernel {kind} done locally in {report['wall_seconds']:.0f} s "
          f"(the script's own steps: {report.get('seconds', 0):.0f} s)")
    for step in report.get("steps", []):
        print(f"  {step['seconds']:7.1f} s  {step['command']}")
    print(f"disk: peak scratch {report.get('peak_scratch_bytes', 0) / MB:,.1f} MB, "
          f"peak working {report.get('peak_working_bytes', 0) / MB:,.1f} MB, "
          f"outputs {sum(report['outputs'].values()) / MB:,.1f} MB in {len(report['outputs'])} files "
          f"({', '.join(n for n in report['outputs'] if n.endswith('.parquet'))})")
    for model, n in report.get("predicted", {}).items():
        print(f"{model}: test set predicted, {n:,} objects")
    print(f"{'kept' if report['kept'] else 'removed'}: {report['root']}")


def run(args: argparse.Namespace, config: Config) -> int:
    # the kernel makes the same folds as local commands would (same seed and number), so blends stay honest
    extra = ["--seed", str(config.seed), "--folds", str(config.n_folds), *args.extra.split()]
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    train_args = _train_args(args.train_args)
    if args.action in ("build", "push"):
        user = require_user(args.user, ask_kaggle=args.action == "push")
        steps = plan(models, args.smoke, train_args, args.pretrain_objects)
        script = build(args.kernel_dir, user, steps, extra, len(models), args.competition)
        print(f"built {script} ({'smoke' if args.smoke else 'full'} run of {', '.join(models)}) "
              f"as {user}/{KERNEL_SLUG}")
        if args.action == "push":
            result = push(args.kernel_dir)
            print(f"pushed {result['ref']} version {result['version']}: {result['url']}")
    elif args.action == "local":
        smoke = not args.full
        steps = plan(models, smoke, train_args, args.pretrain_objects)
        with tempfile.TemporaryDirectory(prefix="kernel-build-") as tmp:
            script = build(Path(tmp), "local", steps, extra, len(models), args.competition)
            report = run_local(script, config, args.root, smoke, tuple(args.smoke_objects), args.keep)
        _print_local(report, smoke)
    elif args.action == "status":
        kernel = kernel_id(args.kernel_dir, args.user)
        deadline = time.monotonic() + args.wait
        state, failure = status(kernel)
        while state in ("QUEUED", "RUNNING", "NEW_SCRIPT") and time.monotonic() < deadline:
            time.sleep(min(30.0, max(1.0, deadline - time.monotonic())))
            state, failure = status(kernel)
        print(f"{kernel}: {state}{' - ' + failure if failure else ''}")
        return 1 if state in ("ERROR", "CANCEL_ACKNOWLEDGED") else 0
    elif args.action == "output":
        placed = fetch_output(kernel_id(args.kernel_dir, args.user), config)
        print(f"fetched {len(placed)} file(s) into {config.models_dir}; models from the kernel are marked with "
              f"{MARKER} and make will not retrain them (remove the marker to train locally)")
    return 0
