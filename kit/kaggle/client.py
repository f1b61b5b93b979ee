"""The one place that builds an authenticated :class:`KaggleApi` and turns its failures into clear errors.

The official client is imported lazily (``import kaggle`` authenticates and prints at import time).
Credentials go through the client's own mechanisms, in its order: ``KAGGLE_API_TOKEN``,
``kaggle.json`` (in ``KAGGLE_CONFIG_DIR`` or ``~/.kaggle``) overlaid by ``KAGGLE_USERNAME`` /
``KAGGLE_KEY``, then ``~/.kaggle/credentials.json``. The kit never prints a key.

Off by default: ``KIT_KAGGLE_ENDPOINT=http://127.0.0.1:PORT`` sends every call to that server
instead of api.kaggle.com (the stand-in server of :mod:`kit.standin.server`, for tests and demos).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import io
import logging
import os
import sys
import types
from collections.abc import Iterator

from kit.errors import KitError

ENDPOINT_ENV = "KIT_KAGGLE_ENDPOINT"
log = logging.getLogger(__name__)

CREDENTIALS_HELP = (
    "no Kaggle credentials found. Give the kaggle client one of:\n"
    "  1. an API token: export KAGGLE_API_TOKEN=<token or path to a file holding it>\n"
    "  2. a legacy key: ~/.kaggle/kaggle.json (or $KAGGLE_CONFIG_DIR/kaggle.json) with "
    '{"username": ..., "key": ...}, chmod 600; or export KAGGLE_USERNAME and KAGGLE_KEY\n'
    "  3. OAuth credentials: ~/.kaggle/credentials.json (written by `kaggle auth login`)\n"
    "Create a token at https://www.kaggle.com/settings (API section)."
)


def endpoint() -> str | None:
    """The non-production endpoint from ``KIT_KAGGLE_ENDPOINT``, or None for api.kaggle.com."""
    value = os.environ.get(ENDPOINT_ENV, "").strip().rstrip("/")
    return value or None


def _config_dir() -> str:
    """Where the client looks for kaggle.json, resolved now (the client resolves it once, at import)."""
    configured = os.environ.get("KAGGLE_CONFIG_DIR")
    if configured:
        return configured
    home = os.path.join(os.path.expanduser("~"), ".kaggle")
    xdg = os.path.join(os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config"), "kaggle")
    return xdg if not os.path.exists(home) and os.path.exists(xdg) else home


def _import_client_quietly() -> None:
    """Make ``kaggle`` importable without running its ``__init__``, which authenticates at import time.

    That import-time login prints a banner, may call the production API, and ignores
    ``KIT_KAGGLE_ENDPOINT``; the kit authenticates explicitly in :func:`authenticated_api` instead.
    """
    if "kaggle" in sys.modules:
        return
    spec = importlib.util.find_spec("kaggle")
    if spec is None or not spec.submodule_search_locations:
        raise KitError("the kaggle client is not installed: pip install kaggle (see pyproject.toml)")
    package = types.ModuleType("kaggle")
    package.__path__ = list(spec.submodule_search_locations)
    package.__version__ = importlib.metadata.version("kaggle")
    sys.modules["kaggle"] = package


def _api_class():
    _import_client_quietly()
    from kaggle.api.kaggle_api_extended import KaggleApi
    from kagglesdk import KaggleClient, KaggleEnv

    class KitKaggleApi(KaggleApi):
        """KaggleApi whose HTTP client talks to ``KIT_KAGGLE_ENDPOINT`` when that is set."""

        def build_kaggle_client(self):
            target = endpoint()
            if target is None:
                return super().build_kaggle_client()
            client = KaggleClient(
                env=KaggleEnv.LOCAL,  # LOCAL puts calls under {endpoint}/api/v1/, like every non-production host
                username=self.config_values.get(self.CONFIG_NAME_USER),
                password=self.config_values.get(self.CONFIG_NAME_KEY),
                api_token=self.config_values.get(self.CONFIG_NAME_TOKEN),
                response_processor=self.get_response_processor(),
            )
            client.http_client()._endpoint = target
            return client

    return KitKaggleApi


def authenticated_api():
    """An authenticated KaggleApi; :class:`KitError` with the three ways to authenticate if none works."""
    api = _api_class()()
    api.config_dir = _config_dir()
    api.config = os.path.join(api.config_dir, api.config_file)
    said = io.StringIO()
    try:
        with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said):  # the client's own help banner
            api.authenticate()
    except SystemExit:
        raise KitError(CREDENTIALS_HELP) from None
    except Exception as err:  # the token check is a network call
        raise translate(err, "authenticating with Kaggle") from None
    for line in said.getvalue().splitlines():
        if line.startswith("Warning"):  # e.g. kaggle.json readable by others; names the file, not the key
            log.warning("kaggle: %s", line)
    target = endpoint()
    if target:
        log.info("kaggle: using the endpoint %s (from %s)", target, ENDPOINT_ENV)
    return api


def username(api) -> str:
    return api.config_values.get(api.CONFIG_NAME_USER) or ""


def translate(err: Exception, action: str) -> KitError:
    """A KitError naming what failed, from an exception of the client or of requests."""
    import requests

    if isinstance(err, KitError):
        return err
    if isinstance(err, requests.HTTPError):
        response = err.response
        status = response.status_code if response is not None else None
        detail = str(err)
        if status in (401, 403):
            return KitError(
                f"{action}: Kaggle refused the credentials (HTTP {status}). Check KAGGLE_USERNAME/KAGGLE_KEY, "
                "kaggle.json or KAGGLE_API_TOKEN (a key regenerated on kaggle.com invalidates the old one), "
                "and that you accepted the competition's rules on its Kaggle page."
            )
        if status == 404:
            return KitError(
                f"{action}: not found on Kaggle (HTTP 404): {detail}. Check the competition or kernel name."
            )
        if status == 429:
            return KitError(f"{action}: Kaggle rate-limited the request (HTTP 429); wait a little and retry.")
        return KitError(
            f"{action}: Kaggle answered HTTP {status}: {detail}. Retry later; the command is safe to rerun."
        )
    if isinstance(err, requests.ConnectionError | requests.Timeout):
        where = endpoint() or "api.kaggle.com"
        return KitError(f"{action}: cannot reach {where} ({type(err).__name__}); check the network and retry.")
    if isinstance(err, ValueError):
        return KitError(f"{action}: {err}")
    return KitError(f"{action}: {type(err).__name__}: {err}")


@contextlib.contextmanager
def kaggle_errors(action: str) -> Iterator[None]:
    """Turn the client's and requests' exceptions inside the block into one :class:`KitError`."""
    import requests

    try:
        yield
    except (requests.RequestException, ValueError, OSError) as err:
        raise translate(err, action) from None
