"""A rule's samples at many evaluation steps, computed in one query, point in time.

The live evaluator asks for one step (now); a backtest for every step of a range. Both run
the same SQL, so a backtest sees what the live rule would have seen:

* **threshold** (and burn-rate) rules read stored series. For each label set and step, the
  newest row known by then (``greatest(ts, ingest_time) <= step``: written and ingested) is
  taken with an ``ASOF JOIN`` of the steps against the rows; a row older than the series'
  ``max_age``, one whose status is not ``ok``, or none at all, is no data (None).
* **query** rules aggregate raw inference logs: at step ``s`` the window ``(s - w, s]`` of
  event times, counting only rows ingested by ``s``. A row therefore counts at every step
  from the first one at or after both its event and its ingest time, to the last one before
  its event time plus the window; the query adds +x at the first and -x after the last, and
  a running sum per group gives every step's aggregate at once.

Samples come back per label set (a tuple of ``(name, value)`` pairs), one per step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from telemetry import Store
from telemetry.clock import utc

from .expr import FIELDS, compile_expression
from .rules import SOURCES, BurnRate, Query, Series

Labels = tuple[tuple[str, str], ...]
Samples = dict[Labels, list[float | None]]

_KEY_NAMES = {"model_version": "version", "consumer_group": "group"}
#: A Kafka partition's status as a number: OK 0, WARN 1, REWIND 2, STALL 3, STOP 4.
_COLUMN_VALUES = {"status": "indexOf(['OK', 'WARN', 'REWIND', 'STALL', 'STOP'], status) - 1"}


def threshold_samples(store: Store, series: Series, steps: Sequence[datetime]) -> Samples:
    """The series' value per label set at each step (None: no data then)."""
    source = SOURCES[series.source]
    # a column name from a fixed list; a Kafka partition's status as its Burrow severity
    value = source["value"] or _COLUMN_VALUES.get(series.metric, series.metric)
    keys = list(source["keys"])
    params: dict[str, Any] = {"steps": [utc(s) for s in steps], "last": utc(max(steps))}
    where = ["greatest(ts, ingest_time) <= {last:DateTime64(3, 'UTC')}"]
    if source["metric"]:
        where.append(f"{source['metric']} = {{metric:String}}")
        params["metric"] = series.metric
    if series.source == "monitor":
        where.append("monitor = {monitor:String}")
        params["monitor"] = series.monitor
    if series.source == "drift":
        where.append("NOT endsWith(method, ':extra')")
    if "model" in keys:
        where.append("({model:String} = '*' OR model = {model:String})")
        where.append("({version:String} = '*' OR model_version = {version:String})")
        params.update(model=series.model, version=series.version)
    for i, (name, wanted) in enumerate(sorted(series.labels.items())):
        where.append(f"labels[{{ln{i}:String}}] = {{lv{i}:String}}")
        params.update({f"ln{i}": name, f"lv{i}": wanted})
    selected = [f"toString({k}) AS k{i}" for i, k in enumerate(keys)]
    if series.source == "monitor":  # an SLO's windows are series of their own
        selected.append("toString(labels) AS k_labels")
    names = [f"k{i}" for i in range(len(keys))] + (
        ["k_labels"] if series.source == "monitor" else [])
    status = "status" if source["status"] else "'ok'"
    rows = (f"SELECT {', '.join(selected)}, greatest(ts, ingest_time) AS known, "
            f"toNullable(toFloat64({value})) AS v, {status} AS st "
            f"FROM {source['table']} WHERE {' AND '.join(where)}")
    if series.rate:
        keyed = ", ".join(names)
        rows = (f"SELECT {keyed}, known, if(pv IS NULL OR known = pk, NULL, "
                "if(v >= pv, v - pv, v) * 1000 / dateDiff('millisecond', pk, known)) AS v, st "
                f"FROM (SELECT *, lagInFrame(v) OVER w AS pv, "
                f"lagInFrame(toNullable(known)) OVER w AS pk FROM ({rows}) "
                f"WINDOW w AS (PARTITION BY {keyed} ORDER BY known "
                "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW))")
    join = " AND ".join(f"s.{n} = r.{n}" for n in names)
    result = store.query(
        f"WITH found AS ({rows}) "
        f"SELECT {', '.join('s.' + n for n in names)}, s.step, r.v, r.st, r.known "
        f"FROM (SELECT {', '.join(names)}, step FROM (SELECT DISTINCT {', '.join(names)} "
        "FROM found) ARRAY JOIN {steps:Array(DateTime64(3, 'UTC'))} AS step) AS s "
        f"ASOF LEFT JOIN found AS r ON {join} AND s.step >= r.known "
        f"ORDER BY {', '.join('s.' + n for n in names)}, s.step "
        "SETTINGS join_use_nulls = 1",
        params,
    )
    max_age = series.max_age
    label_names = [_KEY_NAMES.get(k, k) for k in keys]
    out: Samples = {}
    for row in result:
        *key, step, v, st, known = row
        labels = tuple(zip(label_names, key[:len(keys)], strict=True))
        if series.source == "monitor":
            labels += _map_labels(key[-1])
        fresh = known is not None and utc(step) - utc(known) <= max_age
        ok = v is not None and st == "ok" and fresh and not math.isnan(v)
        out.setdefault(labels, []).append(float(v) if ok else None)
    return out


