"""The demo model: fraud scoring on synthetic marketplace transactions, and its trainer.

``Transactions`` draws transactions whose fraud label follows a known logistic pattern.
``drift`` (0 to 1) moves the world: amounts and distances grow, cards are present less often,
and fraud shifts from large card-present purchases at risky merchants to bursts of small
card-not-present ones on young accounts, so a model trained before the drift loses quality
after it and a retrained one wins it back. ``train`` fits a small MLP (standardisation
inside the module, sigmoid output) in a second or two on 2 cores; it is the default training
entrypoint (``feedback.demo_model:train``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from telemetry.extras import require

from .training import TrainedModel, TrainingSpec

__all__ = ["FEATURES", "Transactions", "store_traffic", "train"]

FEATURES = ("amount", "hour", "account_age_days", "merchant_risk", "distance_km",
            "tx_last_24h", "card_present", "velocity_ratio")


@dataclass
class Transactions:
    """A seeded stream of synthetic transactions."""

    seed: int = 0

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)

    def sample(self, n: int, drift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """``n`` transactions: features ``[n, len(FEATURES)]`` (float32) and 0/1 labels."""
        rng, d = self._rng, float(np.clip(drift, 0.0, 1.0))
        amount = rng.lognormal(3.5 + 0.8 * d, 1.0, n)
        hour = rng.integers(0, 24, n).astype(float)
        age = rng.exponential(400 * (1 - 0.6 * d), n)
        risk = rng.beta(2, 5, n)
        distance = rng.exponential(10 * (1 + 3 * d), n)
        tx24 = rng.poisson(3 + 4 * d, n).astype(float)
        card_present = (rng.random(n) < 0.7 - 0.4 * d).astype(float)
        velocity = tx24 / (1 + rng.poisson(3, n))
        night = ((hour < 6) | (hour > 22)).astype(float)
        before = (1.2 * np.log1p(amount) + 4.0 * risk + 1.0 * card_present
                  + 0.8 * night - 10.0)
        after = (2.5 * (amount < 40) * (1 - card_present) + 0.8 * tx24 ** 0.5
                 + 2.0 * (age < 60) - 0.5 * np.log1p(amount) - 3.6)
        logit = (1 - d) * before + d * after
        labels = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
        features = np.stack([amount, hour, age, risk, distance, tx24, card_present, velocity],
                            axis=1).astype(np.float32)
        return features, labels


def store_traffic(store: Any, model: str, version: str, features: np.ndarray,
                  labels: np.ndarray | None, start: datetime, end: datetime, *,
                  scores: np.ndarray | None = None, label_delay: timedelta = timedelta(0),
                  ingested_at: datetime | None = None, prefix: str = "") -> list[str]:
    """Write transactions as inference logs of ``model`` ``version`` spread evenly over
    ``[start, end)``, ingested at their event time (or all at ``ingested_at``), and (when
    given) their labels ingested ``label_delay`` after that; returns the request ids. For
    tests and benchmarks that need a history; the demo sends its traffic through the real
    serving path instead."""
    n = len(features)
    step = (end - start) / max(n, 1)
    times = [start + step * i for i in range(n)]
    ingested = [ingested_at] * n if ingested_at is not None else times
    ids = [f"{prefix or model}-{version}-{uuid.uuid4().hex[:10]}-{i}" for i in range(n)]
    predicted = scores if scores is not None else np.full(n, 0.5)
    store.insert_columns("inference_logs", {
        "request_id": ids, "model": [model] * n, "model_version": [version] * n,
        "event_time": times, "ingest_time": ingested, "latency_ms": [2.0] * n,
        "status": ["ok"] * n, "error": [""] * n,
        "numeric_features": [dict(zip(FEATURES, map(float, row), strict=True))
                             for row in features],
        "categorical_features": [{} for _ in range(n)],
        "prediction": [float(p) for p in predicted], "prediction_label": [""] * n,
        "source": ["demo"] * n})
    if labels is not None:
        store.insert_columns("labels", {
            "request_id": ids, "label": [str(int(v)) for v in labels],
            "label_value": [float(v) for v in labels],
            "label_time": [t + label_delay for t in times],
            "ingest_time": [t + label_delay for t in ingested], "source": ["demo"] * n})
    return ids


def train(data: Any, spec: TrainingSpec) -> TrainedModel:
    """Fit the fraud MLP on ``data`` (a frame with the FEATURES columns and a 0/1 ``label``).

    Params (``spec.params``): ``epochs`` (default 40), ``hidden`` (32), ``lr`` (0.01),
    ``seed`` (0), ``fail`` (raise, for tests of failed runs), ``sleep_s`` (sleep first,
    for tests of timeouts)."""
    torch = require("torch", "the demo trainer")
    params = {"epochs": 40, "hidden": 32, "lr": 0.01, "seed": 0, **spec.params}
    if params.get("sleep_s"):
        import time

        time.sleep(float(params["sleep_s"]))
    if params.get("fail"):
        raise RuntimeError(f"training failed on purpose: {params['fail']}")
    features = tuple(f for f in spec.features or FEATURES if f in data.columns)
    if not features:
        raise ValueError(f"none of the features {list(spec.features or FEATURES)} in the data")
    x = torch.tensor(data[list(features)].to_numpy(dtype=np.float32))
    y = torch.tensor(_binary_labels(data["label"]), dtype=torch.float32)
    if len(x) < 10:
        raise ValueError(f"{len(x)} rows: too few to train on")
    torch.manual_seed(int(params["seed"]))
    model = fraud_mlp(x.mean(dim=0), x.std(dim=0).clamp_min(1e-6), len(features),
                     int(params["hidden"]))
    optimiser = torch.optim.Adam(model.parameters(), lr=float(params["lr"]))
    loss_fn = torch.nn.BCELoss()
    order = torch.Generator().manual_seed(int(params["seed"]))
    loss = torch.tensor(0.0)
    for _ in range(int(params["epochs"])):
        for batch in torch.randperm(len(x), generator=order).split(256):
            optimiser.zero_grad()
            loss = loss_fn(model(x[batch]), y[batch])
            loss.backward()
            optimiser.step()
    model.eval()
    with torch.no_grad():
        scores = model(x).numpy()
    return TrainedModel(model, features, params,
                        {"train_loss": float(loss.detach()), "train_rows": float(len(x)),
                         "train_positive_rate": float(y.mean()),
                         "train_roc_auc": _auc(y.numpy(), scores)})


def fraud_mlp(mean: Any, std: Any, n_features: int, hidden: int) -> Any:
    """The MLP as a ``torch.nn.Module``: standardise, two hidden layers, sigmoid."""
    torch = require("torch", "the demo model")

    class _FraudMLP(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", mean)
            self.register_buffer("std", std)
            self.layers = torch.nn.Sequential(
                torch.nn.Linear(n_features, hidden), torch.nn.ReLU(),
                torch.nn.Linear(hidden, hidden // 2), torch.nn.ReLU(),
                torch.nn.Linear(hidden // 2, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(self.layers((x - self.mean) / self.std)).squeeze(1)

    return _FraudMLP()


def _binary_labels(labels: Any) -> np.ndarray:
    return np.asarray([1.0 if str(v) in ("1", "1.0", "True", "true") else 0.0 for v in labels])


def _auc(y: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, scores)) if len(set(y.tolist())) == 2 else float("nan")
