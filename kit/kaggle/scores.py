"""List our submissions with their status and scores, and write those back into the ledger."""

from __future__ import annotations

import argparse

from kit import survey
from kit.config import Config
from kit.kaggle import ledger
from kit.kaggle.client import authenticated_api, kaggle_errors


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--competition", default=survey.COMPETITION)


def _name(value) -> str:
    return getattr(value, "name", str(value or ""))


def list_submissions(competition: str) -> list[dict[str, str]]:
    """Our submissions, newest first: ref, date, file, description, status, public/private score."""
    api = authenticated_api()
    rows = []
    with kaggle_errors(f"listing the submissions to {competition}"):
        # one page of 100: more than a competition's whole allowance of daily submissions shown at once
        for s in api.competition_submissions(competition, page_size=100) or []:
            rows.append({
                "ref": str(s.ref), "date": str(s.date or "")[:19], "file": s.file_name or "",
                "description": s.description or "", "status": _name(s.status),
                "public_score": s.public_score or "", "private_score": s.private_score or "",
                "error": s.error_description or "",
            })
    return rows


def run(args: argparse.Namespace, config: Config) -> int:
    rows = list_submissions(args.competition)
    if not rows:
        print(f"no submissions to {args.competition} yet")
        return 0
    print(f"{'ref':>10}  {'date':19}  {'status':8}  {'public':>8}  {'private':>8}  description")
    for r in rows:
        print(f"{r['ref']:>10}  {r['date']:19}  {r['status']:8}  {r['public_score']:>8}  {r['private_score']:>8}  "
              f"{r['description']}{'  ERROR: ' + r['error'] if r['error'] else ''}")
    changed = ledger.update_by_ref(config.ledger_path, {
        r["ref"]: {"status": r["status"], "public_score": r["public_score"], "private_score": r["private_score"]}
        for r in rows
    })
    if changed:
        print(f"updated {changed} row(s) of {config.ledger_path}")
    return 0
