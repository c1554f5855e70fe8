"""Small TorchScript scorers with known behaviour: a logistic model and its degraded twins.

For warm-up checks, tests and benchmarks, where a version must be healthy, or fail in one
known way: raise on a share of requests, answer slowly, answer with the wrong shape, or
score outside [0, 1].
"""

from __future__ import annotations

from pathlib import Path

from telemetry.extras import require

__all__ = ["save_scorer"]


def save_scorer(path: Path, n_features: int, *, weight: float = 1.0, bias: float = 0.0,
                fail_above: float | None = None, fail_after_calls: int = 0,
                slow_rounds: int = 0, wrong_shape: bool = False,
                logits: bool = False) -> Path:
    """Save ``sigmoid(weight * mean(x) + bias)`` as TorchScript at ``path``.

    ``fail_above``: raise when a row's first feature exceeds it (uniform features in [0, 1)
    with 0.8 fail a fifth of requests), once the model has answered ``fail_after_calls``
    calls: a version that passes its warm-up and degrades in service. ``slow_rounds``: that
    many 256x256 matrix products per request. ``wrong_shape``: return every feature instead
    of one score per row. ``logits``: skip the sigmoid, so scores leave [0, 1].
    """
    torch = require("torch", "the reference scorers")

    class Scorer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = weight
            self.bias = bias
            self.fail_above = fail_above if fail_above is not None else float("inf")
            self.fail_after_calls = fail_after_calls
            self.calls = 0
            self.slow_rounds = slow_rounds
            self.wrong_shape = wrong_shape
            self.logits = logits
            self.work = torch.nn.Parameter(torch.eye(256) * 0.5, requires_grad=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            if self.calls > self.fail_after_calls and bool((x[:, 0] > self.fail_above).any()):
                raise RuntimeError("degraded: feature 0 above the failure threshold")
            acc = self.work
            for _ in range(self.slow_rounds):
                acc = acc @ self.work + self.work
            z = self.weight * x.mean(dim=1) + self.bias + acc[0, 0] * 0.0
            if self.wrong_shape:
                return x
            if self.logits:
                return z * 10.0
            return torch.sigmoid(z)

    if n_features < 1:
        raise ValueError("a scorer needs at least one feature")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(torch.jit.script(Scorer()), str(path))
    return path
