"""Validate batches of inference logs and labels, store the good, dead-letter the bad.

Every source (HTTP, Kafka, Redis streams) goes through ``TelemetryWriter``: it returns only
after the store accepted the batch, so a caller may acknowledge its source afterwards.
Redelivered records (a request id already stored) are counted as duplicates and not stored
again, so at-least-once delivery never double counts, in the raw table or in the rollup.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticSerializationError, to_json

from .clock import Clock, epoch_ms, utc_now
from .errors import StoreError, StoreUnavailableError
from .intake import IntakeResult, SqlLogIntake
from .metrics import IngestMetrics
from .records import (
    MAX_FUTURE_SKEW,
    MAX_RECORD_BYTES,
    InferenceLogRecord,
    LabelRecord,
    Rejection,
    describe_validation_error,
    json_type,
    load_record,
    payload_text,
)
from .store import Store

log = logging.getLogger("watchloop.ingest")

_LABEL_COLUMNS = ("request_id", "label", "label_value", "label_time", "ingest_time", "source")


@dataclass
class IngestResult:
    """What became of a batch: stored, rejected (dead-lettered) and duplicate records."""

    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    duplicate_indexes: list[int] = field(default_factory=list)
    # per model, for Watchloop's own metrics ("" where records carry no model: labels)
    accepted_models: dict[str, int] = field(default_factory=dict)
    duplicate_models: dict[str, int] = field(default_factory=dict)

    def as_dict(self, max_errors: int = 100) -> dict[str, Any]:
        """A JSON-ready summary, listing at most ``max_errors`` rejections."""
        return {
            "accepted": self.accepted,
            "rejected": self.rejected,
            "duplicates": self.duplicates,
            "errors": [
                {"index": r.index, "reason": r.reason} for r in self.rejections[:max_errors]
            ],
        }

    def part(self, start: int, stop: int) -> IngestResult:
        """The result of records ``start`` to ``stop`` of the batch, numbered from 0: how a
        group commit answers each request whose records it wrote together."""
        rejections = [Rejection(r.index - start, r.payload, r.reason)
                      for r in self.rejections if start <= r.index < stop]
        duplicates = [i - start for i in self.duplicate_indexes if start <= i < stop]
        return IngestResult(
            accepted=stop - start - len(rejections) - len(duplicates),
            rejected=len(rejections), duplicates=len(duplicates), rejections=rejections,
            duplicate_indexes=duplicates)


class TelemetryWriter:
    """Writes validated inference logs and labels to the store; rejects go to dead letters.

    A batch the store refuses for any reason but unavailability (``StoreUnavailableError``,
    which the caller retries) is bisected: the halves are written on their own, down to the
    single record that makes the store fail, which is dead-lettered with the store's error.
    """

    def __init__(
        self,
        store: Store,
        *,
        known_models: Collection[str] | None = None,
        max_record_bytes: int = MAX_RECORD_BYTES,
        max_future_skew: timedelta = MAX_FUTURE_SKEW,
        clock: Clock = utc_now,
        metrics: IngestMetrics | None = None,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._max_record_bytes = max_record_bytes
        self._skew = max_future_skew
        self._models = sorted(known_models) if known_models else None
        self._clock = clock
        self._intake = SqlLogIntake(store, known_models=known_models,
                                    max_future_skew=max_future_skew)

    def write_logs(self, records: Sequence[Any], source: str) -> IngestResult:
        """Validate and store inference logs (dicts, or JSON text/bytes, one per record).

        Validation and the duplicate check run inside the store (``intake.SqlLogIntake``);
        records it cannot decode are explained here by the pydantic model.
        """
        result = IngestResult()
        ingest_ms = epoch_ms(self._clock())
        payloads: list[bytes] = []
        origin: list[int] = []  # index in ``records`` of each payload sent to the store
        for index, raw in enumerate(records):
            payload = _as_json_bytes(raw)
            if payload is None or len(payload) > self._max_record_bytes \
                    or not payload.startswith(b"{"):
                reason = self._explain(InferenceLogRecord, raw, ingest_ms)
                result.rejections.append(Rejection(index, payload_text(raw), reason))
                continue
            payloads.append(payload)
            origin.append(index)
        for positions, outcome in self._bisected(payloads, ingest_ms, source):
            result.accepted += outcome.accepted
            result.duplicates += len(outcome.duplicates)
            for mine, theirs in ((result.accepted_models, outcome.accepted_models),
                                 (result.duplicate_models, outcome.duplicate_models)):
                for model, count in theirs.items():
                    mine[model] = mine.get(model, 0) + count
            result.duplicate_indexes += [origin[positions[p]] for p in outcome.duplicates]
            for position, reason in outcome.rejected:
                index = origin[positions[position]]
                result.rejections.append(Rejection(index, payload_text(records[index]), reason))
            for position in outcome.unparsed:
                index = origin[positions[position]]
                raw = records[index]
                result.rejections.append(Rejection(
                    index, payload_text(raw), self._explain(InferenceLogRecord, raw, ingest_ms)))
        result.rejections.sort(key=lambda r: r.index)
        self._dead_letter(result, source, "inference_log", ingest_ms)
        self._count(result, "inference_log", source)
        return result

    def _bisected(self, payloads: list[bytes], ingest_ms: int,
                  source: str) -> list[tuple[list[int], IntakeResult]]:
        """Write payloads; on a refusal other than unavailability, write each half alone.

        A refusal is a record's fault only while the store is up: before bisecting, and
        again before blaming a record that fails alone, the store must answer a ping, and
        the lone record is tried once more. A store that stops answering part-way (or had
        stopped, and is back) raises ``StoreUnavailableError`` for the caller to retry the
        batch; what was already stored comes back as duplicates, so nothing is lost or
        dead-lettered for the store's own outage. When every record fails alone against a
        store that answers, the fault is still the store's, and its error is raised.
        """
        parts: list[tuple[list[int], IntakeResult]] = []
        failures: list[StoreError] = []

        def attempt(positions: list[int]) -> None:
            chunk = [payloads[p] for p in positions]
            parts.append((positions, self._intake.write(chunk, ingest_ms, source)))

        def require_store_up(exc: StoreError) -> None:
            if not self._store.ping():
                raise StoreUnavailableError(
                    f"the store stopped answering while writing a batch: {exc}") from exc

        def write(positions: list[int]) -> None:
            try:
                attempt(positions)
                return
            except StoreUnavailableError:
                raise
            except StoreError as exc:
                require_store_up(exc)
                refusal = exc
            if len(positions) > 1:
                log.warning("the store refused a batch of %d; writing its halves apart: %s",
                            len(positions), refusal)
                half = len(positions) // 2
                write(positions[:half])
                write(positions[half:])
                return
            try:  # alone, against a store that answers: once more, to rule out a blip
                attempt(positions)
            except StoreUnavailableError:
                raise
            except StoreError as again:
                require_store_up(again)
                failures.append(again)
                parts.append((positions, IntakeResult(rejected=[(0, f"store: {again}")])))

        if payloads:
            write(list(range(len(payloads))))
        if failures and len(failures) == len(payloads):
            raise failures[0]
        return parts

    def close(self) -> None:
        """Release the store's scratch tables."""
        self._intake.close()

    def write_labels(self, records: Sequence[Any], source: str) -> IngestResult:
        """Validate and store delayed labels (dicts, or JSON text/bytes, one per record)."""
        result = IngestResult()
        ingest_ms = epoch_ms(self._clock())
        rows: dict[str, list[Any]] = {name: [] for name in _LABEL_COLUMNS}
        rows["index"] = []
        seen: set[tuple[str, str, int]] = set()
        for index, raw in enumerate(records):
            try:
                record = self._parse(LabelRecord, raw, ingest_ms)
            except ValueError as exc:
                result.rejections.append(Rejection(index, payload_text(raw), str(exc)))
                continue
            label = record.label
            text = label if isinstance(label, str) else _number_text(label)
            key = (record.request_id, text, epoch_ms(record.label_time))
            if key in seen:
                result.duplicates += 1
                result.duplicate_indexes.append(index)
                continue
            seen.add(key)
            rows["index"].append(index)
            rows["request_id"].append(record.request_id)
            rows["label"].append(text)
            rows["label_value"].append(None if isinstance(label, str) else label)
            rows["label_time"].append(key[2])
            rows["ingest_time"].append(ingest_ms)
            rows["source"].append(source)
        self._drop_stored_labels(rows, result)
        del rows["index"]
        result.accepted = self._store.insert_columns("labels", rows)
        result.accepted_models = {"": result.accepted}
        result.duplicate_models = {"": result.duplicates}
        self._dead_letter(result, source, "label", ingest_ms)
        self._count(result, "label", source)
        return result

    def dead_letter(self, rejected: Sequence[tuple[Any, str]], source: str, kind: str) -> int:
        """Store (payload, reason) pairs that failed before validation, in one insert (say, a
        body that is not JSON, or a stream entry without its data field)."""
        result = IngestResult(rejections=[
            Rejection(i, payload_text(payload), reason)
            for i, (payload, reason) in enumerate(rejected)
        ])
        self._dead_letter(result, source, kind, epoch_ms(self._clock()))
        self._count(result, kind, source)
        return result.rejected

    def _count(self, result: IngestResult, kind: str, source: str) -> None:
        if self._metrics is None:
            return
        self._metrics.counted(kind, source, "accepted", result.accepted_models)
        self._metrics.counted(kind, source, "duplicate", result.duplicate_models)
        self._metrics.rejected(kind, source, [r.reason for r in result.rejections])

    def _parse(self, model: Any, raw: Any, ingest_ms: int) -> Any:
        """Validate one record, raising ValueError with every problem, each naming its field."""
        if isinstance(raw, (bytes, str)):
            raw = load_record(raw.strip(), self._max_record_bytes)
        elif not isinstance(raw, dict):
            raise ValueError(f"record: expected a JSON object, got {json_type(raw)}")
        else:
            payload = _as_json_bytes(raw)
            if payload is not None and len(payload) > self._max_record_bytes:
                raise ValueError(f"record: {len(payload)} bytes exceeds the limit of "
                                 f"{self._max_record_bytes} bytes")
        context = {"bounds": (ingest_ms, self._skew), "models": self._models}
        try:
            return model.model_validate(raw, context=context)
        except ValidationError as exc:
            raise ValueError(describe_validation_error(exc)) from None

    def _explain(self, model: Any, raw: Any, ingest_ms: int) -> str:
        """Why a record the store could not read is invalid, in the pydantic model's words."""
        try:
            self._parse(model, raw, ingest_ms)
        except ValueError as exc:
            return str(exc)
        return "record: not a JSON object the store can read (check its encoding)"

    def _drop_stored_labels(self, rows: dict[str, list[Any]], result: IngestResult) -> None:
        if not rows["request_id"]:
            return
        stored = set(
            self._store.query(
                "SELECT request_id, label, toUnixTimestamp64Milli(label_time) FROM labels "
                "WHERE request_id IN {ids:Array(String)}",
                {"ids": rows["request_id"]},
            )
        )
        if stored:
            keys = zip(rows["request_id"], rows["label"], rows["label_time"], strict=True)
            _keep(rows, [key not in stored for key in keys], result)

    def _dead_letter(self, result: IngestResult, source: str, kind: str, ingest_ms: int) -> None:
        """Store the rejections, each once: one already dead-lettered (the same kind and
        payload, delivered again) is not stored a second time."""
        result.rejected = len(result.rejections)
        if not result.rejections:
            return
        keys = [_record_key(kind, r.payload) for r in result.rejections]
        stored = set(self._store.scalar(
            "SELECT groupUniqArray(record_key) FROM dead_letters "
            "WHERE record_key IN {keys:Array(String)}", {"keys": keys}) or ())
        fresh = [(key, r) for key, r in dict(zip(keys, result.rejections, strict=True)).items()
                 if key not in stored]
        if not fresh:
            return
        self._store.insert_columns(
            "dead_letters",
            {
                "ingest_time": [ingest_ms] * len(fresh),
                "source": [source] * len(fresh),
                "kind": [kind] * len(fresh),
                "reason": [r.reason for _, r in fresh],
                "payload": [r.payload for _, r in fresh],
                "record_key": [key for key, _ in fresh],
            },
        )


