"""``python -m kit kaggle-cli ARGS``: the official ``kaggle`` CLI, untouched, talking to the kit's endpoint.

Everything after ``kaggle-cli`` goes to the client's own command line (``kaggle.cli.main``), so its
commands, options and output are the real ones. The only change is the endpoint: with
``KIT_KAGGLE_ENDPOINT`` set (the local stand-in), every call goes there, and a line on stderr says so;
without it the command is the plain ``kaggle`` CLI against api.kaggle.com. For example::

    KIT_KAGGLE_ENDPOINT=http://127.0.0.1:8765 python -m kit kaggle-cli competitions leaderboard -c plasticc-2018 --show

The plain ``kaggle`` executable cannot be pointed elsewhere: it builds its client for api.kaggle.com
at import time, whatever the environment says.
"""

from __future__ import annotations

import argparse
import sys

from kit.config import Config
from kit.kaggle import client


def add_arguments(parser: argparse.ArgumentParser) -> None:  # for `--help` only: main() takes the raw arguments
    parser.add_argument("kaggle_args", nargs=argparse.REMAINDER, help="the kaggle CLI's own arguments")


def main(argv: list[str]) -> int:
    """Run ``kaggle ARGV`` with the kit's endpoint; the CLI's exit status."""
    api = client.new_api()  # imports the client without its import-time login
    package = sys.modules["kaggle"]
    package.KaggleApi, package.api = type(api), api
    import kaggle.cli

    kaggle.cli.api = api  # the CLI binds its commands to the module's `api` when it builds its parser
    if client.is_standin():
        print(client.source_label(), file=sys.stderr, flush=True)
    saved = sys.argv
    sys.argv = ["kaggle", *argv]  # the CLI reads sys.argv, and its anonymous-command check wants "kaggle"
    try:
        kaggle.cli.main()
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    finally:
        sys.argv = saved
    return 0


def run(args: argparse.Namespace, config: Config) -> int:
    return main(list(args.kaggle_args))
