"""APScheduler wiring: one interval job per report, the first run at once, one report at a time."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable
from typing import Protocol

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

log = logging.getLogger(__name__)


class Scheduled(Protocol):
    """A collection with a schedule: a report's settings, or the customer scan's."""

    @property
    def name(self) -> str: ...

    @property
    def interval(self) -> float: ...


class ReportScheduler:
    def __init__(self, run: Callable[[str], object]) -> None:
        self._run = run
        self._intervals: dict[str, float] = {}
        # One worker: N-central limits concurrent requests, so reports of one exporter run one at a time.
        self._scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=dt.UTC,
        )

    def start(self, reports: Iterable[Scheduled]) -> None:
        self.schedule(reports, fresh=())
        self._scheduler.start()

    def schedule(self, reports: Iterable[Scheduled], fresh: Iterable[str]) -> None:
        """(Re)schedule jobs: new, changed-interval and `fresh` reports run at once; removed ones go."""
        wanted = {report.name: report for report in reports}
        restart = set(fresh)
        for name in list(self._intervals):
            if name not in wanted:
                self._scheduler.remove_job(name)
                del self._intervals[name]
        now = dt.datetime.now(dt.UTC)
        for name, report in wanted.items():
            if self._intervals.get(name) == report.interval and name not in restart:
                continue
            self._scheduler.add_job(
                self._run, "interval", seconds=report.interval, id=name, name=f"report {name}", args=[name],
                next_run_time=now, replace_existing=True,
            )
            self._intervals[name] = report.interval

    def next_runs(self) -> dict[str, dt.datetime | None]:
        return {job.id: job.next_run_time for job in self._scheduler.get_jobs()}

    def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
