"""``python -m feedback.worker RUN_DIR``: run a Python training entrypoint in its own process.

The runner starts this with a timeout: it reads ``spec.json`` and ``data.parquet`` from the
run directory, calls the entrypoint, and saves the module as TorchScript with the result
(see ``feedback.training``). Anything it prints lands in the run's log.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path

from .training import DATA_FILE, MODEL_FILE, RESULT_FILE, TrainedModel, TrainingSpec


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m feedback.worker RUN_DIR ENTRYPOINT", file=sys.stderr)
        return 2
    run_dir, entrypoint = Path(argv[0]), argv[1]
    import pandas as pd
    import torch

    torch.set_num_threads(1)
    spec = TrainingSpec.load(run_dir)
    data = pd.read_parquet(run_dir / DATA_FILE)
    module_name, _, function_name = entrypoint.partition(":")
    function = getattr(importlib.import_module(module_name), function_name)
    started = time.perf_counter()
    print(f"training {spec.model} on {spec.rows} rows ({spec.checksum}) with {entrypoint}",
          flush=True)
    trained = function(data, spec)
    if not isinstance(trained, TrainedModel):
        raise TypeError(f"{entrypoint} returned {type(trained).__name__}, not a TrainedModel")
    model_path = run_dir / MODEL_FILE
    model_path.parent.mkdir(parents=True, exist_ok=True)
    module = trained.module
    if not isinstance(module, torch.jit.ScriptModule):
        module = torch.jit.script(module)
    torch.jit.save(module, str(model_path))
    (run_dir / RESULT_FILE).write_text(json.dumps({
        "features": list(trained.features), "params": trained.params,
        "metrics": {**trained.metrics, "train_s": time.perf_counter() - started}},
        default=str, sort_keys=True))
    print(f"trained in {time.perf_counter() - started:.2f} s: {trained.metrics}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
