"""A stand-in Kaggle API server for tests and demos, on 127.0.0.1 only. It is not Kaggle and says so.

It speaks what the official client sends (``POST /api/v1/{service}/{Method}``, camelCase JSON,
Basic or Bearer auth) for the calls the kit and the ``kaggle`` CLI's common commands make: competition
list, file list, download (302 to a file served with Range/ETag support), submission upload and scoring
against ``test_truth.csv`` with a fixed public/private split, submission limits, submissions list,
leaderboard (paged, public or private) and its download, kernel push/status/output.
Failures can be injected (:meth:`StandinServer.fail_next`, ``fail_uploads``, ``drop_download_after``).

Nothing it serves can pass for Kaggle's: the leaderboard holds invented teams (``Invented team 001
(stand-in)``...), the competition's title and category say "local stand-in", the download carries
:data:`NOTE_FILE`, and the leaderboard download is named ``...-LOCAL-STANDIN.csv``. Like the real
PLAsTiCC-2018, the competition is closed by default: submissions are scored but get no rank.

Python API::

    with StandinServer(competition_dir, username="u", key="k") as server:
        os.environ["KIT_KAGGLE_ENDPOINT"] = server.url

Command: ``python -m kit serve-kaggle --competition-dir data/sim-demo --port 8777``; the ``kaggle`` CLI reaches
it through ``KIT_KAGGLE_ENDPOINT=http://127.0.0.1:8777 python -m kit kaggle-cli competitions list``.
"""

from __future__ import annotations

import argparse
import base64
import csv
import gzip
import hashlib
import io
import json
import logging
import random
import re
import shutil
import signal
import tempfile
import threading
import time
import uuid
import zipfile
from datetime import UTC, datetime
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

from kit import survey
from kit.config import Config
from kit.standin import scoring

log = logging.getLogger(__name__)

#: Every team on the stand-in's leaderboard is invented and named so that it cannot be taken for a real one.
TEAM_NAME = "Invented team {:03d} (stand-in)"
#: The file the stand-in adds to the competition's files and download, saying where they come from.
NOTE_FILE = "LOCAL-STANDIN-NOT-KAGGLE.txt"
NOTE_TEXT = (
    "These files were served by the PLAsTiCC kit's local stand-in of the Kaggle API (kit/standin), not by Kaggle.\n"
    "Its scores come from the stand-in's own truth file; its leaderboard holds invented teams.\n"
)
#: PLAsTiCC-2018's real deadline: the stand-in's competition is closed like the real one unless told otherwise.
DEADLINE = "2018-12-17T23:59:00.000Z"
#: Rows per page at most, so that clients must follow ``nextPageToken`` as on Kaggle.
MAX_PAGE_SIZE = 100
MACHINE_SHAPES = ("NvidiaTeslaT4", "NvidiaTeslaP100", "NvidiaTeslaT4Highmem", "NvidiaL4", "Tpu1VmV38", "None")
COMPETITION_SERVICE = "competitions.CompetitionApiService"
KERNELS_SERVICE = "kernels.KernelsApiService"
OAUTH_SERVICE = "security.OAuthService"


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _now() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def invented_teams(n: int, seed: int = 2018) -> list[dict]:
    """``n`` invented teams, best private score first: name, id, date and a private and a public score.

    The scores are made up (a smooth spread from 0.8 to 2.4 with noise, lower is better) and the names
    say they are invented: a rank among them tells how the mechanics work, not how a model would fare.
    """
    rng = random.Random(seed)
    private = sorted(0.8 + 1.6 * (i / max(n - 1, 1)) ** 1.6 + rng.gauss(0, 0.01) for i in range(n))
    return [{"name": TEAM_NAME.format(i + 1), "id": 90_001 + i, "private": score,
             "public": score + rng.gauss(0, 0.03), "date": f"2018-12-{10 + i % 8:02d}T{i % 24:02d}:00:00.000Z"}
            for i, score in enumerate(private)]


def _page(items: list, body: dict, default_size: int = 20) -> tuple[list, str]:
    """One page of ``items`` for ``pageSize`` / ``pageToken`` (or the older 1-based ``page``); the next token."""
    size = max(1, min(int(body.get("pageSize") or default_size), MAX_PAGE_SIZE))
    token = str(body.get("pageToken") or "")
    if token and not token.isdigit():
        raise ApiError(400, f"Invalid page token '{token}'")
    start = int(token) if token else (max(1, int(body.get("page") or 1)) - 1) * size
    end = start + size
    return items[start:end], str(end) if end < len(items) else ""


