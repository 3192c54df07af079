"""APScheduler wiring: one interval job per collection, the first run at once, and one worker per collection
kind: a kind's collections run one at a time, beside other kinds'."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from apscheduler.executors.pool import BasePoolExecutor
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


class Scheduler:
    def __init__(self, run: Callable[[str], object], collections: Callable[[], Iterable[Scheduled]]) -> None:
        """`collections` is asked for what to schedule, each time: the running config owns it."""
        self._run = run
        self._collections = collections
        # One worker per kind of collection: N-central limits concurrent requests per endpoint, so the reports
        # of one exporter run one at a time; another kind, on other endpoints, runs on its own worker, so a
        # long customer scan never holds a report back. A job runs on its kind's worker only, once at a time.
        self._workers: dict[str, DaemonPool] = {}
        self._scheduler = BackgroundScheduler(
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=dt.UTC,
        )

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
            self._scheduler.add_job(
                self._run, "interval", seconds=collection.interval, id=name, name=f"{collection.kind} {name}",
                args=[name],
                next_run_time=now, replace_existing=True, executor=executor,
            )

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
