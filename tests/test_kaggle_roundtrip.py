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
from kit.kaggle import ledger
from kit.standin import StandinServer

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
    folder = env / "data" / COMP
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


# --- submit, scores, leaderboard -------------------------------------------------------


def test_submit_scores_ledger_and_leaderboard(server, env, data, capsys):
    path = _submission(data, env)
    (env / "models" / COMP / "lgbm").mkdir(parents=True)
    (env / "models" / COMP / "lgbm" / "score.json").write_text('{"oof": 0.91234}')
    assert _run("submit", "--data", str(data)) == 0
    rows = ledger.read(env / "submissions" / "ledger.csv")
    assert len(rows) == 1 and rows[0]["ref"] and rows[0]["file"] == str(path.relative_to(env))
    assert "model=lgbm" in rows[0]["message"] and "oof=0.91234" in rows[0]["message"]
    assert rows[0]["status"] == "PENDING" and len(rows[0]["sha256"]) == 64

    assert _run("submissions", "--data", str(data)) == 0
    row = ledger.read(env / "submissions" / "ledger.csv")[0]
    assert row["status"] == "COMPLETE"
    assert float(row["public_score"]) == pytest.approx(np.log(15), rel=1e-4)  # uniform scores ln 15
    assert float(row["private_score"]) == pytest.approx(np.log(15), rel=1e-4)

    capsys.readouterr()
    assert _run("leaderboard", "--top", "20") == 0
    out = capsys.readouterr().out
    assert f"{USER}  <- us" in out and "our best: rank 11 of 11" in out


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
