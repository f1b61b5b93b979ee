"""One configuration object: where every artefact lives, and the pipeline's settings.

Nothing is read at import time. The CLI builds a :class:`Config` from its arguments (which the
Makefile fills from ``DATA=`` and friends); library code receives it explicitly.

Artefact layout for a competition folder ``DATA`` named ``<name>``::

    DATA/                               Kaggle's files (+ test_truth.csv when the truth is known)
    build/<name>/features_<split>.parquet
    build/<name>/features_test.parts/   resumable per-chunk parts of the test features
    build/<name>/source.json, models/<name>/source.json   the data folder they were made from
    build/<name>/sequences_<split>/     ragged passband sequences
    build/<name>/adversarial.json       train-vs-test AUC (python -m kit adversarial)
    models/<name>/folds.csv             object_id,fold: shared by every model
    models/<name>/<model>/              fold models, oof.parquet, test.parquet, score.json
    models/<name>/<model>/class99_study.json   every class-99 method scored against the truth
    submissions/<name>-<model>.csv.gz    (<name>-<model>-<method>.csv.gz for another class-99 method)
    reports/<name>/index.html
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from kit import survey
from kit.class99 import DEFAULT_METHOD


@dataclass(frozen=True)
class Config:
    """Paths and settings of one pipeline run.

    Parameters
    ----------
    data_dir
        Competition folder: a Kaggle download, a Zenodo import or a simulation.
    chunk_rows
        Light-curve rows per streamed chunk of the test set (chunks always hold whole objects).
    workers
        Processes for featurisation and prediction.
    class99_galactic, class99_extragalactic
        Class-99 scale: the mean class-99 probability given to galactic / extragalactic objects by the
        ``product`` and ``constant`` methods, the prior term of ``second`` (see :mod:`kit.class99`).
    class99_method
        How class 99 is added to a submission: one of ``kit.class99.METHODS`` (``python -m kit
        class99-study`` scores them all); submissions of another method than the default carry its
        name (``submissions/<name>-<model>-<method>.csv.gz``).
    """

    data_dir: Path = Path("data/sim-demo")
    build_root: Path = Path("build")
    models_root: Path = Path("models")
    submissions_dir: Path = Path("submissions")
    reports_root: Path = Path("reports")
    chunk_rows: int = 2_000_000
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    n_folds: int = 5
    seed: int = 42
    class99_galactic: float = 0.014
    class99_extragalactic: float = 0.14
    class99_method: str = DEFAULT_METHOD
    scheduler: str | None = None

    def with_(self, **changes) -> Config:
        """A copy with some fields changed."""
        return replace(self, **changes)

    # --- competition files ---------------------------------------------------------------
    @property
    def name(self) -> str:
        return Path(self.data_dir).resolve().name

    def competition_file(self, filename: str) -> Path:
        """Path of one of the competition's files; ``.csv.gz`` is used when only that exists."""
        plain = Path(self.data_dir) / filename
        gz = plain.with_name(plain.name + ".gz")
        return gz if (not plain.exists() and gz.exists()) else plain

    @property
    def train_lightcurves(self) -> Path:
        return self.competition_file(survey.TRAIN_LIGHTCURVES)

    @property
    def train_metadata(self) -> Path:
        return self.competition_file(survey.TRAIN_METADATA)

    @property
    def test_lightcurves(self) -> Path:
        return self.competition_file(survey.TEST_LIGHTCURVES)

    @property
    def test_metadata(self) -> Path:
        return self.competition_file(survey.TEST_METADATA)

    @property
    def truth(self) -> Path:
        return self.competition_file(survey.TEST_TRUTH)

    # --- derived artefacts ---------------------------------------------------------------
    @property
    def build_dir(self) -> Path:
        return Path(self.build_root) / self.name

    @property
    def models_dir(self) -> Path:
        return Path(self.models_root) / self.name

    @property
    def reports_dir(self) -> Path:
        return Path(self.reports_root) / self.name

    def features_path(self, split: str, kind: str = "aggregate") -> Path:
        """Features of ``kind`` ('aggregate', 'gp') of ``split`` ('train', 'test', 'augment'), a row per object."""
        prefix = "" if kind == "aggregate" else f"{kind}_"
        return self.build_dir / f"{prefix}features_{split}.parquet"

    def sequences_dir(self, split: str) -> Path:
        return self.build_dir / f"sequences_{split}"

    @property
    def folds_path(self) -> Path:
        return self.models_dir / "folds.csv"

    def model_dir(self, model: str) -> Path:
        return self.models_dir / model

    def oof_path(self, model: str) -> Path:
        return self.model_dir(model) / "oof.parquet"

    def test_pred_path(self, model: str) -> Path:
        return self.model_dir(model) / "test.parquet"

    def score_path(self, model: str) -> Path:
        return self.model_dir(model) / "score.json"

    def submission_path(self, model: str) -> Path:
        method = "" if self.class99_method == DEFAULT_METHOD else f"-{self.class99_method}"
        return Path(self.submissions_dir) / f"{self.name}-{model}{method}.csv.gz"

    @property
    def ledger_path(self) -> Path:
        return Path(self.submissions_dir) / "ledger.csv"
