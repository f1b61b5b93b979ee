"""`python -m kit <command>`: one command per pipeline stage (and a train-<name> per registered model).

Each command lives in its own module, which defines::

    def add_arguments(parser: argparse.ArgumentParser) -> None   # the command's own options
    def run(args: argparse.Namespace, config: Config) -> int | None

Modules are imported only when their command runs, so `--help` is instant and TensorFlow is
loaded only by the commands that need it. A :class:`kit.errors.KitError` becomes one clear
message and a non-zero exit; stdout's reader going away (`| head`) ends quietly with 141; anything else keeps
its traceback (it is a bug).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import select
import sys
import time
from pathlib import Path

from kit.class99 import METHODS
from kit.config import Config
from kit.errors import KitError
from kit.models import REGISTRY

# name -> (module, one line of help). In pipeline order.
COMMANDS: dict[str, tuple[str, str]] = {
    "simulate": ("kit.simulate.cli", "write a simulated PLAsTiCC-shaped competition folder (+ truth)"),
    "import-zenodo": ("kit.zenodo", "import the unblinded Zenodo release into a competition folder"),
    "download": ("kit.kaggle.download", "download and unpack the competition files with the kaggle client"),
    "check-data": ("kit.data", "check a competition folder: files, headers, ids"),
    "features": ("kit.featurize", "aggregate features of the training and test light curves"),
    "adversarial": ("kit.shift", "adversarial validation: AUC of a train-vs-test classifier on the features"),
    "sequences": ("kit.sequences", "ragged passband sequences for the LSTM"),
    "augment": ("kit.augment", "redshift-augmented copies of the training objects, with their features"),
    "folds": ("kit.folds", "the stratified fold assignment every model shares"),
    "pretrain": ("kit.pretrain", "self-supervised pretraining of the LSTM encoder on unlabelled light curves"),
    # one train-<name> command per registered model (kit/models/__init__.py)
    **{f"train-{name}": (entry.module, entry.help) for name, entry in REGISTRY.items()},
    "predict": ("kit.predict", "predict the test set with a trained model"),
    "predict-stream": ("kit.predict_stream", "predict the test set chunk by chunk from its light curves (kernels)"),
    "blend": ("kit.blend", "blend model predictions with weights fitted on OOF"),
    "submission": ("kit.submission", "add class 99 and write the submission .csv.gz"),
    "validate": ("kit.validate", "check a submission file against the test metadata"),
    "score": ("kit.score", "score a submission against a truth file"),
    "transfer-study": ("kit.transfer", "the LSTM from scratch vs pretrained + fine-tuned, by share of labels"),
    "class99-study": ("kit.class99_study", "score every class-99 method on a model's test predictions (needs truth)"),
    "submit": ("kit.kaggle.submit", "validate and upload a submission, record it in the ledger"),
    "submissions": ("kit.kaggle.scores", "list our submissions and their scores"),
    "leaderboard": ("kit.kaggle.leaderboard", "show the top of the leaderboard and our place"),
    "kernel": ("kit.kaggle.kernel", "build, push, poll or fetch the GPU training kernel"),
    "serve-kaggle": ("kit.standin.server", "run the local stand-in Kaggle API server"),
    "kaggle-cli": ("kit.kaggle.official_cli", "the official kaggle CLI, sent to KIT_KAGGLE_ENDPOINT when set"),
    "bench": ("kit.bench", "benchmark the LightGBM path on a large simulated test set"),
    "report": ("kit.report", "write the HTML report of models, errors and light curves"),
    "plot-object": ("kit.report.plot_object", "draw one object's light curve with its predictions"),
}

#: Stages that use DATA's artefacts under build/<name> and models/<name>, and the folders they write:
#: each folder records the data folder it was made from (kit.files.check_source), so that two data
#: folders with the same name never share artefacts silently.
DATA_STAGES: dict[str, tuple[str, ...]] = {
    "features": ("build",), "augment": ("build",), "sequences": ("build",), "folds": ("models",),
    **{f"train-{name}": ("models",) for name in REGISTRY}, "predict": ("models",), "blend": ("models",),
    "submission": (), "report": (), "class99-study": (), "adversarial": (),
    "pretrain": ("models",), "transfer-study": ("models",),
}


def check_sources(config: Config, command: str) -> None:
    """Refuse a build/<name> or models/<name> made from another data folder of the same name."""
    from kit.files import check_source

    writes = DATA_STAGES.get(command)
    if writes is None:
        return
    for kind, folder in (("build", config.build_dir), ("models", config.models_dir)):
        check_source(folder, config.data_dir, record=kind in writes)


def _common(parser: argparse.ArgumentParser) -> None:
    defaults = Config()
    g = parser.add_argument_group("common")
    g.add_argument("--data", type=Path, default=defaults.data_dir, help="competition folder (default %(default)s)")
    g.add_argument("--build-root", type=Path, default=defaults.build_root)
    g.add_argument("--models-root", type=Path, default=defaults.models_root)
    g.add_argument("--submissions-dir", type=Path, default=defaults.submissions_dir)
    g.add_argument("--reports-root", type=Path, default=defaults.reports_root)
    g.add_argument("--workers", type=int, default=defaults.workers, help="processes (default: all cores)")
    g.add_argument("--chunk-rows", type=int, default=defaults.chunk_rows, help="rows per streamed chunk")
    g.add_argument("--folds", dest="n_folds", type=int, default=defaults.n_folds)
    g.add_argument("--seed", type=int, default=defaults.seed)
    g.add_argument("--class99-galactic", type=float, default=defaults.class99_galactic)
    g.add_argument("--class99-extragalactic", type=float, default=defaults.class99_extragalactic)
    g.add_argument("--class99", dest="class99_method", default=defaults.class99_method, choices=METHODS,
                   help="class-99 method of the submission (default %(default)s; `python -m kit class99-study` "
                   "scores them all)")
    g.add_argument("--scheduler", default=None, help="Dask scheduler address (tcp://host:8786) for featurisation")
    g.add_argument("-v", "--verbose", action="store_true", help="debug logging, and TensorFlow's own log lines")


def config_from_args(args: argparse.Namespace) -> Config:
    return Config(
        data_dir=args.data,
        build_root=args.build_root,
        models_root=args.models_root,
        submissions_dir=args.submissions_dir,
        reports_root=args.reports_root,
        workers=max(1, args.workers),
        chunk_rows=args.chunk_rows,
        n_folds=args.n_folds,
        seed=args.seed,
        class99_galactic=args.class99_galactic,
        class99_extragalactic=args.class99_extragalactic,
        class99_method=args.class99_method,
        scheduler=args.scheduler or None,
    )


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; only ``command``'s module is imported to add its options."""
    parser = argparse.ArgumentParser(prog="python -m kit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        _common(p)
        if name == command:
            importlib.import_module(module).add_arguments(p)
    return parser


def stdout_reader_gone() -> bool:
    """True when stdout is a pipe whose reading end is closed (so a BrokenPipeError came from stdout, not from
    a socket or a child process, which stay errors)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(event & select.POLLERR for _, event in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no real file descriptor (e.g. captured by a test)
        return False


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["kaggle-cli"]:  # every further argument belongs to the kaggle CLI, not to the kit's parser
        return importlib.import_module(COMMANDS["kaggle-cli"][0]).main(argv[1:])
    command = argv[0] if argv and argv[0] in COMMANDS else None
    args = build_parser(command).parse_args(argv)
    if args.command is None:
        build_parser().print_help()
        return 0
    # TensorFlow's C++ log lines only with -v (kit.lstm_model hides the start-up ones unless this is 0)
    if args.verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    module = importlib.import_module(COMMANDS[args.command][0])
    started = time.perf_counter()
    try:
        config = config_from_args(args)
        check_sources(config, args.command)
        code = module.run(args, config)
        sys.stdout.flush()  # a reader gone (`| head`) shows here, not in the interpreter's last flush
    except KitError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted: finished outputs are kept, partial ones were discarded", file=sys.stderr)
        return 130
    except BrokenPipeError:
        if not stdout_reader_gone():
            raise
        # `python -m kit score ... | head`: the reader has what it wanted; stop quietly, as `yes | head` does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    logging.getLogger("kit").info("%s done in %.1f s", args.command, time.perf_counter() - started)
    return int(code or 0)
