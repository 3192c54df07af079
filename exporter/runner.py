"""One run of one report: submit (or resume), poll with backoff until COMPLETED, record the outcome."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from enum import Enum

from exporter.client import NCentralClient, ServerInfo, Sleep, interruptible_sleep
from exporter.config import ReportSettings
from exporter.errors import InternalError, NotSupported, ReportTimeout, Stopped, UpstreamError
from exporter.live_client import ClientFactory, CollectionRun, default_client
from exporter.report import COMPLETED, ReportData, request_body
from exporter.running_config import RunningConfig
from exporter.store import InFlight, ReportState, Store

log = logging.getLogger(__name__)

# After these the report may still be generating at N-central: the next run polls its id again.
_RESUMABLE = frozenset({"connection", "rate_limited", "http"})


class RunOutcome(Enum):
    """How one attempt at a report run ended; `Runner.run` decides by it what comes next."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"  # recorded as a failure with its reason
    SUPERSEDED = "superseded"  # a reload changed or removed the report's settings: nobody asks this any more
    CLIENT_REPLACED = "client_replaced"  # a reload changed the N-central settings and halted this client
    STOPPED = "stopped"  # shutdown (or a halt without a reload)


class _Interrupted(Exception):
    """Unwinds an attempt from deep in its calls to `_attempt`, which returns `outcome`; never leaves it."""

    def __init__(self, outcome: RunOutcome) -> None:
        super().__init__(outcome.value)
        self.outcome = outcome


