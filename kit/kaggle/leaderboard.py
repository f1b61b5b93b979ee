"""The top of the leaderboard and where our best entry stands."""

from __future__ import annotations

import argparse

from kit import survey
from kit.config import Config
from kit.kaggle.client import authenticated_api, kaggle_errors, username


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--competition", default=survey.COMPETITION)
    parser.add_argument("--top", type=int, default=10, help="rows shown (default %(default)s)")
    parser.add_argument("--team", default=None, help="our team name (default: the Kaggle username)")


def fetch(competition: str, page_size: int = 1000) -> tuple[list[dict], str]:
    """The leaderboard rows (rank, team, score, date), best first; and our username."""
    api = authenticated_api()
    with kaggle_errors(f"reading the leaderboard of {competition}"):
        entries = api.competition_leaderboard_view(competition, page_size=page_size) or []
    rows = [{"rank": i + 1, "team": e.team_name or "", "score": e.score or "",
             "date": str(e.submission_date or "")[:10]} for i, e in enumerate(entries)]
    return rows, username(api)


def our_place(rows: list[dict], team: str) -> dict | None:
    return next((r for r in rows if r["team"].lower() == team.lower()), None)


def run(args: argparse.Namespace, config: Config) -> int:
    rows, user = fetch(args.competition)
    team = args.team or user
    print(f"{'rank':>5}  {'score':>9}  team")
    for r in rows[: args.top]:
        mark = "  <- us" if r["team"].lower() == team.lower() else ""
        print(f"{r['rank']:>5}  {r['score']:>9}  {r['team']}{mark}")
    ours = our_place(rows, team)
    if ours is None:
        print(f"{team!r} is not on the leaderboard yet ({len(rows)} teams shown by Kaggle)")
    else:
        print(f"our best: rank {ours['rank']} of {len(rows)} with {ours['score']} ({team})")
    return 0