class StandinServer:
    """The stand-in server; a context manager that serves on ``127.0.0.1:port`` (0: any free port).

    Parameters
    ----------
    competition_dir
        A competition folder: Kaggle's CSV files plus ``test_truth.csv`` (never served).
    competition
        The competition's name (case-insensitive in requests).
    username, key, token
        Accepted credentials: HTTP Basic ``username:key``, or ``Bearer token``.
    daily_limit
        Submissions allowed per day.
    member_format
        How the light-curve files sit in the download zip: ``csv``, ``zip`` (nested .csv.zip) or ``gz``.
    state_dir
        Where the zip and ``state.json`` (submissions, kernels) live; a temporary folder if None.
    teams
        How many invented teams the leaderboard holds (more than a page, so that paging is exercised).
    closed
        True (default): past the deadline, like the real competition; submissions are scored, never ranked,
        and the leaderboard is the final one (private by default, public on request). False: open;
        our best public score enters the public leaderboard and there is no private one yet.
    """

    def __init__(self, competition_dir: Path, competition: str = survey.COMPETITION, username: str = "kit-user",
                 key: str = "kit-key", token: str | None = None, daily_limit: int = 5, member_format: str = "csv",
                 state_dir: Path | None = None, host: str = "127.0.0.1", port: int = 0, teams: int = 250,
                 closed: bool = True):
        self.competition_dir = Path(competition_dir)
        self.competition = competition
        self.username, self.key, self.token = username, key, token
        self.daily_limit = daily_limit
        self.member_format = member_format
        self.closed = closed
        self.teams = invented_teams(teams)
        self._own_state = state_dir is None
        self.state_dir = Path(state_dir) if state_dir else Path(tempfile.mkdtemp(prefix="kaggle-standin-"))
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.host, self.port = host, port
        self.lock = threading.RLock()
        self.submissions: list[dict] = []
        self.kernels: dict[str, dict] = {}
        self.blobs: dict[str, bytes] = {}
        self.upload_names: dict[str, str] = {}
        self.kernel_outputs: dict[str, dict[str, bytes]] = {}
        self.requests: list[tuple[str, str, dict]] = []  # (method, path, headers of interest)
        self.fail_uploads = False
        self.drop_download_after: int | None = None
        self._failures: list[tuple[str, str]] = []
        self._truth = None
        self._zip: Path | None = None
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._load_state()

    # --- lifecycle ------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> StandinServer:
        server = self

        class Handler(_Handler):
            standin = server

        self._httpd = ThreadingHTTPServer((self.host, self.port), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="kaggle-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._own_state:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self) -> StandinServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- test controls --------------------------------------------------------------------
    def fail_next(self, method: str = "*", kind: str = "status") -> None:
        """Make the next call of ``method`` (``*``: any) fail: ``status`` (HTTP 500) or ``json`` ({"code": 500})."""
        with self.lock:
            self._failures.append((method, kind))

    def set_kernel_output(self, slug: str, files: dict[str, bytes], log_text: str = "") -> None:
        """Files a pushed kernel ``slug`` leaves in /kaggle/working (path relative to it -> bytes)."""
        with self.lock:
            self.kernel_outputs[slug] = dict(files)
            self.kernel_outputs[slug][""] = log_text.encode()

    def _take_failure(self, method: str) -> str | None:
        with self.lock:
            for i, (m, kind) in enumerate(self._failures):
                if m in ("*", method):
                    del self._failures[i]
                    return kind
        return None

    # --- state ----------------------------------------------------------------------------
    @property
    def _state_file(self) -> Path:
        return self.state_dir / "state.json"

    def _load_state(self) -> None:
        if self._state_file.exists():
            state = json.loads(self._state_file.read_text())
            self.submissions, self.kernels = state.get("submissions", []), state.get("kernels", {})

    def _save_state(self) -> None:
        tmp = self._state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"submissions": self.submissions, "kernels": self.kernels}, indent=1))
        tmp.replace(self._state_file)

    def truth(self):
        if self._truth is None:
            path = self.competition_dir / survey.TEST_TRUTH
            if not path.exists():
                raise ApiError(500, f"the stand-in has no {survey.TEST_TRUTH} in {self.competition_dir}")
            self._truth = scoring.read_truth(path)
        return self._truth

    def zip_path(self) -> Path:
        """The competition's download zip (built once): every Kaggle file, never the truth."""
        with self.lock:
            if self._zip is None:
                target = self.state_dir / f"{self.competition}.zip"
                tmp = target.with_suffix(".building")
                with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
                    zf.writestr(NOTE_FILE, NOTE_TEXT)
                    for path in self.data_files():
                        self._add_member(zf, path)
                tmp.replace(target)
                self._zip = target
            return self._zip

    def data_files(self) -> list[Path]:
        """The competition's files as served: every file of the folder but the truth and hidden files."""
        return [path for path in sorted(self.competition_dir.iterdir())
                if path.is_file() and path.name not in (survey.TEST_TRUTH, NOTE_FILE) and not path.name.startswith(".")]

    def _add_member(self, zf: zipfile.ZipFile, path: Path) -> None:
        lightcurves = path.name in (survey.TRAIN_LIGHTCURVES, survey.TEST_LIGHTCURVES)
        if not lightcurves or self.member_format == "csv":
            zf.write(path, path.name)
        elif self.member_format == "gz":
            zf.writestr(path.name + ".gz", gzip.compress(path.read_bytes()), compress_type=zipfile.ZIP_STORED)
        else:
            inner = self.state_dir / (path.name + ".zip")
            with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as z:
                z.write(path, path.name)
            zf.write(inner, inner.name, compress_type=zipfile.ZIP_STORED)
            inner.unlink()

    # --- API methods ----------------------------------------------------------------------
    def _check_competition(self, body: dict) -> None:
        name = str(body.get("competitionName", ""))
        if name.lower() != self.competition.lower():
            raise ApiError(404, f"Competition '{name}' not found")

    def _today(self) -> list[dict]:
        day = _now()[:10]
        return [s for s in self.submissions if s["date"][:10] == day]

    def _limits(self) -> dict:
        today = len(self._today())
        return {"numToday": today, "numTotal": len(self.submissions),
                "numAllowedNow": max(0, self.daily_limit - today), "limitedByTotal": False}

    def handle(self, service: str, method: str, body: dict) -> dict | tuple[int, str]:
        """One API call: a JSON response, or (status, Location) for a redirect."""
        key = f"{service}/{method}"
        if key == f"{COMPETITION_SERVICE}/DownloadDataFiles":
            self._check_competition(body)
            return 302, f"{self.url}/files/{self.competition}.zip"
        if key == f"{COMPETITION_SERVICE}/DownloadDataFile":
            self._check_competition(body)
            name = Path(str(body.get("fileName", ""))).name
            if name != NOTE_FILE and name not in {p.name for p in self.data_files()}:
                raise ApiError(404, f"File '{name}' not found")
            return 302, f"{self.url}/files/single/{name}"
        if key == f"{COMPETITION_SERVICE}/ListCompetitions":
            return self._list_competitions(body)
        if key == f"{COMPETITION_SERVICE}/ListDataFiles":
            self._check_competition(body)
            return self._list_data_files(body)
        if key == f"{COMPETITION_SERVICE}/StartSubmissionUpload":
            self._check_competition(body)
            token = uuid.uuid4().hex
            self.upload_names[token] = Path(str(body.get("fileName", "submission.csv"))).name
            return {"token": token, "createUrl": f"{self.url}/upload/{token}"}
        if key == f"{COMPETITION_SERVICE}/CreateSubmission":
            return self._create_submission(body)
        if key == f"{COMPETITION_SERVICE}/GetSubmissionLimits":
            self._check_competition(body)
            return self._limits()
        if key == f"{COMPETITION_SERVICE}/ListSubmissions":
            self._check_competition(body)
            subs = sorted(self.submissions, key=lambda s: s["ref"], reverse=True)
            page, token = _page([{k: v for k, v in s.items() if not k.startswith("_")} for s in subs], body)
            return {"submissions": page, "nextPageToken": token}
        if key == f"{COMPETITION_SERVICE}/GetLeaderboard":
            self._check_competition(body)
            page, token = _page(self.leaderboard(public=bool(body.get("overridePublic")) or not self.closed), body)
            return {"submissions": page, "nextPageToken": token}
        if key == f"{COMPETITION_SERVICE}/DownloadLeaderboard":
            self._check_competition(body)
            return 302, f"{self.url}/files/leaderboard/{self.competition}.zip"
        if key == f"{KERNELS_SERVICE}/SaveKernel":
            return self._save_kernel(body)
        if key == f"{KERNELS_SERVICE}/GetKernelSessionStatus":
            kernel = self._kernel(body)
            return {"status": kernel["status"]}
        if key == f"{KERNELS_SERVICE}/ListKernelSessionOutput":
            kernel = self._kernel(body)
            outputs = self.kernel_outputs.get(kernel["slug"], {})
            files = [{"url": f"{self.url}/kernel-output/{kernel['slug']}/{name}", "fileName": name}
                     for name in sorted(outputs) if name]
            return {"files": files, "log": outputs.get("", b"").decode()}
        raise ApiError(404, f"The stand-in does not implement {key}")

    def _create_submission(self, body: dict) -> dict:
        self._check_competition(body)
        token = str(body.get("blobFileTokens", ""))
        if token not in self.blobs:
            raise ApiError(400, "Unknown blob file token: upload the file first")
        if self._limits()["numAllowedNow"] <= 0:
            raise ApiError(429, f"Submission limit reached: {self.daily_limit} submissions per day")
        content = self.blobs.pop(token)
        entry = {
            "ref": 1000 + len(self.submissions) + 1, "date": _now(),
            "description": body.get("submissionDescription", ""),
            "fileName": self.upload_names.get(token, "submission.csv"), "totalBytes": len(content),
            "submittedBy": self.username, "teamName": self.username, "status": "COMPLETE",
        }
        try:
            public, private = scoring.score(content, self.truth())
            entry["publicScore"], entry["privateScore"] = f"{public:.5f}", f"{private:.5f}"
        except (ValueError, KeyError, OSError, EOFError) as err:
            entry["status"], entry["errorDescription"] = "ERROR", f"Submission scoring error: {err}"
        self.submissions.append(entry)
        self._save_state()
        return {"message": f"Successfully submitted to {self.competition} on the LOCAL STAND-IN (not Kaggle)",
                "ref": entry["ref"]}

    def leaderboard(self, public: bool) -> list[dict]:
        """The public or private leaderboard, best first: the invented teams, and us while the competition is open."""
        board = "public" if public else "private"
        rows = [(t[board], t["name"], t["id"], t["date"]) for t in self.teams]
        ours = [s for s in self.submissions if s.get("status") == "COMPLETE"]
        if ours and not self.closed:  # late submissions are scored but never ranked
            best = min(ours, key=lambda s: float(s["publicScore"]))
            rows.append((float(best[f"{board}Score"]), self.username, 1, best["date"]))
        rows.sort(key=lambda r: r[0])
        return [{"teamId": team_id, "teamName": name, "submissionDate": date, "score": f"{score:.5f}"}
                for score, name, team_id, date in rows]

    def leaderboard_zip(self) -> bytes:
        """What ``DownloadLeaderboard`` serves: the public leaderboard as CSV, in a zip, named as the stand-in's."""
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["TeamId", "TeamName", "SubmissionDate", "Score"])
        for row in self.leaderboard(public=True):
            writer.writerow([row["teamId"], row["teamName"], row["submissionDate"], row["score"]])
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(f"{self.competition}-publicleaderboard-LOCAL-STANDIN.csv", text.getvalue())
        return buffer.getvalue()

    def _list_competitions(self, body: dict) -> dict:
        search = str(body.get("search") or "").lower()
        if search and search not in self.competition.lower():
            return {"competitions": []}
        teams = len(self.teams) + (0 if self.closed or not self.submissions else 1)
        deadline = DEADLINE if self.closed else "2099-12-31T23:59:00.000Z"
        entry = {
            "id": 1, "ref": f"{self.url}/competitions/{self.competition}",
            "title": f"{self.competition} (LOCAL STAND-IN: not Kaggle, invented teams)",
            "url": f"{self.url}/competitions/{self.competition}", "category": "Local stand-in",
            "organizationName": "PLAsTiCC kit stand-in", "reward": "none (stand-in)", "deadline": deadline,
            "teamCount": teams, "userHasEntered": bool(self.submissions), "maxDailySubmissions": self.daily_limit,
            "evaluationMetric": "weighted multi-class log loss (lower is better)", "hostName": "local stand-in",
        }
        return {"competitions": [entry]}

    def _list_data_files(self, body: dict) -> dict:
        files = [{"ref": NOTE_FILE, "name": NOTE_FILE, "totalBytes": len(NOTE_TEXT.encode()), "creationDate": _now()}]
        for path in self.data_files():
            stat = path.stat()
            created = datetime.fromtimestamp(stat.st_mtime, UTC).replace(tzinfo=None)
            files.append({"ref": path.name, "name": path.name, "totalBytes": stat.st_size,
                          "creationDate": created.isoformat(timespec="milliseconds") + "Z"})
        page, token = _page(files, body)
        return {"files": page, "nextPageToken": token}

    def _save_kernel(self, body: dict) -> dict:
        slug = str(body.get("slug", ""))
        owner, _, name = slug.partition("/")
        if owner != self.username or not re.fullmatch(r"[a-z0-9][a-z0-9-]{4,49}", name or ""):
            return {"error": f"Invalid kernel id '{slug}': must be {self.username}/<slug of 5-50 characters>"}
        bad_competitions = [c for c in body.get("competitionDataSources", []) if c.lower() != self.competition.lower()]
        bad_datasets = list(body.get("datasetDataSources", []))  # the stand-in holds no datasets
        bad_kernels = [k for k in body.get("kernelDataSources", []) if k not in self.kernels]
        shape = body.get("machineShape")
        if bad_competitions or bad_datasets or bad_kernels:
            return {"error": "Invalid data sources", "invalidCompetitionSources": bad_competitions,
                    "invalidDatasetSources": bad_datasets, "invalidKernelSources": bad_kernels}
        if shape and shape not in MACHINE_SHAPES:
            return {"error": f"Invalid machine shape '{shape}'"}
        if not body.get("text"):
            return {"error": "The kernel has no source"}
        with self.lock:
            version = self.kernels.get(slug, {}).get("versionNumber", 0) + 1
            self.kernels[slug] = {"slug": slug, "versionNumber": version, "status": "COMPLETE",
                                  "enableGpu": bool(body.get("enableGpu")),
                                  "enableInternet": bool(body.get("enableInternet")),
                                  "sha256": hashlib.sha256(body["text"].encode()).hexdigest()}
            self._save_state()
        return {"ref": f"/code/{slug}", "url": f"{self.url}/code/{slug}", "versionNumber": version}

    def _kernel(self, body: dict) -> dict:
        slug = f"{body.get('userName', '')}/{body.get('kernelSlug', '')}"
        if slug not in self.kernels:
            raise ApiError(404, f"Kernel '{slug}' not found")
        return self.kernels[slug]

    def authorized(self, header: str, service: str) -> bool:
        if service == OAUTH_SERVICE:
            return True
        scheme, _, value = (header or "").partition(" ")
        if scheme == "Basic":
            try:
                return base64.b64decode(value).decode() == f"{self.username}:{self.key}"
            except ValueError:
                return False
        return scheme == "Bearer" and self.token is not None and value == self.token


