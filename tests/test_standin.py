"""The stand-in server's own rules: the public/private split and scoring."""

from __future__ import annotations

import gzip
import re

import numpy as np
import pandas as pd
import pytest

from kit import survey
from kit.standin import scoring


def test_public_share_is_about_a_third_and_fixed():
    ids = np.arange(100_000)
    public = scoring.is_public(ids)
    assert 0.32 < public.mean() < 0.36
    assert np.array_equal(public, scoring.is_public(ids))


def test_score_perfect_and_uniform():
    ids = np.arange(200)
    y = np.array(survey.SUBMISSION_CLASSES)[ids % 15]
    truth = pd.Series(y, index=ids)
    perfect = np.full((200, 15), 1e-6)
    perfect[np.arange(200), ids % 15] = 1.0
    frame = pd.DataFrame(perfect, columns=list(survey.SUBMISSION_COLUMNS[1:]))
    frame.insert(0, "object_id", ids)
    public, private = scoring.score(gzip.compress(frame.to_csv(index=False).encode()), truth)
    assert public < 1e-4 and private < 1e-4
    frame.iloc[:, 1:] = 1 / 15
    public, private = scoring.score(frame.to_csv(index=False).encode(), truth)
    assert public == pytest.approx(np.log(15)) and private == pytest.approx(np.log(15))
    with pytest.raises(ValueError, match="no row"):
        scoring.score(frame.iloc[:-1].to_csv(index=False).encode(), truth)


# --- the server's leaderboard: invented teams, closed like the real competition, paged ---------


@pytest.fixture
def standin(tmp_path):
    """A stand-in that is never started: its methods are called directly."""
    from kit.standin import StandinServer

    (tmp_path / "comp").mkdir()
    (tmp_path / "comp" / survey.TEST_METADATA).write_text("object_id\n")
    (tmp_path / "comp" / survey.TEST_TRUTH).write_text("object_id,target\n")
    server = StandinServer(tmp_path / "comp", username="me", teams=250, state_dir=tmp_path / "state")
    yield server
    server.stop()


def _entry(public, private):
    return {"ref": 1001, "date": "2026-01-01T00:00:00.000Z", "status": "COMPLETE",
            "publicScore": f"{public:.5f}", "privateScore": f"{private:.5f}"}


def test_teams_are_invented_and_say_so():
    from kit.standin.server import invented_teams

    teams = invented_teams(250)
    assert teams == invented_teams(250)  # fixed
    assert all(re.fullmatch(r"Invented team \d{3} \(stand-in\)", t["name"]) for t in teams)
    assert len({t["name"] for t in teams}) == len({t["id"] for t in teams}) == 250
    assert [t["private"] for t in teams] == sorted(t["private"] for t in teams)


def test_closed_competition_scores_but_never_ranks_us(standin):
    standin.submissions.append(_entry(1.0, 1.2))
    private, public = standin.leaderboard(public=False), standin.leaderboard(public=True)
    assert len(private) == len(public) == 250 and "me" not in {r["teamName"] for r in private + public}
    assert [r["score"] for r in private] == [f"{t['private']:.5f}" for t in standin.teams]
    assert [r["teamName"] for r in private] != [r["teamName"] for r in public]  # two different boards
    standin.closed = False
    public = standin.leaderboard(public=True)
    ours = next(i for i, r in enumerate(public) if r["teamName"] == "me")
    assert ours == sum(t["public"] < 1.0 for t in standin.teams) and public[ours]["score"] == "1.00000"


def test_leaderboard_pages(standin):
    from kit.standin.server import COMPETITION_SERVICE, ApiError

    def page(**body):
        return standin.handle(COMPETITION_SERVICE, "GetLeaderboard", {"competitionName": survey.COMPETITION, **body})

    first = page(pageSize=1000)  # capped at 100 rows, like a server that makes clients page
    assert len(first["submissions"]) == 100 and first["nextPageToken"] == "100"
    last = page(pageSize=100, pageToken="200")
    assert len(last["submissions"]) == 50 and last["nextPageToken"] == ""
    assert page(overridePublic=True)["submissions"] != page()["submissions"]
    with pytest.raises(ApiError):
        page(pageToken="abc")
    files = standin.handle(COMPETITION_SERVICE, "ListDataFiles", {"competitionName": survey.COMPETITION})
    assert [f["name"] for f in files["files"]] == ["LOCAL-STANDIN-NOT-KAGGLE.txt", survey.TEST_METADATA]
    listed = standin.handle(COMPETITION_SERVICE, "ListCompetitions", {"search": "plasticc"})["competitions"]
    assert len(listed) == 1 and "LOCAL STAND-IN" in listed[0]["title"] and listed[0]["deadline"] < "2019"
    assert standin.handle(COMPETITION_SERVICE, "ListCompetitions", {"search": "titanic"}) == {"competitions": []}