def burn_samples(store: Store, burn: BurnRate, steps: Sequence[datetime]) -> Samples:
    """min(long burn, short burn) per model version: above the factor, both windows burn
    faster than it."""
    from drift.settings import window_label

    def window(length: timedelta) -> Samples:
        series = Series(source="monitor", monitor="slo", metric="burn_rate", model=burn.model,
                        version=burn.version,
                        labels={"slo": burn.slo, "window": window_label(length)})
        return {_without(k, ("slo", "window")): v
                for k, v in threshold_samples(store, series, steps).items()}

    long, short = window(burn.long), window(burn.short)
    out: Samples = {}
    for labels in sorted(long.keys() | short.keys()):
        a = long.get(labels, [None] * len(steps))
        b = short.get(labels, [None] * len(steps))
        out[labels + (("slo", burn.slo),)] = [
            None if x is None or y is None else min(x, y) for x, y in zip(a, b, strict=True)]
    return out


def query_samples(store: Store, query: Query, start: datetime, interval: timedelta,
                  count: int) -> Samples:
    """The aggregate per group at steps ``start + i * interval``, i < ``count``; only groups
    whose aggregate breaches at some step come back (a window without rows counts 0)."""
    where = compile_expression(query.where)
    params: dict[str, Any] = {**where.params, "model": query.model, "start": utc(start),
                              "step_ms": int(interval.total_seconds() * 1000),
                              "window_ms": int(query.window.total_seconds() * 1000),
                              "n": count}
    groups = [f"{group_column(name, i, params)} AS g{i}" for i, name in enumerate(query.group_by)]
    names = [f"g{i}" for i in range(len(groups))]
    amount, counted = aggregate_columns(query.aggregate, params)
    offset = "toUnixTimestamp64Milli({start:DateTime64(3, 'UTC')})"
    first = (f"toInt64(ceil((greatest(toUnixTimestamp64Milli(event_time), "
             f"toUnixTimestamp64Milli(ingest_time)) - {offset}) / {{step_ms:Int64}}))")
    last = (f"toInt64(ceil((toUnixTimestamp64Milli(event_time) + {{window_ms:Int64}} - "
            f"{offset}) / {{step_ms:Int64}})) - 1")
    selected = ", ".join([*groups, f"{first} AS i0", f"{last} AS i1", f"{amount} AS x",
                          f"{counted} AS c"])
    k = "".join(f"{n}, " for n in names)
    partition = f"PARTITION BY {', '.join(names)} " if names else ""
    average = query.aggregate.startswith("avg(")
    value = "if(n = 0, NULL, total / n)" if average else "total"
    # Only groups that breach at some step come back (the others stay inactive throughout);
    # "breach" by the looser of value and recovery, which a firing alert is held to.
    bounds = [query.value] if query.recovery is None else [query.value, query.recovery]
    params["threshold"] = min(bounds) if query.op in (">", ">=") else max(bounds)
    rows = store.query(
        f"SELECT {k}i, value FROM ("
        f"SELECT {k}i, {value} AS value, "
        f"max(ifNull({value} {query.op} {{threshold:Float64}}, 0)) OVER ({partition}) AS ever "
        f"FROM (SELECT {k}i, sum(dx) OVER w AS total, sum(dc) OVER w AS n FROM ("
        f"SELECT {k}i, sum(dx) AS dx, sum(dc) AS dc FROM ("
        f"SELECT {k}e.1 AS i, e.2 AS dx, e.3 AS dc FROM ("
        # each row adds its amount from its first step on and takes it back after its last
        f"SELECT {k}arrayJoin([(greatest(i0, 0), x, c), (i1 + 1, -x, -c)]) AS e "
        f"FROM (SELECT {selected} FROM inference_logs FINAL "
        f"WHERE model = {{model:String}} AND {where.sql} "
        f"AND i1 >= 0 AND i0 < {{n:Int64}} AND i0 <= i1))) "
        f"GROUP BY {k}i) WINDOW w AS ({partition}ORDER BY i))) "
        f"WHERE ever AND i < {{n:Int64}} ORDER BY {k}i",
        params,
    )
    out: Samples = {}
    changes: dict[Labels, list[tuple[int, float | None]]] = {}
    for row in rows:
        *key, i, found = row
        labels = tuple(zip(query.group_by, (str(x) for x in key), strict=True))
        changes.setdefault(labels, []).append((int(i), None if found is None else float(found)))
    empty = None if average else 0.0
    for labels, points in changes.items():
        values: list[float | None] = [empty] * count
        for (i, found), (following, _) in zip(points, [*points[1:], (count, None)],
                                              strict=True):
            values[i:following] = [found] * (following - i)
        out[labels] = values
    return out


