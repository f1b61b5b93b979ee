"""Validate a submission, check today's allowance, upload it with a telling message, record it.

The message names the model, its OOF score and the git commit, so every leaderboard entry can be
traced back to the code and models that made it. Each upload becomes a row of the endpoint's ledger
(``submissions/ledger.csv`` for Kaggle, ``submissions/ledger-standin.csv`` for the local stand-in).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from kit import survey
from kit.config import Config
from kit.errors import KitError
from kit.kaggle import ledger
from kit.kaggle.client import authenticated_api, endpoint_name, kaggle_errors, server_name, source_label

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--file", type=Path, default=None, help="submission (default: the blend's, else lgbm's)")
    parser.add_argument("--competition", default=survey.COMPETITION)
    parser.add_argument("--model", default=None, help="model(s) named in the message (default: from the file name)")
    parser.add_argument("--message", default=None, help="extra text for the submission message")


def default_file(config: Config) -> Path:
    blend = config.submission_path("blend")
    return blend if blend.exists() else config.submission_path("lgbm")


def model_of(path: Path, config: Config) -> str:
    """The model named by ``<name>-<model>.csv.gz``."""
    stem = Path(path).name.split(".")[0]
    prefix = f"{config.name}-"
    return stem[len(prefix):] if stem.startswith(prefix) else stem


def _json_value(path: Path, key: str) -> str:
    try:
        value = json.loads(Path(path).read_text()).get(key)
    except (OSError, ValueError, AttributeError):
        return ""
    return f"{value:.5f}" if isinstance(value, int | float) else ""


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_message(model: str, oof: str, commit: str, extra: str | None) -> str:
    parts = [f"model={model}", f"oof={oof or 'n/a'}", f"commit={commit}"]
    if extra:
        parts.append(extra)
    return " ".join(parts)


def submit(path: Path, config: Config, competition: str = survey.COMPETITION, model: str | None = None,
           extra: str | None = None) -> dict:
    """Validate, upload and record one submission; the ledger row."""
    from kit.score import score_json_path
    from kit.validate import check_submission

    path = Path(path)
    if not path.exists():
        raise KitError(f"{path}: no such submission; run `make submission` or pass --file")
    check_submission(path, config.test_metadata)
    model = model or model_of(path, config)
    oof = _json_value(config.score_path(model), "oof")
    local = _json_value(score_json_path(path), "overall")
    message = build_message(model, oof, git_commit(), extra)

    api = authenticated_api()
    with kaggle_errors(f"checking today's submissions to {competition}"):
        limits = api.competition_get_submission_limits(competition)
    if limits.num_allowed_now <= 0:
        which = "in total" if limits.limited_by_total else "today"
        raise KitError(
            f"no submissions left {which} for {competition} ({limits.num_today} made today); "
            "nothing was uploaded. Try again after midnight UTC."
        )
    log.info("uploading %s (%d left today): %s", path, limits.num_allowed_now, message)
    with kaggle_errors(f"submitting {path} to {competition}"):
        response = api.competition_submit(str(path), message, competition, quiet=True)
    ref = getattr(response, "ref", None)
    if not ref:  # the client reports a failed upload in the message and does not raise
        text = getattr(response, "message", "") or "no reference returned"
        raise KitError(f"{server_name()} did not accept {path}: {text}. Nothing was recorded; rerun `make submit`.")
    row = {
        "time": datetime.now(UTC).isoformat(timespec="seconds"), "endpoint": endpoint_name(),
        "competition": competition, "file": str(path),
        "sha256": sha256(path), "message": message, "model": model, "oof_score": oof, "local_score": local,
        "ref": str(ref), "status": "PENDING",
    }
    path_ledger = ledger.path_for(config)
    ledger.append(path_ledger, row)
    print(source_label())
    print(f"submitted {path} as {ref}: {response.message} (recorded in {path_ledger})")
    return row


def run(args: argparse.Namespace, config: Config) -> int:
    submit(args.file or default_file(config), config, args.competition, args.model, args.message)
    return 0
