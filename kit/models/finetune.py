"""The LSTM fine-tuned from a pretrained encoder (:mod:`kit.pretrain`): ``train-lstm_ft``, registered as ``lstm_ft``.

The network, its training on the shared folds and its predictions are :mod:`kit.lstm`'s; only the start differs
(:class:`kit.transfer.Plan`): each fold's network begins with the pretrained encoder's weights, frozen for
``--freeze-epochs`` epochs, then trained whole at ``--finetune-lr``. Artefacts as the LSTM's, in
``models/<name>/lstm_ft/``. Fine-tune with the preset the encoder was pretrained with.
"""

from __future__ import annotations

import argparse

from kit import lstm, transfer
from kit.config import Config
from kit.errors import InputError

NAME = "lstm_ft"
NEEDS_SEQUENCES = True
#: A kernel smoke run: the demo preset, one fold, two epochs (one frozen).
SMOKE_ARGS = [*lstm.SMOKE_ARGS, "--freeze-epochs", "1"]
#: The kernel pretrains the encoder first (:func:`kit.kaggle.kernel.plan`); in a smoke run with these options,
#: the preset of SMOKE_ARGS.
PRETRAIN_SMOKE_ARGS = ["--preset", "demo", "--epochs", "1"]


def predict_test(config: Config):
    return lstm.predict_test(config, NAME)


class Predictor(lstm.Predictor):
    def __init__(self, config: Config) -> None:
        super().__init__(config, NAME)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    lstm.add_arguments(parser)
    transfer.add_finetune_arguments(parser)


def run(args: argparse.Namespace, config: Config) -> int:
    if args.bench_inference:
        raise InputError("--bench-inference measures the LSTM's own models: use `python -m kit train-lstm "
                         "--bench-inference` (the fine-tuned network is the same network).")
    settings = lstm.settings_from_args(args)
    summary = lstm.train(config, settings, args.max_folds, plan=transfer.finetune_plan(args, NAME, config, settings))
    print(f"{NAME} OOF weighted log loss {summary['oof']:.4f} ({summary['seconds_per_epoch']:.1f} s per epoch)")
    return 0
