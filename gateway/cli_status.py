"""``gateway status``: migration progress of a running gateway, on one screen or as JSON.

::

    export GW_ADMIN_TOKEN=...                # or GW_ADMIN_API_KEY, or --token/--api-key
    gateway status                           # the server of gateway.toml's [server] host/port
    gateway status --url https://gw.example.com --json      # for a CI badge

It asks the live server (``GET /_gateway/api/status``, admin-only) rather than reading the
config: the share of requests served by the new side exists only in the running workers'
metrics, and the route states are the flags in force, kill switch included. The server
computes both with the code that feeds the dashboard (``gateway.dashboard.overview``), so the
two never disagree. Exit status: 0, or 1 when the server cannot be reached or refuses.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gateway.settings import CONFIG_ENV, DEFAULT_CONFIG, Settings, load_settings

if TYPE_CHECKING:
    # Imported when the command runs: `gateway --help` and `gateway serve` build its parser.
    import httpx

# Not GATEWAY_*: every GATEWAY_* variable is a config override, and an unknown one an error.
TOKEN_ENV = "GW_ADMIN_TOKEN"  # noqa: S105 - the name of a variable, not a secret
API_KEY_ENV = "GW_ADMIN_API_KEY"
STATUS_PATH = "/_gateway/api/status"
EXIT_UNREACHABLE = 1
_STATE_NAMES = {"legacy": "legacy only"}
_WINDOW_NAMES = {"5m": "last 5 min", "1h": "last hour", "24h": "last 24 h"}
_BAR = 30


def register(commands: Any) -> None:
    """Add ``status`` to the ``gateway`` command's subparsers."""
    status = commands.add_parser(
        "status",
        help="migration progress of the running gateway: routes per state, new side's share",
        description="Migration progress of the running gateway: routes per state and the "
        "share of requests the new side served over the last 5 minutes, hour and day. "
        f"Credentials: --token or ${TOKEN_ENV} (a bearer token), --api-key or ${API_KEY_ENV}, "
        "of a user with an admin role.",
    )
    status.add_argument(
        "--config",
        "-c",
        metavar="PATH",
        help=f"config file (default: ${CONFIG_ENV} or "
        f"{DEFAULT_CONFIG}); gives the default --url and the API key header",
    )
    status.add_argument("--url", help="the gateway's base URL (default: server.host/port)")
    status.add_argument("--token", help=f"admin bearer token (default: ${TOKEN_ENV})")
    status.add_argument("--api-key", help=f"admin API key (default: ${API_KEY_ENV})")
    status.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    status.add_argument("--json", action="store_true", help="print JSON (for a CI badge)")
    status.set_defaults(handler=run_status)


def run_status(args: argparse.Namespace) -> int:
    return show_status(args, load_settings(args.config, os.environ), os.environ)


def show_status(args: argparse.Namespace, settings: Settings, env: Mapping[str, str]) -> int:
    import httpx

    url = (args.url or default_url(settings)).rstrip("/")
    headers = credentials(args, settings, env)
    try:
        response = httpx.get(url + STATUS_PATH, headers=headers, timeout=args.timeout)
    except httpx.HTTPError as exc:
        print(f"gateway status: cannot reach {url}: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    if response.status_code != 200:
        print(f"gateway status: {url} answered {_problem(response)}", file=sys.stderr)
        return EXIT_UNREACHABLE
    status = response.json()
    if args.json:
        print(json.dumps({"url": url, **status}, indent=2))
    else:
        print(render_status(url, status))
    return 0


def default_url(settings: Settings) -> str:
    host = settings.server.host
    # A wildcard bind address is not where to connect: its loopback is.
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://{f'[{host}]' if ':' in host else host}:{settings.server.port}"


def credentials(
    args: argparse.Namespace, settings: Settings, env: Mapping[str, str]
) -> dict[str, str]:
    token = args.token or env.get(TOKEN_ENV)
    if token:
        return {"Authorization": f"Bearer {token}"}
    key = args.api_key or env.get(API_KEY_ENV)
    if key:
        api_keys = settings.auth.api_keys
        return {api_keys.header if api_keys is not None else "X-API-Key": key}
    return {}


def _problem(response: httpx.Response) -> str:
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.reason_phrase
    hint = ""
    if response.status_code == 401:
        hint = f" (give an admin's --token/${TOKEN_ENV} or --api-key/${API_KEY_ENV})"
    return f"{response.status_code}: {message}{hint}"


def render_status(url: str, status: Mapping[str, Any]) -> str:
    """The one screen: routes per state as bars, then the new side's share per window."""
    from gateway.dashboard.overview import STATES

    total = status["routes"]
    lines = [f"gateway {url}: {total} routes"]
    if status["kill_switch"]:
        lines.append("KILL SWITCH ON: every flagged route is served by legacy")
    for state in STATES:
        count = status["states"].get(state, 0)
        filled = round(_BAR * count / total) if total else 0
        bar = "#" * filled + "." * (_BAR - filled)
        lines.append(f"  {_STATE_NAMES.get(state, state):<12} {count:>4}  {bar}")
    lines.append("requests served by the new side:")
    for name, window in status["windows"].items():
        share = window["share_new"]
        shown = "-" if share is None else f"{share:.1%}"
        lines.append(
            f"  {_WINDOW_NAMES.get(name, name):<12} {shown:>6}  of {window['requests']} requests"
            + (f" (history covers {_duration(window['span'])})" if _short(name, window) else "")
        )
    return "\n".join(lines)


_WINDOW_SECONDS = {"5m": 300, "1h": 3600, "24h": 86400}


def _short(name: str, window: Mapping[str, Any]) -> bool:
    """The server has not been up for the whole window (a new worker's history is younger)."""
    return float(window["span"]) < _WINDOW_SECONDS.get(name, 0) * 0.95


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
