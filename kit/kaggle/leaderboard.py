"""The leaderboard, read whole (every page), and where our best scores stand or would have stood.

PLAsTiCC-2018 is closed: Kaggle still scores late submissions but gives them no rank. For a closed
competition this command says so and places our best private and public scores on the final private
and public leaderboards, as the rank they would have had. While a competition is open it shows the
public leaderboard with our own entry on it.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from kit import survey
from kit.config import Config
from kit.kaggle import scores
from kit.kaggle.client import all_pages, authenticated_api, kaggle_errors, source_label, username

PAGE_SIZE = 200


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--competition", default=survey.COMPETITION)
    parser.add_argument("--top", type=int, default=10, help="rows shown (default %(default)s)")
    parser.add_argument("--team", default=None, help="our team name (default: the Kaggle username)")


def deadline(api, competition: str) -> datetime | None:
    """The competition's deadline (naive UTC) from the competition list; None when it is not listed."""
    with kaggle_errors(f"looking up {competition} in the competition list"):
        response = api.competitions_list(search=competition, category="all")
    for entry in (response.competitions if response else None) or []:
        if (entry.ref or "").rstrip("/").rsplit("/", 1)[-1].lower() == competition.lower():
            return entry.deadline
    return None


def board(api, competition: str, public: bool = False) -> list[dict]:
    """Every row of the leaderboard (all pages), best first: rank, team, score, date.

    Kaggle serves the private leaderboard of a closed competition unless ``public`` (``overridePublic``),
    and the public one while a competition is open.
    """
    from kagglesdk.competitions.types.competition_api_service import ApiGetLeaderboardRequest

    which = "public" if public else "default"
    with kaggle_errors(f"reading the {which} leaderboard of {competition}"), api.build_kaggle_client() as kaggle:
        def fetch(token: str):
            request = ApiGetLeaderboardRequest()
            request.competition_name = competition
            request.page_size = PAGE_SIZE
            request.page_token = token
            if public:
                request.override_public = True
            response = kaggle.competitions.competition_api_client.get_leaderboard(request)
            return response.submissions, response.next_page_token

        entries = all_pages(fetch)
    return [{"rank": i + 1, "team": e.team_name or "", "score": e.score or "",
             "date": str(e.submission_date or "")[:10]} for i, e in enumerate(entries)]


def _number(value: str) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def lower_is_better(rows: list[dict]) -> bool:
    """The board's direction, read off its order (best first); a loss, like PLAsTiCC's, when it cannot tell."""
    values = [v for v in (_number(r["score"]) for r in rows) if v is not None]
    return len(values) < 2 or values[0] <= values[-1]


def would_rank(rows: list[dict], score: float) -> int:
    """The rank ``score`` would take on ``rows``: one more than the teams strictly better."""
    lower = lower_is_better(rows)
    values = [v for v in (_number(r["score"]) for r in rows) if v is not None]
    return 1 + sum(1 for v in values if (v < score if lower else v > score))


def best(submissions: list[dict], board_name: str, lower: bool = True) -> dict | None:
    """Our submission with the best ``public_score`` or ``private_score``; None when none is scored."""
    key = f"{board_name}_score"
    scored = [s for s in submissions if s["status"] == "COMPLETE" and _number(s[key]) is not None]
    if not scored:
        return None
    pick = min if lower else max
    return pick(scored, key=lambda s: float(s[key]))


def our_place(rows: list[dict], team: str) -> dict | None:
    return next((r for r in rows if r["team"].lower() == team.lower()), None)


def _print_top(rows: list[dict], top: int, team: str, title: str) -> None:
    print(f"{title}: {len(rows)} teams (every page read); the top {min(top, len(rows))}:")
    print(f"{'rank':>5}  {'score':>9}  team")
    for r in rows[:top]:
        mark = "  <- us" if r["team"].lower() == team.lower() else ""
        print(f"{r['rank']:>5}  {r['score']:>9}  {r['team']}{mark}")


def _place_closed(api, competition: str, top: int, team: str, end: datetime) -> None:
    print(f"{competition} closed on {end:%Y-%m-%d}: late submissions are scored but get no rank. "
          "Where ours would have ranked on the final leaderboards:")
    boards = {"private": board(api, competition), "public": board(api, competition, public=True)}
    _print_top(boards["private"], top, team, "final private leaderboard")
    ours = scores.list_submissions(competition, api)
    for name, rows in boards.items():
        entry = best(ours, name, lower_is_better(rows))
        if entry is None:
            print(f"our best {name} score: none yet (no scored submission)")
            continue
        score = float(entry[f"{name}_score"])
        rank = would_rank(rows, score)
        print(f"our best {name} score {entry[f'{name}_score']} (ref {entry['ref']}) would have ranked "
              f"{rank} of {len(rows) + 1} on the final {name} leaderboard ({rank - 1} of its {len(rows)} teams "
              "scored better)")


def _place_open(api, competition: str, top: int, team: str) -> None:
    rows = board(api, competition)
    _print_top(rows, top, team, "public leaderboard")
    ours = our_place(rows, team)
    if ours is None:
        print(f"{team!r} is not on the leaderboard yet ({len(rows)} teams)")
    else:
        print(f"our best: rank {ours['rank']} of {len(rows)} with {ours['score']} ({team})")


def run(args: argparse.Namespace, config: Config) -> int:
    api = authenticated_api()
    print(source_label())
    team = args.team or username(api)
    end = deadline(api, args.competition)
    now = datetime.now(UTC).replace(tzinfo=None)
    if end is not None and end.tzinfo is not None:
        end = end.astimezone(UTC).replace(tzinfo=None)
    if end is not None and end < now:
        _place_closed(api, args.competition, args.top, team, end)
    else:
        if end is None:
            print(f"{args.competition} is not in the competition list: its deadline is unknown; "
                  "showing the leaderboard as served")
        _place_open(api, args.competition, args.top, team)
    return 0