class Runner(CollectionRun):
    def __init__(
        self,
        config: RunningConfig,
        store: Store,
        stop: threading.Event,
        *,
        client_factory: ClientFactory = default_client,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Sleep | None = None,
    ) -> None:
        """`config` is asked for the report's settings at each step; a swap that changes the N-central
        settings replaces the client at once and halts the old one's waits (see LiveClient)."""
        super().__init__(config, store, stop, client_factory=client_factory, wall=wall, monotonic=monotonic)
        self._given_sleep = sleep

    @property
    def server(self) -> ServerInfo | None:
        """What the current N-central said about itself at the last authentication."""
        return self._clients.server

    def _sleep(self, client: NCentralClient, seconds: float) -> None:
        if self._given_sleep is not None:
            self._given_sleep(seconds)
            return
        halt = self._clients.halt_of(client)
        if halt is None:  # a reload replaced the client meanwhile
            raise _Interrupted(RunOutcome.CLIENT_REPLACED)
        interruptible_sleep(halt)(seconds)

    def _current(self, name: str) -> tuple[ReportSettings | None, NCentralClient]:
        config, client = self._clients.current()
        return next((r for r in config.reports if r.name == name), None), client

    def run(self, name: str) -> bool:
        """Run report `name` once; True on success. Never raises for N-central's faults.

        A reload during the run starts it afresh with the new settings: at once when the filters change
        (the result would answer another question) or the N-central settings do (the old client is halted);
        after a failure when anything else of the report changed (the change may be the fix)."""
        while True:
            settings, client = self._current(name)
            if settings is None or self._stop.is_set():
                return False
            outcome = self._attempt(settings, client)
            if outcome is RunOutcome.SUPERSEDED:
                log.info("report settings changed during the run; starting it afresh", extra={"report": name})
            elif outcome is RunOutcome.CLIENT_REPLACED:
                log.info("N-central settings changed during the run; starting it afresh", extra={"report": name})
            elif outcome is RunOutcome.STOPPED:
                return False
            elif self._reloaded_meanwhile(name, settings, client, outcome):
                log.info("configuration reloaded during the run; running it again", extra={"report": name})
            else:
                return outcome is RunOutcome.SUCCEEDED

    def _reloaded_meanwhile(
        self, name: str, settings: ReportSettings, client: NCentralClient, outcome: RunOutcome
    ) -> bool:
        """Whether a finished run should run again at once: its client was replaced, or it failed and its
        settings changed since (never once the report is gone or the exporter stops)."""
        current, current_client = self._current(name)
        if current is None or self._stop.is_set():
            return False
        return current_client is not client or (outcome is RunOutcome.FAILED and current != settings)

    def _attempt(self, settings: ReportSettings, client: NCentralClient) -> RunOutcome:
        """One attempt at the run, recorded in the store unless a reload or shutdown cut it short."""
        name = settings.name
        started = self._monotonic()
        report_id: int | None = None
        try:
            try:
                report_id, submitted_at, deadline, resumed = self._submit_or_resume(settings, client)
                try:
                    data = self._poll_until_done(settings, client, report_id, deadline)
                except NotSupported:
                    if not resumed:
                        raise
                    # N-central forgot the stored id (restarted, or ids expire): that is no reason to fail.
                    log.info("N-central no longer knows the stored report id; submitting anew",
                             extra={"report": name, "report_id": report_id})
                    self._update(settings, lambda s: replace(s, in_flight=None), client)
                    report_id, submitted_at, deadline, _ = self._submit_or_resume(settings, client)
                    data = self._poll_until_done(settings, client, report_id, deadline)
                self._record_success(settings, client, data, report_id, self._wall() - submitted_at)
                return RunOutcome.SUCCEEDED
            except (Stopped, _Interrupted):
                raise
            except UpstreamError as exc:
                failure = exc
            except Exception as exc:  # a bug must not stop the schedule or lose the run's count
                log.exception("unexpected error in a report run", extra={"report": name})
                failure = InternalError(f"unexpected {type(exc).__name__} in the exporter (see the log)")
            # Recording the failure may be refused too (a reload meanwhile): hence inside the outer try.
            self._record_failure(settings, client, failure, report_id, self._monotonic() - started)
            return RunOutcome.FAILED
        except (Stopped, _Interrupted) as exc:
            if self._stop.is_set():
                log.info("report run interrupted by shutdown", extra={"report": name, "report_id": report_id})
                return RunOutcome.STOPPED
            if isinstance(exc, _Interrupted):
                return exc.outcome
            # The client's own wait was halted: by a reload that replaced it, or by `halt` alone.
            return RunOutcome.CLIENT_REPLACED if self._current(name)[1] is not client else RunOutcome.STOPPED

    def _update(
        self, settings: ReportSettings, change: Callable[[ReportState], ReportState], client: NCentralClient
    ) -> None:
        """Change the report's state, unless a reload changed or removed the report, or changed the server
        (the run's `client` talks to), meanwhile."""
        if not self._record(settings, client, change):
            raise _Interrupted(RunOutcome.SUPERSEDED)

    def _submit_or_resume(
        self, settings: ReportSettings, client: NCentralClient
    ) -> tuple[int, float, float, bool]:
        now_wall, now = self._wall(), self._monotonic()
        state = self._store.snapshot.get(settings.name)
        in_flight = state.in_flight if state is not None else None
        if in_flight is not None:
            age = now_wall - in_flight.submitted_at
            if 0 <= age < settings.timeout:
                log.info(
                    "resuming the report still in flight",
                    extra={"report": settings.name, "report_id": in_flight.report_id, "age_seconds": round(age, 1)},
                )
                return in_flight.report_id, in_flight.submitted_at, now + settings.timeout - age, True
        deadline = now + settings.timeout
        body = request_body(settings, dt.datetime.fromtimestamp(now_wall, dt.UTC).date())
        report_id = client.submit(body, deadline)
        submitted_at = self._wall()
        log.debug("report submitted", extra={"report": settings.name, "report_id": report_id})
        self._update(settings, lambda s: replace(s, in_flight=InFlight(report_id, submitted_at)), client)
        return report_id, submitted_at, deadline, False

    def _poll_until_done(
        self, settings: ReportSettings, client: NCentralClient, report_id: int, deadline: float
    ) -> ReportData:
        delay = settings.poll_interval
        while True:
            remaining = deadline - self._monotonic()
            if remaining <= 0:
                raise ReportTimeout(
                    f"report still IN_PROGRESS after the {settings.timeout:g}s timeout", report_id=report_id
                )
            self._sleep(client, min(delay, remaining))
            current, current_client = self._current(settings.name)
            if current is None or current.fingerprint != settings.fingerprint:
                raise _Interrupted(RunOutcome.SUPERSEDED)
            if current_client is not client:
                raise _Interrupted(RunOutcome.CLIENT_REPLACED)
            result = client.poll(report_id, deadline)
            if result.status == COMPLETED and result.data is not None:
                return result.data
            delay = min(delay * 2, settings.poll_max_interval)

    def _record_success(
        self, settings: ReportSettings, client: NCentralClient, data: ReportData, report_id: int, duration: float
    ) -> None:
        now = self._wall()

        def change(state: ReportState) -> ReportState:
            return replace(
                state, data=data, last_success_time=now, last_duration=duration, last_run_success=True,
                last_run_time=now, last_reason=None, last_error=None, runs_total=state.runs_total + 1,
                in_flight=None,
            )

        self._update(settings, change, client)
        log.info(
            "report run succeeded",
            extra={
                "report": settings.name, "result": "success", "duration_seconds": round(duration, 3),
                "report_id": report_id, "device_classes": len(data.device_classes),
            },
        )

    def _record_failure(
        self, settings: ReportSettings, client: NCentralClient, exc: UpstreamError, report_id: int | None,
        duration: float,
    ) -> None:
        now = self._wall()
        report_id = exc.report_id if exc.report_id is not None else report_id

        def change(state: ReportState) -> ReportState:
            return replace(
                state, last_run_success=False, last_run_time=now, last_reason=exc.reason,
                last_error=exc.message, runs_total=state.runs_total + 1, failures=state.with_failure(exc.reason),
                in_flight=state.in_flight if exc.reason in _RESUMABLE else None,
            )

        self._update(settings, change, client)
        log.warning(
            "report run failed",
            extra={
                "report": settings.name, "result": "failure", "reason": exc.reason,
                "status": exc.status if exc.status is not None else "none",
                "report_id": report_id if report_id is not None else "none",
                "duration_seconds": round(duration, 3), "error": exc.message,
            },
        )
