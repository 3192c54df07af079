"""APScheduler wiring: one interval job per collection, the first run at once, and one worker per collection
kind: a kind's collections run one at a time, beside other kinds'.

A run asked for at once (at start, or by a reload) while the collection's previous run is still ending is
not lost: APScheduler skips a job whose instance is running, so the run under way runs again when it ends,
unless it recorded something after the ask (a run that a reload interrupts starts again with the new
settings itself; running it once more would ask N-central twice)."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from apscheduler.events import EVENT_JOB_MAX_INSTANCES
from apscheduler.executors.pool import BasePoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler

from exporter.workers import DaemonPool

log = logging.getLogger(__name__)


class Scheduled(Protocol):
    """A collection with a schedule: its settings, of whatever kind."""

    @property
    def name(self) -> str: ...

    @property
    def interval(self) -> float: ...

    @property
    def kind(self) -> str: ...


class _RunExecutor(BasePoolExecutor):  # type: ignore[misc]  # APScheduler 3 has no type hints
    """APScheduler's thread pool executor, on daemon threads (see exporter.workers)."""

    def __init__(self, pool: DaemonPool) -> None:
        super().__init__(pool)


RETRY = 0.05  # seconds before a run asked for at once is submitted again when APScheduler still counted the last


class Scheduler:
    def __init__(
        self, run: Callable[[str], object], collections: Callable[[], Iterable[Scheduled]],
        recorded: Callable[[str], object] = lambda name: None,
    ) -> None:
        """`collections` is asked for what to schedule, each time: the running config owns it. `recorded(name)`
        is what the collection's runs last recorded (its stored state, which every record replaces)."""
        self._run = run
        self._collections = collections
        self._recorded = recorded
        self._lock = threading.Lock()
        self._asked: dict[str, object] = {}  # runs asked for at once, not started yet: what was recorded then
        self._active: set[str] = set()  # collections whose job is running
        # One worker per kind of collection: N-central limits concurrent requests per endpoint, so the reports
        # of one exporter run one at a time; another kind, on other endpoints, runs on its own worker, so a
        # long customer scan never holds a report back. A job runs on its kind's worker only, once at a time.
        self._workers: dict[str, DaemonPool] = {}
        self._scheduler = BackgroundScheduler(
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=dt.UTC,
        )
        self._scheduler.add_listener(self._skipped, EVENT_JOB_MAX_INSTANCES)

    def start(self) -> None:
        self.schedule(fresh=())
        self._scheduler.start()

    def schedule(self, fresh: Iterable[str]) -> None:
        """(Re)schedule jobs: new, changed and `fresh` collections run at once; removed ones go."""
        wanted = {collection.name: collection for collection in self._collections()}
        restart = set(fresh)
        # What is scheduled is asked of APScheduler's jobs themselves, not of a copy kept beside them.
        scheduled = {job.id: (job.trigger.interval, job.executor) for job in self._scheduler.get_jobs()}
        for name in scheduled:
            if name not in wanted:
                self._scheduler.remove_job(name)
        now = dt.datetime.now(dt.UTC)
        for name, collection in wanted.items():
            executor = self._executor(collection)
            if scheduled.get(name) == (dt.timedelta(seconds=collection.interval), executor) and name not in restart:
                continue
            with self._lock:
                self._asked[name] = self._recorded(name)
            self._scheduler.add_job(
                self._job, "interval", seconds=collection.interval, id=name, name=f"{collection.kind} {name}",
                args=[name],
                next_run_time=now, replace_existing=True, executor=executor,
            )

    def _job(self, name: str) -> None:
        """One scheduled run, and one more if a run was asked for at once meanwhile and nothing has been
        recorded since the ask (the ask came as this run was ending, and APScheduler skipped it)."""
        with self._lock:
            self._active.add(name)
        try:
            while True:
                with self._lock:
                    self._asked.pop(name, None)
                self._run(name)
                with self._lock:
                    if name not in self._asked or self._recorded(name) is not self._asked.pop(name):
                        self._active.discard(name)  # with the check: an ask after it is APScheduler's again
                        return
                self._postpone(name)  # this is the run asked for: APScheduler's, if still due, would be a second
                log.info("a run was asked for as this one ended; running it again", extra={"collection": name})
        finally:
            with self._lock:
                self._active.discard(name)

    def _postpone(self, name: str) -> None:
        """The collection's next run an interval from now."""
        job = self._scheduler.get_job(name)
        if job is not None:
            with contextlib.suppress(JobLookupError):  # removed by a reload meanwhile
                job.modify(next_run_time=dt.datetime.now(dt.UTC) + job.trigger.interval)

    def _skipped(self, event: Any) -> None:
        """APScheduler skipped a run because the collection's job was running. If that run was asked for at
        once and the job has ended since (APScheduler counts it a moment longer), submit it again shortly; if
        the job is still running, it runs again itself (see `_job`)."""
        with self._lock:
            if event.job_id in self._active or event.job_id not in self._asked:
                return
        due = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=RETRY)
        with contextlib.suppress(JobLookupError):  # removed by a reload meanwhile
            self._scheduler.modify_job(event.job_id, next_run_time=due)

    def _executor(self, collection: Scheduled) -> str:
        """The worker a collection runs on: its kind's."""
        kind = collection.kind
        if kind not in self._workers:
            self._workers[kind] = DaemonPool(1, f"{kind}-run")
            self._scheduler.add_executor(_RunExecutor(self._workers[kind]), kind)
        return kind

    def next_runs(self) -> dict[str, dt.datetime | None]:
        return {job.id: job.next_run_time for job in self._scheduler.get_jobs()}

    def shutdown(self) -> None:
        """Start no more runs; the one under way goes on (see `join`)."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)  # shuts its executors' pools down too
        for workers in self._workers.values():
            workers.shutdown(wait=False)  # the pools of a scheduler never started (--once) end here

    def join(self, timeout: float) -> bool:
        """Wait up to `timeout`, in all, for the runs under way to end (after `shutdown`); True if they did."""
        deadline = time.monotonic() + timeout
        return all([workers.join(max(0.0, deadline - time.monotonic())) for workers in self._workers.values()])
