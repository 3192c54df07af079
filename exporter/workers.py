"""A thread pool whose threads are daemons, for collection runs.

concurrent.futures joins its workers at interpreter exit, so a run blocked inside an HTTP call to
N-central would hold the exit until that call's deadline. Shutdown halts the runs, waits for them a
bounded time and writes the state; after that nothing is lost by not waiting for a call to come back."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

_Work = tuple[Future[Any], Callable[[], Any]]


class DaemonPool(Executor):
    def __init__(self, max_workers: int, name: str) -> None:
        self._queue: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}_{index}", daemon=True) for index in range(max_workers)
        ]
        self._shutdown_lock = threading.Lock()
        self._shut_down = False
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        with self._shutdown_lock:
            if self._shut_down:
                raise RuntimeError("cannot schedule new work after shutdown")
            future: Future[T] = Future()
            self._queue.put((future, lambda: fn(*args, **kwargs)))
            return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._shutdown_lock:
            if not self._shut_down:
                self._shut_down = True
                if cancel_futures:
                    self._cancel_queued()
                for _ in self._threads:
                    self._queue.put(None)
        if wait:
            self.join()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the workers to end (after `shutdown`), all within `timeout`; True if they all did."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            if thread is threading.current_thread():
                continue  # shut down from one of its own jobs
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads if t is not threading.current_thread())

    def _cancel_queued(self) -> None:
        pending: list[_Work | None] = []
        while True:
            try:
                pending.append(self._queue.get_nowait())
            except queue.Empty:
                break
        for item in pending:
            if item is not None:
                item[0].cancel()

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            future, call = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = call()
            except BaseException as exc:  # handed to whoever waits on the future, as concurrent.futures does
                future.set_exception(exc)
            else:
                future.set_result(result)
