"""The retrain policy on a real Redis: each rule refuses with its name, two processes
triggering at once start one run, and a crashed runner's slot frees itself."""

from __future__ import annotations

import multiprocessing
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import redis

from feedback.policy import RetrainPolicy
from feedback.settings import PolicySettings

POLICY = PolicySettings(cooldown=timedelta(minutes=30), daily_budget=2,
                        lease=timedelta(seconds=30), min_fresh_labels=100)


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def client(redis_server):
    connection = redis.Redis.from_url(redis_server.url)
    yield connection
    connection.close()


@pytest.fixture
def policy(client):
    clock = Clock(datetime(2026, 12, 2, 8, 0, tzinfo=UTC))
    return RetrainPolicy(client, prefix=f"t{uuid.uuid4().hex[:8]}", clock=clock)


def test_cooldown_then_budget_refuse_a_second_trigger_and_say_which_rule(policy):
    first, lease = policy.acquire("fraud", POLICY, fresh_labels=500)
    assert first.accepted and lease is not None
    lease.release()
    policy.clock.at += timedelta(minutes=10)
    second, none = policy.acquire("fraud", POLICY, fresh_labels=500)
    assert (second.accepted, second.rule, none) == (False, "cooldown", None)
    assert "600 s ago" in second.reason and "1200 s left" in second.reason
    policy.clock.at += timedelta(minutes=25)
    third, lease = policy.acquire("fraud", POLICY, fresh_labels=500)
    assert third.accepted
    lease.release()
    policy.clock.at += timedelta(minutes=31)
    fourth, _ = policy.acquire("fraud", POLICY, fresh_labels=500)
    assert (fourth.accepted, fourth.rule) == (False, "budget")
    assert "2 of 2 runs today" in fourth.reason
    # the budget is per UTC day, and per model
    other, lease = policy.acquire("recs", POLICY, fresh_labels=500)
    assert other.accepted
    lease.release()
    policy.clock.at = datetime(2026, 12, 3, 0, 5, tzinfo=UTC)
    tomorrow, lease = policy.acquire("fraud", POLICY, fresh_labels=500)
    assert tomorrow.accepted
    lease.release()


def test_too_few_fresh_labels_refuse_unless_forced(policy):
    refused, _ = policy.acquire("fraud", POLICY, fresh_labels=99)
    assert (refused.accepted, refused.rule) == (False, "fresh_labels")
    assert "99 labelled rows" in refused.reason and "fewer than 100" in refused.reason
    forced, lease = policy.acquire("fraud", POLICY, fresh_labels=0, force=True)
    assert forced.accepted and forced.reason == "forced"
    lease.release()
    # forcing skips the cooldown too, but never the one run in flight
    again, lease = policy.acquire("fraud", POLICY, fresh_labels=0, force=True)
    assert again.accepted
    blocked, _ = policy.acquire("fraud", POLICY, fresh_labels=0, force=True)
    assert (blocked.accepted, blocked.rule) == (False, "in_flight")
    assert again.run_id in blocked.reason
    lease.release()


def test_a_crashed_runners_lease_lapses_and_a_live_one_is_renewed(policy):
    short = POLICY.model_copy(update={"lease": timedelta(milliseconds=400)})
    held, lease = policy.acquire("fraud", short, fresh_labels=500)
    assert held.accepted
    for _ in range(4):  # the live runner renews: nobody else gets in
        time.sleep(0.2)
        assert lease.renew()
        assert policy.acquire("fraud", short, fresh_labels=500, force=True)[0].rule \
            == "in_flight"
    assert policy.in_flight("fraud") == held.run_id
    time.sleep(0.6)  # the runner "crashed": no renewal, the lease lapses
    assert policy.in_flight("fraud") is None
    taken, new_lease = policy.acquire("fraud", short, fresh_labels=500, force=True)
    assert taken.accepted
    assert not lease.renew()  # the crashed one cannot take it back
    lease.release()  # nor free its successor's slot
    assert policy.in_flight("fraud") == taken.run_id
    new_lease.release()


def _race(url: str, prefix: str, model: str, start_at: float, out: multiprocessing.Queue
          ) -> None:
    client = redis.Redis.from_url(url)
    policy = RetrainPolicy(client, prefix=prefix)
    while time.time() < start_at:
        pass
    decision, _ = policy.acquire(model, POLICY, fresh_labels=500)
    out.put(decision.accepted)


def test_two_processes_triggering_at_once_start_one_run(redis_server):
    context = multiprocessing.get_context("spawn")
    prefix = f"t{uuid.uuid4().hex[:8]}"
    for round_ in range(3):
        out = context.Queue()
        start_at = time.time() + 2.0
        workers = [context.Process(target=_race, args=(redis_server.url, prefix,
                                                       f"fraud{round_}", start_at, out))
                   for _ in range(2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
        assert sorted(out.get(timeout=5) for _ in workers) == [False, True]
