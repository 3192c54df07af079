"""The faults the simulator produces on demand, and what each one answers.

Error statuses, 429 with or without Retry-After, HTML pages, garbage, truncated or oversized bodies,
wrong types, connection resets, slow answers; and hostile ones: a body that drips in a byte
at a time, headers that drip in a byte at a time after the status line, a malformed Content-Length,
report ids out of range, an error page (or server-info's version, or validate's message) quoting the
credentials it was sent. (Reports that fail, abort or
never end are outcomes, not faults: see `Simulator.set_outcome`.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from exporter.simulator import api
from exporter.simulator.data import FIRST_REPORT_ID

FAULTS = (
    "400", "401", "403", "404", "429", "500", "502", "503", "html", "garbage", "truncated", "error_body",
    "wrong_types", "negative", "not_integer", "no_report_id", "huge", "reset", "slow", "bad_tokens",
    "invalid_fields",
    # Hostile answers: a body that drips in, odd header values, ids out of range, an echoed token.
    "drip", "bad_length", "bad_report_id", "echo_token",
    # The status line, then the headers a byte at a time.
    "drip_headers",
)


@dataclass
class Fault:
    kind: str
    endpoint: str  # one of ENDPOINTS, or "any"
    remaining: int | None  # None: until cleared
    retry_after: str | None = None
    delay: float = 5.0
    value: str | None = None  # the header value of `bad_length`, the id of `bad_report_id`, the `bad_tokens`


_LOGIN_PAGE = (
    b"<!DOCTYPE html><html><head><title>N-central - Login</title></head>"
    b"<body><form action=\"/login\"><input name=\"user\"></form></body></html>"
)


def reply(fault: Fault, request: api.RecordedRequest) -> api.Reply:
    """What `request` gets instead of its answer."""
    kind = fault.kind
    if kind.isdigit():
        status = int(kind)
        headers = {"Retry-After": fault.retry_after} if status == 429 and fault.retry_after else None
        return api.error(status, "simulated fault", headers)
    match kind:
        case "invalid_fields":  # the OpenAPI description's own example of a validation failure
            return api.validation_error([
                ("installStatuses", "Invalid Install Status Values ['INVALID']"),
                ("startDate", "startDate must be in the format YYYY-MM-DD"),
            ])
        case "html":
            return api.Answer(200, _LOGIN_PAGE, "text/html; charset=utf-8")
        case "garbage":
            return api.Answer(200, b"\x00\x9c garbage }{ not json")
        case "truncated":
            return api.Answer(200, b'{"reportId": 575523, "reportStatus": "COMPL')
        case "error_body":
            return api.json_answer(200, api.error_document(500, "Unexpected error"))
        case "wrong_types" | "negative" | "not_integer" | "no_report_id":
            return api.json_answer(200, _malformed(kind))
        case "bad_tokens":
            pair = {"token": fault.value or "line-one\nline-two-of-a-token", "type": "Bearer", "expirySeconds": 3600}
            return api.json_answer(200, {"tokens": {"access": pair, "refresh": {**pair, "type": "Body"}}})
        case "huge":
            return api.Answer(200, b'{"padding": "' + b"x" * (4 * 2**20) + b'"}')
        case "reset":
            return api.Reset()
        case "slow":
            return api.Stall(fault.delay)
        case "drip":
            return api.Drip(100000, fault.delay)
        case "drip_headers":
            return api.DripHeaders(60000, fault.delay)
        case "bad_length":
            # A malformed Content-Length (e.g. "²" or 5,000 digits); the body's end is the connection's.
            body = json.dumps({"reportId": FIRST_REPORT_ID, "reportStatus": "IN_PROGRESS"}).encode()
            return api.Answer(200, body, content_length=fault.value or "\u00b2", close=True)
        case "bad_report_id":
            report_id = int(fault.value or "-1")
            document = {"reportId": report_id, "reportStatus": "IN_PROGRESS", "message": "queued", "data": None}
            return api.json_answer(200, document)
        case "echo_token":  # an error page quoting the credentials it was sent (JSON-escaped, as a server would)
            sent = request.header("Authorization") or request.body.decode("utf-8", "replace")
            token = sent.removeprefix("Bearer ")
            # Or, where N-central answers text of its own, that text quoting them in a 200.
            if request.endpoint == "server_info":
                return api.json_answer(200, {"version": token, "jvmVersion": "17.0.9", "ncentral": None})
            if request.endpoint == "validate":
                return api.json_answer(200, {"message": f"The token {token} is valid."})
            return api.error(500, f"could not process credentials {sent}")
    raise ValueError(f"fault must be one of {FAULTS}")


def _malformed(kind: str) -> dict[str, Any]:
    counts: dict[str, Any] = {"noApproval": 10, "approvedForInstall": 5}
    if kind == "wrong_types":
        return {"reportId": "575523", "reportStatus": "COMPLETED", "data": {"deviceClassSummaries": "many"}}
    if kind == "negative":
        counts["declined"] = -4
    if kind == "not_integer":
        counts["declined"] = 2.5
    if kind == "no_report_id":
        return {"reportStatus": "IN_PROGRESS", "message": "Report queued"}
    summary = {"deviceClass": "Laptops - Windows", "approvalStatusCounts": counts}
    return {
        "reportId": FIRST_REPORT_ID, "reportStatus": "COMPLETED", "message": "ok",
        "data": {"deviceClassSummaries": [summary]},
    }
