"""The one place that builds an authenticated :class:`KaggleApi` and turns its failures into clear errors.

The official client is imported lazily (``import kaggle`` authenticates and prints at import time).
Credentials go through the client's own mechanisms, in its order: ``KAGGLE_API_TOKEN``,
``kaggle.json`` (in ``KAGGLE_CONFIG_DIR`` or ``~/.kaggle``) overlaid by ``KAGGLE_USERNAME`` /
``KAGGLE_KEY``, then ``~/.kaggle/credentials.json``. The kit never prints a key.

Off by default: ``KIT_KAGGLE_ENDPOINT=http://127.0.0.1:PORT`` sends every call to that server
instead of api.kaggle.com (the stand-in server of :mod:`kit.standin.server`, for tests and demos).
This module is the only place that reads it: the kit's commands, their ledger rows and labels, and
the wrapped ``kaggle`` CLI (``python -m kit kaggle-cli ...``) all ask :func:`endpoint`.
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
from collections.abc import Callable, Iterator

from kit.errors import KitError

ENDPOINT_ENV = "KIT_KAGGLE_ENDPOINT"
PRODUCTION = "https://api.kaggle.com"
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


def endpoint_name() -> str:
    """The endpoint every call goes to, as recorded in the ledger: :data:`PRODUCTION` or the stand-in's URL."""
    return endpoint() or PRODUCTION


def is_standin() -> bool:
    return endpoint() is not None


def server_name() -> str:
    """Who answers, for messages: "Kaggle" or "the local stand-in"."""
    return "the local stand-in" if is_standin() else "Kaggle"


def source_label() -> str:
    """One line saying where the data shown come from; unmistakable when it is not Kaggle."""
    target = endpoint()
    if target is None:
        return f"source: Kaggle ({PRODUCTION})"
    return (f"source: LOCAL STAND-IN at {target} ({ENDPOINT_ENV}), NOT Kaggle: "
            "its scores are on its own truth file and its teams are invented")


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


def new_api():
    """A KaggleApi, not yet authenticated, bound to :func:`endpoint` and to the config dir as it is now."""
    api = _api_class()()
    api.config_dir = _config_dir()
    api.config = os.path.join(api.config_dir, api.config_file)
    return api


def authenticated_api():
    """An authenticated KaggleApi; :class:`KitError` with the three ways to authenticate if none works."""
    api = new_api()
    said = io.StringIO()
    try:
        with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said):  # the client's own help banner
            api.authenticate()
    except SystemExit:
        refused = _refused_token(api)
        raise KitError(refused or CREDENTIALS_HELP) from None
    except Exception as err:  # the token check is a network call
        raise translate(err, "authenticating with Kaggle") from None
    refused = _refused_token(api)
    if refused:  # the client fell back to kaggle.json, yet its HTTP layer would still send the refused token
        raise KitError(refused)
    for line in said.getvalue().splitlines():
        if line.startswith("Warning"):  # e.g. kaggle.json readable by others; names the file, not the key
            log.warning("kaggle: %s", line)
    target = endpoint()
    if target:
        log.info("kaggle: using the endpoint %s (from %s)", target, ENDPOINT_ENV)
    return api


def _refused_token(api) -> str | None:
    """The message for an API token that the token check refused (None when no token was refused).

    The client checks ``KAGGLE_API_TOKEN`` (or ``~/.kaggle/access_token``) with ``IntrospectToken``
    and, when it is not active, silently tries the other credentials; with none it would say that no
    credentials exist, which misleads. A token in use is kept in ``config_values``; one found but not
    kept was refused.
    """
    from kagglesdk import get_access_token_from_env

    token, source = get_access_token_from_env()
    if not token or api.config_values.get(api.CONFIG_NAME_TOKEN):
        return None
    where = {"access_token": "~/.kaggle/access_token"}.get(source, source)
    return (
        f"{server_name()} refused the API token from {where}: the token check says it is not active "
        "(mistyped, expired or revoked). Create a new token at https://www.kaggle.com/settings (API section) "
        f"and put it in {where}, or remove it to use kaggle.json; while it is set, the client sends it with "
        "every call."
    )


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
                f"{action}: {server_name()} refused the credentials (HTTP {status}). Check KAGGLE_USERNAME/KAGGLE_KEY, "
                "kaggle.json or KAGGLE_API_TOKEN (a key regenerated on kaggle.com invalidates the old one), "
                "and that you accepted the competition's rules on its Kaggle page."
            )
        if status == 404:
            return KitError(
                f"{action}: not found on {server_name()} (HTTP 404): {detail}. Check the competition or kernel name."
            )
        if status == 429:
            return KitError(f"{action}: {server_name()} rate-limited the request (HTTP 429); wait a little and retry.")
        return KitError(
            f"{action}: {server_name()} answered HTTP {status}: {detail}. Retry later; the command is safe to rerun."
        )
    if isinstance(err, requests.ConnectionError | requests.Timeout):
        where = endpoint() or "api.kaggle.com"
        return KitError(f"{action}: cannot reach {where} ({type(err).__name__}); check the network and retry.")
    if isinstance(err, ValueError):
        return KitError(f"{action}: {err}")
    return KitError(f"{action}: {type(err).__name__}: {err}")


def all_pages(fetch: Callable[[str], tuple[list, str]], max_pages: int = 1000) -> list:
    """Every item of a paged call: ``fetch(page_token) -> (items, next_page_token)``, from token "" on."""
    items, token, seen = [], "", set()
    for _ in range(max_pages):
        page, token = fetch(token)
        items.extend(page or [])
        if not token or token in seen:
            return items
        seen.add(token)
    raise KitError(f"more than {max_pages} pages: stopped reading (the server keeps answering with a next page)")


@contextlib.contextmanager
def kaggle_errors(action: str) -> Iterator[None]:
    """Turn the client's and requests' exceptions inside the block into one :class:`KitError`."""
    import requests

    try:
        yield
    except (requests.RequestException, ValueError, OSError) as err:
        raise translate(err, action) from None