def _record_key(kind: str, payload: str) -> str:
    """What identifies a refused record across deliveries: its kind and exact payload."""
    digest = hashlib.blake2b(payload.encode("utf-8", "surrogatepass"), digest_size=12,
                             person=kind.encode()[:16])
    return digest.hexdigest()


def _number_text(value: float) -> str:
    """A numeric label as text: whole numbers without a fraction (1, not 1.0)."""
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def _as_json_bytes(raw: Any) -> bytes | None:
    """A record as JSON bytes, or None when it cannot be one."""
    if isinstance(raw, bytes):
        return raw.strip()
    if isinstance(raw, str):
        return raw.strip().encode()
    if isinstance(raw, dict):
        try:
            # pydantic-core's serializer is ~3x json.dumps here; NaN and Infinity are written
            # as such so that the store refuses them and the model explains why.
            return to_json(raw, inf_nan_mode="constants")
        except (PydanticSerializationError, RecursionError, ValueError):
            try:
                return json.dumps(raw, default=str).encode()
            except (TypeError, ValueError, RecursionError):
                return None
    return None


def _keep(rows: dict[str, list[Any]], mask: list[bool], result: IngestResult) -> None:
    result.duplicates += mask.count(False)
    result.duplicate_indexes += [i for i, keep in zip(rows["index"], mask, strict=True)
                                 if not keep]
    for name, column in rows.items():
        rows[name] = [value for value, keep in zip(column, mask, strict=True) if keep]