class _Handler(BaseHTTPRequestHandler):
    standin: StandinServer
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: tests and demos read the kit's output, not ours
        log.debug("standin: " + fmt, *args)

    def _send(self, status: int, body: bytes = b"", content_type: str = "application/json", headers=None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: dict) -> None:
        self._send(status, json.dumps(obj).encode())

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_POST(self):  # noqa: N802
        s = self.standin
        match = re.fullmatch(r"/api/v1/([\w.]+)/(\w+)", self.path.split("?")[0])
        raw = self._body()
        if not match:
            return self._json(404, {"code": 404, "message": f"no route {self.path}"})
        service, method = match.groups()
        s.requests.append(("POST", f"{service}/{method}", {}))
        if not s.authorized(self.headers.get("Authorization", ""), service):
            return self._json(401, {"code": 401, "message": "Unauthenticated"})
        failure = s._take_failure(method)
        if failure == "json":
            return self._json(200, {"code": 500, "message": f"Injected server error in {method}"})
        if failure:
            return self._send(500, b"Internal Server Error", "text/plain")
        try:
            body = json.loads(raw or b"{}")
            if service == OAUTH_SERVICE and method == "IntrospectToken":
                active = s.token is not None and body.get("token") == s.token
                return self._json(200, {"active": active, "username": s.username if active else ""})
            with s.lock:
                result = s.handle(service, method, body)
        except ApiError as err:
            return self._json(err.status, {"code": err.status, "message": str(err)})
        if isinstance(result, tuple):
            return self._send(result[0], b"", "text/plain", {"Location": result[1]})
        return self._json(200, result)

    def do_PUT(self):  # noqa: N802
        s = self.standin
        match = re.fullmatch(r"/upload/(\w+)", self.path)
        content = self._body()
        s.requests.append(("PUT", self.path, {}))
        if not match:
            return self._send(404, b"not found", "text/plain")
        if s.fail_uploads:
            return self._send(400, b"Injected upload failure", "text/plain")
        with s.lock:
            s.blobs[match.group(1)] = content
        return self._json(200, {})

    def do_GET(self):  # noqa: N802
        s = self.standin
        path = unquote(self.path.split("?")[0])
        s.requests.append(("GET", path, {k: self.headers[k] for k in ("Range", "If-Range") if k in self.headers}))
        if path == f"/files/{s.competition}.zip":
            return self._serve_file(s.zip_path())
        if path == f"/files/leaderboard/{s.competition}.zip":
            with s.lock:
                return self._send(200, s.leaderboard_zip(), "application/zip")
        if path == f"/files/single/{NOTE_FILE}":
            return self._send(200, NOTE_TEXT.encode(), "text/plain")
        if path.startswith("/files/single/"):
            name = Path(path).name
            if name not in {p.name for p in s.data_files()}:
                return self._send(404, b"not found", "text/plain")
            return self._serve_file(s.competition_dir / name)
        match = re.fullmatch(r"/kernel-output/([^/]+/[^/]+)/(.+)", path)
        if match and match.group(2) in s.kernel_outputs.get(match.group(1), {}):
            return self._send(200, s.kernel_outputs[match.group(1)][match.group(2)], "application/octet-stream")
        return self._send(404, b"not found", "text/plain")

    def _serve_file(self, path: Path) -> None:
        stat = path.stat()
        size = stat.st_size
        etag = f'"{int(stat.st_mtime_ns)}-{size}"'
        headers = {"Last-Modified": formatdate(stat.st_mtime, usegmt=True), "ETag": etag, "Accept-Ranges": "bytes"}
        start = 0
        rng = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if_range = self.headers.get("If-Range")
        if rng and (if_range is None or if_range == etag):
            start = int(rng.group(1))
            if start >= size:
                return self._send(416, b"", "text/plain", {"Content-Range": f"bytes */{size}"})
            headers["Content-Range"] = f"bytes {start}-{size - 1}/{size}"
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size - start))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        drop = self.standin.drop_download_after
        with open(path, "rb") as f:
            f.seek(start)
            if drop is not None:
                self.standin.drop_download_after = None
                self.wfile.write(f.read(drop))
                self.wfile.flush()
                self.close_connection = True
                return
            shutil.copyfileobj(f, self.wfile, 1 << 20)


