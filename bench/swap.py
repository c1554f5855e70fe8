"""Hot swaps under load: failed requests, and latency during swaps against latency at rest.

For each backend (a real TorchServe, a real Triton, each started here on loopback ports):
version 1 is deployed, ``--threads`` clients send one request at a time to the model's
default route, and their latencies are timed for ``--rest`` seconds (the baseline, in the
same run). Then ``--swaps`` versions are deployed one after another through the verified
path (deploy, warm-up, promote, drain, retire the one before last) while the clients keep
sending. A request counts as "during a swap" if it started while one was under way.

Prints one JSON line per backend: ``backend``, ``swaps``, ``requests``, ``failed``,
``p50_swap_ms``, ``p99_swap_ms``, ``p50_rest_ms``, ``p99_rest_ms``, ``p99_ratio`` (swap over
rest) and ``swap_s`` (mean seconds per swap: deploy + warm + promote + drain).
"""

from __future__ import annotations

import argparse
import random
import threading
import time
from pathlib import Path
from typing import Any

from ._common import emit_result, log, percentile, temporary_directory

FEATURES = ("amount", "velocity", "account_age")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="torchserve,triton",
                        help="comma-separated: torchserve, triton (default both)")
    parser.add_argument("--swaps", type=int, default=10, help="swaps per backend (default 10)")
    parser.add_argument("--threads", type=int, default=2, help="client threads (default 2)")
    parser.add_argument("--rest", type=float, default=10.0,
                        help="seconds of traffic timed before the swaps (default 10)")
    args = parser.parse_args(argv)
    for backend in args.backends.split(","):
        emit_result(run_backend(backend.strip(), args.swaps, args.threads, args.rest))


def run_backend(backend: str, swaps: int, threads: int, rest_s: float) -> dict[str, Any]:
    from serving_adapters import (
        Deployer,
        DeploymentLog,
        ModelPackage,
        TorchServeAdapter,
        TorchServeSettings,
        TritonAdapter,
        TritonSettings,
        Verifier,
        VerifySettings,
    )
    from serving_adapters.reference_models import save_scorer
    from telemetry import Migrator, open_store
    from watchloop.services import TorchServeServer, TritonServer

    with temporary_directory(f"watchloop-bench-swap-{backend}-") as workdir:
        if backend == "torchserve":
            server: Any = TorchServeServer(workdir / "server")
            server.start(timeout=120)
            adapter: Any = TorchServeAdapter(TorchServeSettings(
                inference_url=server.inference_url, management_url=server.management_url,
                metrics_url=server.metrics_url, model_store=server.model_store, timeout_s=30))
        elif backend == "triton":
            server = TritonServer(workdir / "server")
            server.start(timeout=60)
            adapter = TritonAdapter(TritonSettings(
                type="triton", url=server.http_url, metrics_url=server.metrics_url,
                repository=server.model_repository, timeout_s=30))
        else:
            raise SystemExit(f"bench.swap: unknown backend {backend!r}")
        log(f"{backend} up at {adapter.address}")
        store = open_store("chdb://memory?database=bench_swap")
        Migrator(store).migrate()
        deployer = Deployer(adapter, DeploymentLog(store), Verifier(
            adapter, VerifySettings(warmup_requests=10, latency_budget_ms=500,
                                    replay_requests=0)))

        def package(version: str) -> Any:
            path = save_scorer(Path(workdir) / f"v{version}.pt", len(FEATURES),
                               weight=1 + int(version) / 10)
            return ModelPackage("fraud", version, path, FEATURES)

        try:
            first = deployer.deploy(package("1"), actor="bench")
            if first.outcome != "promoted":
                raise SystemExit(f"bench.swap: the first version failed: {first.reason}")
            clients = _Clients(adapter, threads)
            clients.start()
            time.sleep(rest_s)
            rest_end = time.monotonic()
            windows, seconds = [], []
            for i in range(2, swaps + 2):
                began = time.monotonic()
                result = deployer.deploy(package(str(i)), actor="bench")
                ended = time.monotonic()
                if result.outcome != "promoted":
                    raise SystemExit(f"bench.swap: version {i}: {result.reason}")
                windows.append((began, ended))
                seconds.append(ended - began)
                log(f"{backend}: swap {i - 1}/{swaps} in {ended - began:.2f} s")
                time.sleep(0.5)
            clients.stop()
        finally:
            adapter.close()
            store.close()
            server.stop()
    answers = clients.answers
    rest = [a[1] for a in answers if a[0] < rest_end and a[2]]
    during = [a[1] for a in answers
              if a[2] and any(b <= a[0] <= e for b, e in windows)]
    failed = sum(1 for a in answers if not a[2])
    p99_rest, p99_swap = percentile(rest, 99), percentile(during, 99)
    return {
        "backend": backend, "swaps": swaps, "requests": len(answers), "failed": failed,
        "p50_swap_ms": round(percentile(during, 50), 2), "p99_swap_ms": round(p99_swap, 2),
        "p50_rest_ms": round(percentile(rest, 50), 2), "p99_rest_ms": round(p99_rest, 2),
        "p99_ratio": round(p99_swap / p99_rest, 2),
        "swap_s": round(sum(seconds) / len(seconds), 2), "swap_s_max": round(max(seconds), 2),
        "threads": threads,
    }


class _Clients:
    """Threads sending one request at a time to the default route; each answer is
    ``(started, latency_ms, ok)``."""

    def __init__(self, adapter: Any, threads: int) -> None:
        self.adapter = adapter
        self.answers: list[tuple[float, float, bool]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._send, args=(i,), daemon=True)
                         for i in range(threads)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _send(self, seed: int) -> None:
        rng = random.Random(seed)
        client = type(self.adapter)(self.adapter.settings)
        while not self._stop.is_set():
            instance = {"features": {f: rng.random() for f in FEATURES}}
            started = time.monotonic()
            try:
                client.predict("fraud", [instance])
                ok = True
            except Exception:  # noqa: BLE001 - a failed request is counted, whatever it was
                ok = False
            self.answers.append((started, (time.monotonic() - started) * 1000, ok))
        client.close()


if __name__ == "__main__":
    main()
