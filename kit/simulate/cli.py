"""`python -m kit simulate`: write a simulated PLAsTiCC-shaped competition folder (+ test_truth.csv)."""

from __future__ import annotations

import argparse
from pathlib import Path

from kit.config import Config
from kit.simulate import SURVEYS, simulate

DEFAULT_TRAIN = 2000
DEFAULT_TEST = 10000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--train", type=int, default=DEFAULT_TRAIN, help="training objects (default %(default)s)")
    parser.add_argument("--test", type=int, default=DEFAULT_TEST, help="test objects (default %(default)s)")
    parser.add_argument("--out", type=Path, default=None, help="folder to write (default: --data)")
    parser.add_argument("--survey", choices=list(SURVEYS), default="lsst",
                        help="cadence and depth: lsst (PLAsTiCC's, the default) or wide-fast (twice the visits, one "
                             "magnitude shallower: a source survey to pretrain on)")


def run(args: argparse.Namespace, config: Config) -> int:
    out = Path(args.out or config.data_dir)
    simulate(out, n_train=args.train, n_test=args.test, seed=args.seed, survey_name=args.survey)
    print(f"simulated {args.train} training and {args.test} test objects of the {args.survey} survey in {out}")
    return 0
