"""Burrow-style status of one consumer-group partition, from a sliding window of samples.

Pure logic: no Kafka here. The poller feeds one ``LagSample`` per scan for every
(group, topic, partition) and stores the ``Evaluation`` it gets back (status and reason).

Statuses, and the rules that give them (after LinkedIn Burrow's evaluator, checked in this
order; the first that matches wins):

1. **OK** ``caught up``: the current lag is 0. A partition at the log end is never in error,
   whatever happened before.
2. **STOP** ``commits stopped``: lag > 0 and the consumer no longer commits. The poller knows
   this either from the broker (the group is ``Empty``/``Dead``: no member is left to
   commit), or, when the broker does not say (Tansu reports every group as ``Unknown``), from
   time: the committed offset has not moved for ``stop_after_s`` or more.
3. **REWIND** ``offset went back``: lag > 0 and the committed offset decreased between two
   samples in the window (a reset to an earlier position, a replay).
4. **OK** ``warming up``: fewer than ``window`` samples so far; rules 5-7 need a full window.
5. **OK** ``lag reached 0``: some sample in the window had lag 0 (Burrow's rule 1).
6. **STALL** ``offset not moving``: the committed offset is the same in every sample of the
   window while the lag stayed above 0: the consumer is there but makes no progress (a poison
   message, a hung handler).
7. **WARN** ``falling behind``: the committed offset moves, but the lag never decreased from
   one sample to the next (Burrow: "lag either stays the same or increases in every
   interval"): the consumer is slower than the producers.
8. **OK** otherwise: the consumer moves and the lag came down at least once.

Where this differs from Burrow, and why:

- Burrow's window holds offset *commits* with their commit timestamps (read from
  ``__consumer_offsets``), so it tells a consumer that re-commits the same offset (STALL) from
  one that stopped committing (STOP) by the time of the last commit. A poller that reads
  committed offsets with OffsetFetch sees no commit times, so its window holds one sample per
  scan; STOP comes from the group's state when the broker reports it, else from how long the
  offset has stood still (``stop_after_s``, which should exceed the window's time span so that
  STALL shows first).
- Burrow reports REWIND only when the lag was never 0 in the window; here a rewind is reported
  even from a caught-up start, since that is the usual way a reset happens.

The ``reason`` is a sentence for the person on call: the rule, the offsets, the lag and the
time involved, e.g. ``"STALL: committed offset 120 unchanged over the last 10 samples
(270s) while lag stayed above 0 (now 35)"``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Evaluation", "LagSample", "LagStatus", "LagStatusEvaluator"]


class LagStatus(StrEnum):
    """The status stored in ``kafka_lag.status``."""

    OK = "OK"
    WARN = "WARN"
    STALL = "STALL"
    STOP = "STOP"
    REWIND = "REWIND"


@dataclass(frozen=True)
class LagSample:
    """One reading of a partition for one group.

    ``group_active`` is True when the broker says the group has members, False when it says
    it has none (state ``Empty`` or ``Dead``), None when the broker does not tell.
    """

    time: float  # seconds since the epoch, from the poller's clock
    offset: int  # committed offset
    lag: int  # log-end offset minus committed offset, never negative
    group_active: bool | None = None


@dataclass(frozen=True)
class Evaluation:
    """A status and the sentence explaining it."""

    status: LagStatus
    reason: str


@dataclass
class _Track:
    samples: deque[LagSample]
    moved_at: float  # when the committed offset was first seen at its current value


class LagStatusEvaluator:
    """Keeps a sliding window of samples per key and evaluates the rules above.

    ``window`` is the number of samples the STALL and WARN rules look at (Burrow's
    ``intervals``); ``stop_after_s`` is how long the committed offset may stand still, with
    lag, before a group whose liveness the broker does not report counts as stopped.
    """

    def __init__(self, *, window: int = 10, stop_after_s: float = 600.0) -> None:
        if window < 2:
            raise ValueError(f"window must hold at least 2 samples, got {window}")
        if stop_after_s <= 0:
            raise ValueError(f"stop_after_s must be positive, got {stop_after_s}")
        self.window = window
        self.stop_after_s = stop_after_s
        self._tracks: dict[Hashable, _Track] = {}

    def observe(self, key: Hashable, sample: LagSample) -> Evaluation:
        """Add ``sample`` to the window of ``key`` and return the partition's status now."""
        track = self._tracks.get(key)
        if track is None:
            track = _Track(deque(maxlen=self.window), moved_at=sample.time)
            self._tracks[key] = track
        elif track.samples and track.samples[-1].offset != sample.offset:
            track.moved_at = sample.time
        track.samples.append(sample)
        return self._evaluate(list(track.samples), track.moved_at)

    def retain(self, keys: Iterable[Hashable]) -> None:
        """Forget every key not in ``keys`` (groups or partitions that went away)."""
        keep = set(keys)
        for key in [key for key in self._tracks if key not in keep]:
            del self._tracks[key]

    def __len__(self) -> int:
        return len(self._tracks)

    def _evaluate(self, samples: list[LagSample], moved_at: float) -> Evaluation:
        now = samples[-1]
        if now.lag <= 0:
            return Evaluation(LagStatus.OK, f"OK: caught up at offset {now.offset} (lag 0)")

        still_s = now.time - moved_at
        if now.group_active is False:
            return Evaluation(
                LagStatus.STOP,
                f"STOP: group has no active members; committed offset {now.offset} "
                f"with lag {now.lag}",
            )
        if now.group_active is None and still_s >= self.stop_after_s:
            return Evaluation(
                LagStatus.STOP,
                f"STOP: committed offset {now.offset} has not moved for {still_s:.0f}s "
                f"(limit {self.stop_after_s:g}s) with lag {now.lag}: commits stopped",
            )

        for before, after in zip(samples, samples[1:], strict=False):
            if after.offset < before.offset:
                return Evaluation(
                    LagStatus.REWIND,
                    f"REWIND: committed offset went back from {before.offset} to "
                    f"{after.offset} ({now.time - after.time:.0f}s ago); lag now {now.lag}",
                )

        if len(samples) < self.window:
            return Evaluation(
                LagStatus.OK,
                f"OK: warming up ({len(samples)} of {self.window} samples); lag {now.lag}",
            )
        if any(sample.lag <= 0 for sample in samples):
            return Evaluation(
                LagStatus.OK, f"OK: lag reached 0 within the window; lag now {now.lag}"
            )

        first = samples[0]
        span_s = now.time - first.time
        if all(sample.offset == first.offset for sample in samples):
            return Evaluation(
                LagStatus.STALL,
                f"STALL: committed offset {now.offset} unchanged over the last "
                f"{len(samples)} samples ({span_s:.0f}s) while lag stayed above 0 "
                f"(now {now.lag})",
            )
        pairs = list(zip(samples, samples[1:], strict=False))
        if all(after.lag >= before.lag for before, after in pairs):
            return Evaluation(
                LagStatus.WARN,
                f"WARN: lag did not decrease over the last {len(samples)} samples "
                f"({span_s:.0f}s): {first.lag} -> {now.lag} while the committed offset moved "
                f"{first.offset} -> {now.offset}",
            )
        return Evaluation(
            LagStatus.OK,
            f"OK: consumer moving ({first.offset} -> {now.offset}) and lag came down "
            f"within the window; lag {now.lag}",
        )
