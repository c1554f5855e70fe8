"""Group commit: many small concurrent writes become one store batch.

A store batch costs about the same for 50 records as for 5,000 (a few statements in the
store), so writing each HTTP request on its own caps small requests at a few dozen a second.
``GroupCommit`` queues every request's records; one thread per kind takes all that queued
while the previous batch was being written (up to ``max_batch_records``), writes them in one
call to the ``TelemetryWriter``, and answers each request with its own part of the result,
only once the batch is stored. A store failure fails every request of that batch, each of
which may then be resent.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Literal

from .ingest import TelemetryWriter

Kind = Literal["log", "label"]


@dataclass
class _Request:
    records: Sequence[Any]
    source: str
    done: Future


class GroupCommit:
    """Coalesces concurrent writes of logs and labels into store batches (see module docs)."""

    def __init__(self, writer: TelemetryWriter, *, max_batch_records: int = 10_000) -> None:
        self._writer = writer
        self._max = max_batch_records
        self._queues: dict[Kind, deque[_Request]] = {"log": deque(), "label": deque()}
        self._ready = threading.Condition()
        self._closed = False
        self._threads = [threading.Thread(target=self._run, args=(kind,), daemon=True,
                                          name=f"group-commit-{kind}")
                         for kind in self._queues]
        for thread in self._threads:
            thread.start()

    def submit(self, kind: Kind, records: Sequence[Any], source: str) -> Future:
        """Queue records; the future holds their ``IngestResult`` once they are stored (or the
        store's error)."""
        request = _Request(records, source, Future())
        with self._ready:
            if self._closed:
                raise RuntimeError("group commit is closed")
            self._queues[kind].append(request)
            self._ready.notify_all()
        return request.done

    def close(self) -> None:
        """Write what is queued, then stop the threads."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()
        for thread in self._threads:
            thread.join(timeout=60)

    def _take(self, kind: Kind) -> list[_Request] | None:
        queue = self._queues[kind]
        with self._ready:
            while not queue:
                if self._closed:
                    return None
                self._ready.wait()
            taken = [queue.popleft()]
            count = len(taken[0].records)
            while queue and count + len(queue[0].records) <= self._max:
                count += len(queue[0].records)
                taken.append(queue.popleft())
            return taken

    def _run(self, kind: Kind) -> None:
        write = self._writer.write_logs if kind == "log" else self._writer.write_labels
        while (batch := self._take(kind)) is not None:
            # One source name per store batch: requests of different sources are written apart.
            groups: dict[str, list[_Request]] = {}
            for request in batch:
                groups.setdefault(request.source, []).append(request)
            for source, requests in groups.items():
                records = [record for request in requests for record in request.records]
                try:
                    result = write(records, source)
                except BaseException as exc:  # noqa: BLE001 - every waiting request hears
                    for request in requests:
                        request.done.set_exception(exc)
                    continue
                start = 0
                for request in requests:
                    stop = start + len(request.records)
                    request.done.set_result(result.part(start, stop))
                    start = stop
