"""`--check-connection`: the set-up checked step by step against N-central, one line per step.

The steps run in the order a new user's mistakes show: the URL answers (`/api/health`), the JWT
authenticates, the server is 2025.4 or later (the patch reports API), the access token validates. A step
that fails says what to do; the steps after it are skipped. No report is ever submitted.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TextIO

from exporter.client import MIN_SERVER_RELEASE, NCentralClient
from exporter.config import TOKEN_ENV, NCentralSettings
from exporter.errors import AuthFailed, ConnectionFailed, Forbidden, InvalidResponse, NotSupported, UpstreamError
from exporter.scrub import scrub

_JWT_HELP = (
    "generate a new JWT in N-central (Administration > User Management > Users > the API user > API Access > "
    f"Generate JSON Web Token) and put it in ncentral.api_token_file, ncentral.api_token or {TOKEN_ENV}; "
    "the API user must have multi-factor authentication turned off"
)


@dataclass(frozen=True)
class Step:
    name: str
    ok: bool | None  # None: skipped because an earlier step failed
    detail: str
    advice: str = ""

    def line(self) -> str:
        status = {True: "ok  ", False: "FAIL", None: "skip"}[self.ok]
        text = f"{status}  {self.name}: {self.detail}"
        return f"{text}; to fix: {self.advice}" if self.advice else text


def _url_advice(settings: NCentralSettings, exc: UpstreamError) -> str:
    if isinstance(exc, ConnectionFailed) and "TLS error" in exc.message:
        return ("the server's certificate is not trusted: set ncentral.ca_bundle to your CA's certificate "
                "(or, for a test server only, ncentral.verify_tls: false)")
    if isinstance(exc, ConnectionFailed):
        return "check ncentral.url (host and port), DNS, firewalls and proxies between here and N-central"
    return (f"ncentral.url ({settings.url}) must be the N-central server's base URL, e.g. "
            "https://ncentral.example.com, the address of its web UI without a path")


def _steps(client: NCentralClient, settings: NCentralSettings, deadline: Callable[[], float]) -> list[Step]:
    steps: list[Step] = []
    url = f"{settings.url}/api/health"
    try:
        answer = client.health(deadline())
    except UpstreamError as exc:
        return [Step("URL answers", False, exc.message, _url_advice(settings, exc))]
    if "currentTime" not in answer:
        return [Step("URL answers", False, f"GET {url} answered JSON without currentTime: not N-central's API",
                     _url_advice(settings, InvalidResponse("")))]
    steps.append(Step("URL answers", True, f"GET {url} answered (server time {answer['currentTime']})"))

    try:
        server = client.authenticate(deadline())
    except AuthFailed as exc:
        return [*steps, Step("JWT authenticates", False, exc.message.split(":", 1)[0], _JWT_HELP)]
    except UpstreamError as exc:
        return [*steps, Step("JWT authenticates", False, exc.message, _url_advice(settings, exc))]
    steps.append(Step("JWT authenticates", True, "POST /api/auth/authenticate issued access and refresh tokens"))

    version = server.version
    api = f" (API service {server.api_version})" if server.api_version else ""
    supported = server.supported
    if supported is None:
        return [*steps, Step(
            "server version", False,
            f"cannot read the N-central version from GET /api/server-info/extra (got {version or 'nothing'})",
            "give the API user the permission to read server information, or check the version in the UI "
            f"(Help > About); the patch reports API needs N-central {MIN_SERVER_RELEASE} or later",
        )]
    if not supported:
        return [*steps, Step(
            "server version", False, f"N-central {version}{api} has no patch reports API",
            f"upgrade N-central to {MIN_SERVER_RELEASE} or later",
        )]
    steps.append(Step("server version", True, f"N-central {version}{api}, {MIN_SERVER_RELEASE} or later"))

    try:
        message = client.validate(deadline())
    except (AuthFailed, Forbidden, NotSupported) as exc:
        return [*steps, Step(
            "access token validates", False, exc.message,
            "N-central does not accept the tokens it issued: check the clocks of N-central and this host, and "
            "that the API user is enabled and has API access",
        )]
    except UpstreamError as exc:
        return [*steps, Step("access token validates", False, exc.message, "retry; if it persists, see the log")]
    steps.append(Step("access token validates", True, f"GET /api/auth/validate: {message or 'valid'}"))
    return steps


STEP_NAMES = ("URL answers", "JWT authenticates", "server version", "access token validates")


def check_connection(settings: NCentralSettings, out: TextIO | None = None) -> int:
    """Print one line per step; 0 when all hold, 1 otherwise."""
    out = out or sys.stdout
    # One attempt per call: a diagnosis should answer in seconds, not after the run's backoff.
    settings = replace(settings, retries=0)
    client = NCentralClient(settings, log_server=False)  # the "server version" step says it
    timeout = settings.request_timeout * 3
    try:
        steps = _steps(client, settings, lambda: time.monotonic() + timeout)
    finally:
        client.close()
    done = {step.name for step in steps}
    steps += [Step(name, None, "needs the steps above") for name in STEP_NAMES if name not in done]
    for step in steps:
        # Its details quote N-central's own text (server time, versions, validate's message): scrubbed.
        print(scrub(step.line()), file=out, flush=True)
    return 0 if all(step.ok for step in steps) else 1
