"""The kit's Kaggle commands driving the real `kaggle` client against the stand-in server on 127.0.0.1."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pandas as pd
import pytest

from kit import survey
from kit.cli import main
from kit.kaggle import leaderboard as lb
from kit.kaggle import ledger
from kit.standin import StandinServer
from kit.standin.server import NOTE_FILE

USER, KEY = "kit-user", "s3cret-test-key-123"
COMP = survey.COMPETITION


def _metadata(ids: np.ndarray, rng, targets=None) -> pd.DataFrame:
    n = len(ids)
    galactic = np.arange(n) % 2 == 0
    meta = pd.DataFrame({
        "object_id": ids, "ra": rng.uniform(0, 360, n), "decl": rng.uniform(-60, 0, n),
        "gal_l": rng.uniform(0, 360, n), "gal_b": rng.uniform(-60, 60, n), "ddf": 0,
        "hostgal_specz": np.nan, "hostgal_photoz": np.where(galactic, 0.0, 0.4),
        "hostgal_photoz_err": np.where(galactic, 0.0, 0.05), "distmod": np.where(galactic, np.nan, 41.0),
        "mwebv": 0.02,
    })
    if targets is not None:
        meta["target"] = targets
    return meta


def _lightcurves(ids: np.ndarray, rng) -> pd.DataFrame:
    obj = np.repeat(ids, 12)
    return pd.DataFrame({
        "object_id": obj, "mjd": 59580 + np.tile(np.arange(12) * 3.0, len(ids)),
        "passband": np.tile(np.arange(12) % 6, len(ids)), "flux": rng.normal(10, 3, len(obj)),
        "flux_err": 1.5, "detected": (np.arange(len(obj)) % 4 == 0).astype(int),
    })


@pytest.fixture(scope="module")
def competition(tmp_path_factory):
    """A tiny competition folder with Kaggle's headers and a truth file."""
    rng = np.random.default_rng(3)
    folder = tmp_path_factory.mktemp("comp") / "source"
    folder.mkdir()
    train_ids, test_ids = np.arange(1, 9), np.arange(100, 140)
    train_targets = np.where(np.arange(8) % 2 == 0, 16, 90)
    test_targets = np.where(np.arange(40) % 2 == 0, rng.choice([16, 92], 40), rng.choice([90, 42, 99], 40))
    _metadata(train_ids, rng, train_targets).to_csv(folder / survey.TRAIN_METADATA, index=False)
    _metadata(test_ids, rng).to_csv(folder / survey.TEST_METADATA, index=False)
    _lightcurves(train_ids, rng).to_csv(folder / survey.TRAIN_LIGHTCURVES, index=False)
    _lightcurves(test_ids, rng).to_csv(folder / survey.TEST_LIGHTCURVES, index=False)
    sample = pd.DataFrame({"object_id": test_ids, **{c: 1.0 / 15 for c in survey.SUBMISSION_COLUMNS[1:]}})
    sample.to_csv(folder / survey.SAMPLE_SUBMISSION, index=False)
    pd.DataFrame({"object_id": test_ids, "target": test_targets}).to_csv(folder / survey.TEST_TRUTH, index=False)
    return folder


