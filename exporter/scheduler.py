"""APScheduler wiring: one interval job per report, the first run at once, one report at a time."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable
from typing import Protocol

from apscheduler.executors.pool import BasePoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from exporter.workers import DaemonPool

log = logging.getLogger(__name__)


class Scheduled(Protocol):
    """A collection with a schedule: a report's settings, or the customer scan's."""

    @property
    def name(self) -> str: ...

    @property
    def interval(self) -> float: ...


class _RunExecutor(BasePoolExecutor):  # type: ignore[misc]  # APScheduler 3 has no type hints
    """APScheduler's thread pool executor, on daemon threads (see exporter.workers)."""

    def __init__(self, pool: DaemonPool) -> None:
        super().__init__(pool)


class ReportScheduler:
    def __init__(self, run: Callable[[str], object], collections: Callable[[], Iterable[Scheduled]]) -> None:
        """`collections` is asked for what to schedule, each time: the running config owns it."""
        self._run = run
        self._collections = collections
        # One worker: N-central limits concurrent requests, so reports of one exporter run one at a time.
        self._workers = DaemonPool(1, "collection-run")
        self._scheduler = BackgroundScheduler(
            executors={"default": _RunExecutor(self._workers)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=dt.UTC,
        )

    def start(self) -> None:
        self.schedule(fresh=())
        self._scheduler.start()

    def schedule(self, fresh: Iterable[str]) -> None:
        """(Re)schedule jobs: new, changed-interval and `fresh` reports run at once; removed ones go."""
        wanted = {report.name: report for report in self._collections()}
        restart = set(fresh)
        # What is scheduled is asked of APScheduler's jobs themselves, not of a copy kept beside them.
        scheduled = {job.id: job.trigger.interval for job in self._scheduler.get_jobs()}
        for name in scheduled:
            if name not in wanted:
                self._scheduler.remove_job(name)
        now = dt.datetime.now(dt.UTC)
        for name, report in wanted.items():
            if scheduled.get(name) == dt.timedelta(seconds=report.interval) and name not in restart:
                continue
            self._scheduler.add_job(
                self._run, "interval", seconds=report.interval, id=name, name=f"report {name}", args=[name],
                next_run_time=now, replace_existing=True,
            )

    def next_runs(self) -> dict[str, dt.datetime | None]:
        return {job.id: job.next_run_time for job in self._scheduler.get_jobs()}

    def shutdown(self) -> None:
        """Start no more runs; the one under way goes on (see `join`)."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        self._workers.shutdown(wait=False, cancel_futures=True)

    def join(self, timeout: float) -> bool:
        """Wait up to `timeout` for the run under way to end (after `shutdown`); True if it did."""
        return self._workers.join(timeout)
