"""List our submissions with their status and scores, and write those back into the endpoint's ledger."""

from __future__ import annotations

import argparse

from kit import survey
from kit.config import Config
from kit.kaggle import ledger
from kit.kaggle.client import all_pages, authenticated_api, endpoint_name, kaggle_errors, source_label

PAGE_SIZE = 100


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--competition", default=survey.COMPETITION)


def _name(value) -> str:
    return getattr(value, "name", str(value or ""))


def list_submissions(competition: str, api=None) -> list[dict[str, str]]:
    """All our submissions (every page), newest first: ref, date, file, description, status, scores, error."""
    from kagglesdk.competitions.types.competition_api_service import ApiListSubmissionsRequest

    api = api or authenticated_api()
    with kaggle_errors(f"listing the submissions to {competition}"), api.build_kaggle_client() as kaggle:
        def fetch(token: str):
            request = ApiListSubmissionsRequest()
            request.competition_name = competition
            request.page_size = PAGE_SIZE
            request.page_token = token
            response = kaggle.competitions.competition_api_client.list_submissions(request)
            return response.submissions, response.next_page_token

        submissions = all_pages(fetch)
    return [{
        "ref": str(s.ref), "date": str(s.date or "")[:19], "file": s.file_name or "",
        "description": s.description or "", "status": _name(s.status),
        "public_score": s.public_score or "", "private_score": s.private_score or "",
        "error": s.error_description or "",
    } for s in submissions]


def run(args: argparse.Namespace, config: Config) -> int:
    rows = list_submissions(args.competition)
    print(source_label())
    if not rows:
        print(f"no submissions to {args.competition} yet")
        return 0
    print(f"{'ref':>10}  {'date':19}  {'status':8}  {'public':>8}  {'private':>8}  description")
    for r in rows:
        print(f"{r['ref']:>10}  {r['date']:19}  {r['status']:8}  {r['public_score']:>8}  {r['private_score']:>8}  "
              f"{r['description']}{'  ERROR: ' + r['error'] if r['error'] else ''}")
    path = ledger.path_for(config)
    changed = ledger.update_by_ref(path, {
        r["ref"]: {"status": r["status"], "public_score": r["public_score"], "private_score": r["private_score"]}
        for r in rows
    }, endpoint_name())
    if changed:
        print(f"updated {changed} row(s) of {path} (endpoint {endpoint_name()})")
    return 0