@pytest.fixture
def env(tmp_path, monkeypatch):
    """An isolated home, config dir and working folder; credentials set, endpoint not yet."""
    home = tmp_path / "home"
    (home / ".kaggle").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(home / ".kaggle"))
    monkeypatch.setenv("KAGGLE_USERNAME", USER)
    monkeypatch.setenv("KAGGLE_KEY", KEY)
    for name in ("KAGGLE_API_TOKEN", "KAGGLE_API_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def server(competition, env, monkeypatch):
    with StandinServer(competition, username=USER, key=KEY, member_format="zip") as s:
        monkeypatch.setenv("KIT_KAGGLE_ENDPOINT", s.url)
        yield s


@pytest.fixture
def data(competition, tmp_path):
    """The competition as the kit sees it after a download (Kaggle's files only)."""
    folder = tmp_path / "data" / COMP
    folder.mkdir(parents=True)
    for path in competition.iterdir():
        if path.name != survey.TEST_TRUTH:
            (folder / path.name).write_bytes(path.read_bytes())
    return folder


def _submission(data, tmp_path, model="lgbm"):
    """A valid uniform submission (it scores ln 15 on every part)."""
    ids = pd.read_csv(data / survey.TEST_METADATA)["object_id"]
    p = np.full((len(ids), 15), 1 / 15)
    frame = pd.DataFrame(p, columns=list(survey.SUBMISSION_COLUMNS[1:]))
    frame.insert(0, "object_id", ids)
    path = tmp_path / "submissions" / f"{COMP}-{model}.csv.gz"
    path.parent.mkdir(exist_ok=True)
    frame.to_csv(path, index=False, compression="gzip")
    return path


def _run(*argv):
    return main(list(argv))


# --- download --------------------------------------------------------------------------


def _calls(server, name):
    return sum(1 for method, path, _ in server.requests if path.endswith(name))


def test_download_unpacks_checks_and_is_idempotent(server, env, capsys):
    assert _run("download") == 0
    assert f"source: LOCAL STAND-IN at {server.url}" in capsys.readouterr().out
    folder = env / "data" / COMP
    assert "not by Kaggle" in (folder / NOTE_FILE).read_text()  # the data say where they came from
    for name, header in (
        (survey.TEST_LIGHTCURVES, survey.LIGHTCURVE_COLUMNS),
        (survey.TRAIN_METADATA, survey.METADATA_COLUMNS + ("target",)),
    ):
        assert (folder / name).read_text().splitlines()[0].split(",") == list(header)
    assert not (folder / survey.TEST_TRUTH).exists()
    assert not (folder / ".download").exists()
    assert json.loads((folder / ".download.json").read_text())["competition"] == COMP
    assert _calls(server, "DownloadDataFiles") == 1
    assert _run("download") == 0
    assert _calls(server, "DownloadDataFiles") == 1  # complete: no call at all


def test_download_resumes_after_dropped_connection(server, env):
    server.drop_download_after = 200
    assert _run("download", "--out", str(env / "mine")) == 0
    assert any("Range" in headers for _, _, headers in server.requests)
    assert (env / "mine" / survey.TEST_LIGHTCURVES).exists()


def test_download_redone_over_leftover_partial(server, env, competition):
    staging = env / "data" / COMP / ".download"
    staging.mkdir(parents=True)
    (staging / f"{COMP}.zip").write_bytes(b"PK\x03\x04 partial")  # an interrupted earlier run
    (env / "data" / COMP / f".{survey.TEST_METADATA}.99.tmp").write_text("half")
    assert _run("download") == 0
    got = (env / "data" / COMP / survey.TEST_METADATA).read_bytes()
    assert got == (competition / survey.TEST_METADATA).read_bytes()


def test_download_gz_members(competition, env, monkeypatch):
    with StandinServer(competition, username=USER, key=KEY, member_format="gz") as s:
        monkeypatch.setenv("KIT_KAGGLE_ENDPOINT", s.url)
        assert _run("download") == 0
    got = (env / "data" / COMP / survey.TRAIN_LIGHTCURVES).read_bytes()
    assert got == (competition / survey.TRAIN_LIGHTCURVES).read_bytes()


def test_missing_credentials_says_how(server, env, monkeypatch, capsys):
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    assert _run("download") == 2
    out = capsys.readouterr()
    err = out.err
    assert "KAGGLE_API_TOKEN" in err and "kaggle.json" in err and "credentials.json" in err
    assert "Authentication required" not in out.out + err  # the client's own banner is not shown
    assert _calls(server, "DownloadDataFiles") == 0


def test_wrong_credentials_are_refused_without_printing_the_key(server, env, monkeypatch, capsys):
    monkeypatch.setenv("KAGGLE_KEY", "wrong-key-456")
    assert _run("download") == 2
    out = capsys.readouterr()
    assert "refused the credentials (HTTP 401)" in out.err
    assert "wrong-key-456" not in out.err + out.out


def test_token_auth(server, env, monkeypatch):
    server.token = "tok-789"
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    monkeypatch.setenv("KAGGLE_API_TOKEN", "tok-789")
    assert _run("download") == 0


@pytest.mark.parametrize("with_key", [False, True])
def test_refused_token_is_reported_as_refused(server, env, monkeypatch, capsys, with_key):
    server.token = "tok-789"
    if not with_key:  # with a key too, the client falls back to it but still sends the refused token
        monkeypatch.delenv("KAGGLE_USERNAME")
        monkeypatch.delenv("KAGGLE_KEY")
    monkeypatch.setenv("KAGGLE_API_TOKEN", "bad-token-000")
    assert _run("download") == 2
    out = capsys.readouterr()
    assert "refused the API token from KAGGLE_API_TOKEN" in out.err
    assert "no Kaggle credentials found" not in out.err
    assert "bad-token-000" not in out.err + out.out
    assert _calls(server, "DownloadDataFiles") == 0


# --- submit, scores, leaderboard -------------------------------------------------------


STANDIN_LEDGER = "submissions/ledger-standin.csv"


def test_submit_scores_go_to_the_standin_ledger_with_the_endpoint(server, env, data, capsys):
    path = _submission(data, env)
    (env / "models" / COMP / "lgbm").mkdir(parents=True)
    (env / "models" / COMP / "lgbm" / "score.json").write_text('{"oof": 0.91234}')
    real = env / "submissions" / "ledger.csv"  # a Kaggle row from earlier: demo rows must never join it
    ledger.write(real, [{"endpoint": "https://api.kaggle.com", "ref": "1001", "status": "COMPLETE",
                         "public_score": "0.9"}])
    before = real.read_bytes()
    assert _run("submit", "--data", str(data)) == 0
    out = capsys.readouterr().out
    assert "source: LOCAL STAND-IN at " + server.url in out and "on the LOCAL STAND-IN (not Kaggle)" in out
    rows = ledger.read(env / STANDIN_LEDGER)
    assert len(rows) == 1 and rows[0]["ref"] == "1001" and rows[0]["file"] == str(path.relative_to(env))
    assert rows[0]["endpoint"] == server.url
    assert "model=lgbm" in rows[0]["message"] and "oof=0.91234" in rows[0]["message"]
    assert rows[0]["status"] == "PENDING" and len(rows[0]["sha256"]) == 64

    assert _run("submissions", "--data", str(data)) == 0
    out = capsys.readouterr().out
    assert f"source: LOCAL STAND-IN at {server.url}" in out and f"(endpoint {server.url})" in out
    row = ledger.read(env / STANDIN_LEDGER)[0]
    assert row["status"] == "COMPLETE"
    assert float(row["public_score"]) == pytest.approx(np.log(15), rel=1e-4)  # uniform scores ln 15
    assert float(row["private_score"]) == pytest.approx(np.log(15), rel=1e-4)
    assert real.read_bytes() == before  # same ref 1001, other endpoint: untouched


def test_ledger_updates_only_rows_of_the_same_endpoint(tmp_path):
    path = tmp_path / "ledger.csv"
    ledger.write(path, [{"endpoint": "https://api.kaggle.com", "ref": "7", "status": "PENDING"},
                        {"endpoint": "http://127.0.0.1:9", "ref": "7", "status": "PENDING"},
                        {"endpoint": "", "ref": "8", "status": "PENDING"}])  # written before endpoints were kept
    update = {"status": "COMPLETE", "public_score": "1.5"}
    assert ledger.update_by_ref(path, {"7": update, "8": update}, "https://api.kaggle.com") == 2
    rows = ledger.read(path)
    assert [r["status"] for r in rows] == ["COMPLETE", "PENDING", "COMPLETE"]
    assert rows[2]["endpoint"] == "https://api.kaggle.com"


def test_leaderboard_of_a_closed_competition_places_our_best_on_every_page(server, env, data, capsys):
    # invented teams from 1.8 to 3.4: a uniform submission (ln 15 = 2.708) lands on the second page of 100
    server.teams = [dict(t, private=t["private"] + 1.0, public=t["public"] + 1.0) for t in server.teams]
    _submission(data, env)
    assert _run("submit", "--data", str(data)) == 0
    capsys.readouterr()
    assert _run("leaderboard", "--top", "3") == 0
    out = capsys.readouterr().out
    assert f"source: LOCAL STAND-IN at {server.url}" in out
    assert "closed on 2018-12-17: late submissions are scored but get no rank" in out
    assert "final private leaderboard: 250 teams" in out and "<- us" not in out
    for board in ("private", "public"):
        rank = 1 + sum(t[board] < np.log(15) for t in server.teams)
        assert 100 < rank < 200
        assert f"would have ranked {rank} of 251 on the final {board} leaderboard" in out
    assert sum(path.endswith("GetLeaderboard") for _, path, _ in server.requests) == 6  # 3 pages per board


def test_leaderboard_of_an_open_competition_ranks_us(competition, env, data, monkeypatch, capsys):
    with StandinServer(competition, username=USER, key=KEY, closed=False, teams=30) as s:
        monkeypatch.setenv("KIT_KAGGLE_ENDPOINT", s.url)
        s.teams = [dict(t, public=t["public"] + 2.0) for t in s.teams]  # ln 15 beats all but 5 teams
        s.teams[:5] = [dict(t, public=t["public"] - 2.0) for t in s.teams[:5]]
        _submission(data, env)
        assert _run("submit", "--data", str(data)) == 0
        capsys.readouterr()
        assert _run("leaderboard", "--top", "10") == 0
    out = capsys.readouterr().out
    assert "closed" not in out and f"{USER}  <- us" in out and "our best: rank 6 of 31" in out


def test_leaderboard_helpers():
    rows = [{"score": s} for s in ("0.5", "0.7", "0.7", "1.2")]
    assert lb.lower_is_better(rows) and lb.would_rank(rows, 0.7) == 2 and lb.would_rank(rows, 0.1) == 1
    assert lb.would_rank(rows, 9.0) == 5
    higher = list(reversed(rows))
    assert not lb.lower_is_better(higher) and lb.would_rank(higher, 1.0) == 2
    subs = [{"status": "COMPLETE", "public_score": "0.9", "private_score": "1.1", "ref": "1"},
            {"status": "COMPLETE", "public_score": "1.0", "private_score": "0.8", "ref": "2"},
            {"status": "ERROR", "public_score": "", "private_score": "", "ref": "3"}]
    assert lb.best(subs, "public")["ref"] == "1" and lb.best(subs, "private")["ref"] == "2"
    assert lb.best(subs[2:], "public") is None


def test_invalid_submission_is_not_uploaded(server, env, data, capsys):
    path = _submission(data, env)
    frame = pd.read_csv(path).iloc[:-1]
    frame.to_csv(path, index=False, compression="gzip")
    assert _run("submit", "--data", str(data), "--file", str(path)) == 2
    assert _calls(server, "StartSubmissionUpload") == 0


def test_failed_upload_fails_loudly(server, env, data, capsys):
    _submission(data, env)
    server.fail_uploads = True
    assert _run("submit", "--data", str(data)) == 2
    assert "did not accept" in capsys.readouterr().err
    assert not (env / "submissions" / "ledger.csv").exists()


def test_daily_limit_refuses_before_upload(competition, env, data, monkeypatch, capsys):
    with StandinServer(competition, username=USER, key=KEY, daily_limit=1) as s:
        monkeypatch.setenv("KIT_KAGGLE_ENDPOINT", s.url)
        _submission(data, env)
        assert _run("submit", "--data", str(data)) == 0
        assert _run("submit", "--data", str(data)) == 2
        assert "no submissions left today" in capsys.readouterr().err
        assert _calls(s, "StartSubmissionUpload") == 1


@pytest.mark.parametrize("kind, text", [("status", "HTTP 500"), ("json", "Injected server error")])
def test_server_errors_become_clear_messages(server, env, data, capsys, kind, text):
    _submission(data, env)
    server.fail_next("GetSubmissionLimits", kind)
    assert _run("submit", "--data", str(data)) == 2
    err = capsys.readouterr().err
    assert text in err and "Traceback" not in err
    server.fail_next("*", kind)
    assert _run("submissions") == 2


# --- kernel ----------------------------------------------------------------------------


def test_kernel_push_status_output(server, env, data, capsys):
    assert _run("kernel", "push", "--data", str(data)) == 0
    meta = json.loads((env / "kernels" / "lstm" / "kernel-metadata.json").read_text())
    assert meta["id"] == f"{USER}/plasticc-kit-lstm" and meta["enable_gpu"] and meta["enable_internet"] is False
    assert server.kernels[meta["id"]]["enableGpu"] and not server.kernels[meta["id"]]["enableInternet"]
    assert _run("kernel", "status") == 0
    assert "COMPLETE" in capsys.readouterr().out
    server.set_kernel_output(meta["id"], {f"models/{COMP}/lstm/test.parquet": b"PAR1"}, "log line")
    assert _run("kernel", "output", "--data", str(data)) == 0
    assert (env / "models" / COMP / "lstm" / "test.parquet").read_bytes() == b"PAR1"
    assert (env / "models" / COMP / "kernel.log").read_text() == "log line"


def test_kernel_push_with_invalid_sources_is_refused(competition, env, data, monkeypatch, capsys):
    with StandinServer(competition, competition="another-competition", username=USER, key=KEY) as s:
        monkeypatch.setenv("KIT_KAGGLE_ENDPOINT", s.url)
        assert _run("kernel", "push") == 2
        assert not s.kernels
    err = capsys.readouterr().err
    assert f"invalid competition sources: {COMP}" in err


def test_standin_never_serves_the_truth(server, env):
    import requests

    with zipfile.ZipFile(io.BytesIO(requests.get(f"{server.url}/files/{COMP}.zip").content)) as zf:
        names = zf.namelist()
    assert survey.TEST_TRUTH not in names and f"{survey.TEST_LIGHTCURVES}.zip" in names
    assert requests.get(f"{server.url}/files/single/{survey.TEST_TRUTH}").status_code == 404


# --- the official kaggle CLI against the stand-in ------------------------------------------


def _cli(capsys, *argv):
    """`python -m kit kaggle-cli ARGV` in this process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    code = main(["kaggle-cli", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_kaggle_cli_list_and_files(server, env, capsys):
    code, out, err = _cli(capsys, "competitions", "list", "-s", COMP)
    assert code == 0 and f"{server.url}/competitions/{COMP}" in out and "Local stand-in" in out
    assert err.startswith(f"source: LOCAL STAND-IN at {server.url}")
    code, out, _ = _cli(capsys, "competitions", "files", "-c", COMP)
    names = [line.split()[0] for line in out.splitlines()[2:] if line.strip()]
    assert code == 0 and NOTE_FILE in names and survey.TEST_LIGHTCURVES in names and survey.TEST_TRUTH not in names


def test_kaggle_cli_downloads(server, env, competition, capsys):
    code, _, _ = _cli(capsys, "competitions", "download", "-c", COMP, "-p", "all")
    with zipfile.ZipFile(env / "all" / f"{COMP}.zip") as zf:
        assert code == 0 and NOTE_FILE in zf.namelist() and survey.TEST_TRUTH not in zf.namelist()
    code, _, _ = _cli(capsys, "competitions", "download", "-c", COMP, "-f", survey.TEST_METADATA, "-p", "one")
    assert code == 0
    assert (env / "one" / survey.TEST_METADATA).read_bytes() == (competition / survey.TEST_METADATA).read_bytes()


def test_kaggle_cli_submit_and_submissions(server, env, data, capsys):
    path = _submission(data, env)
    code, out, _ = _cli(capsys, "competitions", "submit", "-c", COMP, "-f", str(path), "-m", "cli upload")
    assert code == 0 and "Successfully submitted" in out and "LOCAL STAND-IN" in out
    assert [s["description"] for s in server.submissions] == ["cli upload"]
    code, out, _ = _cli(capsys, "competitions", "submissions", "-c", COMP)
    assert code == 0 and "cli upload" in out and f"{np.log(15):.5f}" in out


def test_kaggle_cli_leaderboard_show_and_download(server, env, capsys):
    code, out, _ = _cli(capsys, "competitions", "leaderboard", "-c", COMP, "--show")
    rows = [line for line in out.splitlines() if "(stand-in)" in line]
    assert code == 0 and len(rows) == 20 and "Invented team 001 (stand-in)" in rows[0]
    code, _, _ = _cli(capsys, "competitions", "leaderboard", "-c", COMP, "--download", "-p", "lb")
    with zipfile.ZipFile(env / "lb" / f"{COMP}.zip") as zf:
        (name,) = zf.namelist()
        board = pd.read_csv(zf.open(name))
    assert code == 0 and name == f"{COMP}-publicleaderboard-LOCAL-STANDIN.csv"
    assert list(board.columns) == ["TeamId", "TeamName", "SubmissionDate", "Score"] and len(board) == 250
    assert board["TeamName"].str.fullmatch(r"Invented team \d{3} \(stand-in\)").all()
    assert board["Score"].is_monotonic_increasing


def test_kaggle_cli_as_typed(server, env):
    """The documented command line itself, in a fresh process."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    environ = dict(os.environ, PYTHONPATH=str(root))
    done = subprocess.run([sys.executable, "-m", "kit", "kaggle-cli", "competitions", "list"], env=environ,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"{server.url}/competitions/{COMP}" in done.stdout and "LOCAL STAND-IN" in done.stderr


def test_endpoint_switch_is_off_by_default(env, monkeypatch):
    from kit.kaggle import client

    monkeypatch.delenv("KIT_KAGGLE_ENDPOINT", raising=False)
    api = client._api_class()()
    api.config_values = {}
    with api.build_kaggle_client() as kaggle:
        assert kaggle.http_client()._endpoint == "https://api.kaggle.com"
    assert client.endpoint_name() == "https://api.kaggle.com" and client.source_label().startswith("source: Kaggle")