# --- command ------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=8777, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--competition-dir", type=Path, default=None,
                        help="competition folder with test_truth.csv (default: --data)")
    parser.add_argument("--competition", default=survey.COMPETITION)
    parser.add_argument("--state-dir", type=Path, default=Path("build/kaggle-standin"))
    parser.add_argument("--username", default="kit-user")
    parser.add_argument("--key", default="kit-key", help="the key the stand-in accepts (a test value, not yours)")
    parser.add_argument("--daily-limit", type=int, default=5)
    parser.add_argument("--teams", type=int, default=250, help="invented teams on the leaderboard")
    parser.add_argument("--open", action="store_true",
                        help="an open competition: our best public score is ranked (default: closed, as the real one)")


def run(args: argparse.Namespace, config: Config) -> int:
    from kit.errors import KitError
    from kit.kaggle.client import ENDPOINT_ENV

    folder = Path(args.competition_dir or config.data_dir)
    if not (folder / survey.TEST_TRUTH).exists():
        raise KitError(f"{folder} has no {survey.TEST_TRUTH}: the stand-in scores against it; "
                       "use a simulated competition (`python -m kit simulate`)")
    server = StandinServer(folder, competition=args.competition, username=args.username, key=args.key,
                           daily_limit=args.daily_limit, state_dir=args.state_dir, port=args.port,
                           teams=args.teams, closed=not args.open).start()
    print(f"LOCAL STAND-IN of the Kaggle API (not Kaggle) at {server.url} for {args.competition} ({folder}); "
          "Ctrl-C stops it", flush=True)
    print(f"  export {ENDPOINT_ENV}={server.url} KAGGLE_USERNAME={args.username} KAGGLE_KEY=<--key>", flush=True)
    print("  then: python -m kit download / submit / submissions / leaderboard, or the kaggle CLI itself:", flush=True)
    print(f"  python -m kit kaggle-cli competitions leaderboard -c {args.competition} --show", flush=True)
    def _stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)  # `kill PID` (make demo) stops it as cleanly as Ctrl-C
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0
