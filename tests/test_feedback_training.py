"""Training data read point-in-time, the training runner, and the demo trainer.

A run is reproducible from its recorded window: whatever arrives later (late labels,
corrected labels, late inference logs) the same window reads the same rows, count and
checksum. The runner records crashes and timeouts as such and leaves no process behind.
"""

from __future__ import annotations

import sys
import textwrap
from datetime import timedelta

import numpy as np

from feedback.dataset import DataWindow, count_labelled, read_rows, rows_checksum
from feedback.demo_model import FEATURES, Transactions, store_traffic, train
from feedback.gate import score
from feedback.runner import TrainingRunner
from feedback.training import TrainingSpec
from telemetry.clock import utc_now


def _spec(data, **params) -> TrainingSpec:
    window = {"model": "fraud", "start": "", "end": "", "as_of": ""}
    return TrainingSpec("fraud", "run-1", window, len(data), rows_checksum(data),
                        params={"epochs": 15, **params})


def test_a_window_read_as_of_its_time_returns_the_same_rows_whatever_arrives_later(store):
    now = utc_now()
    start, end = now - timedelta(hours=2), now - timedelta(hours=1)
    x, y = Transactions(3).sample(600)
    ids = store_traffic(store, "fraud", "1", x[:500], y[:500], start, end,
                        label_delay=timedelta(minutes=5))
    as_of = end + timedelta(minutes=10)
    window = DataWindow("fraud", start, end, as_of)
    before = read_rows(store, window)
    assert len(before) == count_labelled(store, window) == 500
    assert list(before.columns[:6]) == ["request_id", "event_time", "model_version",
                                        "prediction", "label", "label_value"]
    assert set(FEATURES) <= set(before.columns)
    assert np.allclose(before[list(FEATURES)].to_numpy(), x[:500], rtol=1e-6)

    # later: a correction of 50 labels, logs that arrived late for the window, and their
    # labels, all ingested after as_of
    late = now - timedelta(minutes=1)
    store.insert_columns("labels", {
        "request_id": ids[:50], "label": ["1" if v == 0 else "0" for v in y[:50]],
        "label_value": [float(1 - v) for v in y[:50]], "label_time": [late] * 50,
        "ingest_time": [late] * 50, "source": ["test"] * 50})
    store_traffic(store, "fraud", "1", x[500:], y[500:], start, end, ingested_at=late)

    again = read_rows(store, window)
    assert len(again) == 500
    assert rows_checksum(again) == rows_checksum(before)
    assert again["label"].tolist() == before["label"].tolist()
    # read as of now, the same window sees the late rows and the corrections
    current = read_rows(store, DataWindow("fraud", start, end, utc_now()))
    assert len(current) == 600
    assert rows_checksum(current) != rows_checksum(before)
    corrected = current.set_index("request_id").loc[ids[:50], "label"]
    assert corrected.tolist() == ["1" if v == 0 else "0" for v in y[:50]]


def test_a_model_trained_before_the_drift_loses_to_one_trained_after_it(tmp_path):
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    world = Transactions(7)

    def frame(n: int, drift: float) -> pd.DataFrame:
        x, y = world.sample(n, drift)
        data = pd.DataFrame(x, columns=FEATURES)
        data["label"] = [str(v) for v in y]
        return data

    before, after, test = frame(3000, 0.0), frame(3000, 1.0), frame(2000, 1.0)
    truth = test["label"].astype(int)
    aucs = {}
    for name, data in (("before", before), ("after", after)):
        trained = train(data, _spec(data))
        assert trained.features == FEATURES
        path = tmp_path / f"{name}.pt"
        import torch

        torch.jit.save(torch.jit.script(trained.module), str(path))
        scores = score(path, test, trained.features)
        assert ((scores >= 0) & (scores <= 1)).all()
        aucs[name] = roc_auc_score(truth, scores)
    assert aucs["after"] > aucs["before"] + 0.05, aucs
    assert aucs["after"] > 0.75, aucs


def _frame(n: int = 400):
    import pandas as pd

    x, y = Transactions(1).sample(n)
    data = pd.DataFrame(x, columns=FEATURES)
    data["request_id"] = [f"r{i}" for i in range(n)]
    data["label"] = [str(v) for v in y]
    return data


def test_the_runner_trains_in_a_subprocess_and_keeps_its_log(tmp_path):
    data = _frame()
    result = TrainingRunner(entrypoint="feedback.demo_model:train", timeout_s=120).run(
        _spec(data), data, tmp_path / "run")
    assert result.status == "succeeded", result.reason + result.log_tail()
    assert result.features == FEATURES
    assert result.model_file.is_file()
    assert result.metrics["train_rows"] == 400
    assert "training fraud on 400 rows" in result.log_file.read_text()
    assert len(score(result.model_file, data, result.features)) == 400


def test_a_crashing_run_is_failed_with_the_error_from_its_log(tmp_path):
    data = _frame()
    result = TrainingRunner(entrypoint="feedback.demo_model:train", timeout_s=120).run(
        _spec(data, fail="bad data"), data, tmp_path / "run")
    assert result.status == "failed"
    assert "exited with status 1" in result.reason
    assert "training failed on purpose: bad data" in result.reason
    assert not result.model_file.exists()


def test_a_run_past_its_timeout_is_killed_with_its_children(tmp_path):
    script = tmp_path / "slow.py"
    script.write_text(textwrap.dedent("""
        import os, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        open(os.environ["WATCHLOOP_RUN_DIR"] + "/child.pid", "w").write(str(child.pid))
        time.sleep(60)
    """))
    data = _frame(50)
    result = TrainingRunner(command=(sys.executable, str(script)), timeout_s=3).run(
        _spec(data), data, tmp_path / "run")
    assert result.status == "timed_out"
    assert result.reason == "timed out after 3 s"
    assert 3 <= result.seconds < 20
    child = int((tmp_path / "run" / "child.pid").read_text())
    assert not _alive(child)


def _alive(pid: int) -> bool:
    """Running, not merely a zombie waiting for a parent that reaps nothing."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_command_entrypoint_that_writes_no_model_is_failed(tmp_path):
    data = _frame(50)
    result = TrainingRunner(command=(sys.executable, "-c", "print('nothing to see')"),
                            timeout_s=30).run(_spec(data), data, tmp_path / "run")
    assert (result.status, result.reason) == ("failed", "the entrypoint wrote no out/model.pt")


def test_a_lost_lease_stops_the_run(tmp_path):
    data = _frame(50)
    result = TrainingRunner(command=(sys.executable, "-c", "import time; time.sleep(60)"),
                            timeout_s=60).run(_spec(data), data, tmp_path / "run",
                                              heartbeat=lambda: False)
    assert result.status == "failed" and "lease was lost" in result.reason
    assert result.seconds < 20