def group_column(name: str, index: int, params: dict[str, Any]) -> str:
    """The SQL of a ``group_by`` entry, as text: a field's column, or a feature (text, or a
    number's text); binds the feature name as ``gb<index>``."""
    if name in FIELDS:
        return f"toString({FIELDS[name][0]})"
    params[f"gb{index}"] = name
    return (f"if(mapContains(categorical_features, {{gb{index}:String}}), "
            f"categorical_features[{{gb{index}:String}}], "
            f"toString(numeric_features[{{gb{index}:String}}]))")


def aggregate_columns(aggregate: str, params: dict[str, Any]) -> tuple[str, str]:
    """(the summed amount, the counted rows) of one row, for count, sum(x) or avg(x)."""
    if aggregate == "count":
        return "toFloat64(1)", "toInt64(1)"
    name = aggregate[4:-1]
    if name in FIELDS:
        column = f"toFloat64(ifNull({FIELDS[name][0]}, 0))"
        present = f"{FIELDS[name][0]} IS NOT NULL" if name == "prediction" else "1"
    else:
        params["agg"] = name
        column = "numeric_features[{agg:String}]"
        present = "mapContains(numeric_features, {agg:String})"
    return f"if({present}, {column}, 0)", f"toInt64({present})"


def _map_labels(text: str) -> Labels:
    """``{'slo':'a','window':'1h'}`` (ClickHouse's text of a map) as label pairs."""
    body = text.strip("{}")
    pairs = []
    for part in body.split(",") if body else []:
        name, _, value = part.partition(":")
        pairs.append((name.strip().strip("'"), value.strip().strip("'")))
    return tuple(sorted(pairs))


def _without(labels: Labels, names: tuple[str, ...]) -> Labels:
    return tuple(p for p in labels if p[0] not in names)
