"""The model registry: every model the kit trains, predicts, streams, blends and reports on.

Adding a model is its module plus one line in :data:`REGISTRY`. The CLI gets a ``train-<name>`` command
for each entry, ``predict --model``, ``predict-stream --models``, ``blend``, the report and the GPU kernel
take their choices from here, and the Makefile's generic ``train-%`` / ``models/<name>/%.parquet`` rules
work for any name.

A model module (imported only when used, so TensorFlow loads only for the networks) defines::

    NAME: str                                   the registry name, the folder under models/<name>/
    NEEDS_SEQUENCES: bool                       whether it reads the ragged sequences (kernel: build them)
    SMOKE_ARGS: list[str]                       training options of a kernel smoke run (small, fast)
    PRETRAIN_SMOKE_ARGS: list[str] (optional)   the model fine-tunes a pretrained encoder: the kernel runs
                                                ``pretrain`` first (with these options in a smoke run)
    add_arguments(parser) / run(args, config)   the train-<name> command: its settings (CLI options);
                                                trains on the shared folds, writes the fold models,
                                                oof.parquet and score.json under config.model_dir(NAME)
    predict_test(config) -> (ids, proba)        the test set from the built inputs, saved at
                                                config.test_pred_path(NAME), masked by group
    Predictor(config).predict(chunk) -> proba   one streamed chunk (:class:`kit.predict_stream.Chunk`) of the
                                                test set, (n, 14) unmasked (the stream masks by group)
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from kit.config import Config
from kit.errors import InputError


@dataclass(frozen=True)
class Entry:
    """One registered model: its module and one line of help for its ``train-<name>`` command."""

    module: str
    help: str


#: name -> entry, in the order the kit lists models (baselines first).
REGISTRY: dict[str, Entry] = {
    "prior": Entry("kit.models.prior", "the class-prior baseline (training class frequencies, masked by group)"),
    "lgbm": Entry("kit.lgbm", "train the LightGBM baseline (OOF predictions, fold models)"),
    "lstm": Entry("kit.lstm", "train the Keras LSTM-plus-features network"),
    "cnn": Entry("kit.models.cnn", "train the dmdt-image CNN (Mahabal et al.) with the features on its dense side"),
    "lstm_ft": Entry("kit.models.finetune", "fine-tune the LSTM from a pretrained encoder (make pretrain)"),
}

#: Folders under models/<name>/ that are not models of the registry but made from them.
DERIVED = ("blend",)


def names() -> list[str]:
    return list(REGISTRY)


def check(models: list[str], what: str = "use") -> list[str]:
    """``models`` without repeats; InputError naming the unknown ones and the choices."""
    unknown = [m for m in models if m not in REGISTRY]
    if unknown or not models:
        raise InputError(f"cannot {what} {unknown or 'no model'}: choose among {', '.join(REGISTRY)}")
    return list(dict.fromkeys(models))


def get(name: str) -> ModuleType:
    """The module of model ``name`` (imported now)."""
    check([name])
    return importlib.import_module(REGISTRY[name].module)


def trained(config: Config) -> list[str]:
    """Registered models with out-of-fold predictions under ``config.models_dir``, in registry order."""
    return [m for m in REGISTRY if config.oof_path(m).exists()]
