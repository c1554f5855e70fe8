"""Watchloop's Triton Python-backend model: runs a TorchScript version, logs each payload.

Inputs: either ``INSTANCES``, BYTES ``[n]`` of JSON instances (``{"request_id", "features"}``,
features by name, as the TorchServe handler takes them), or ``FEATURES`` FP32
``[n, len(features)]`` in the model's order with an optional ``REQUEST_ID`` BYTES ``[n]``.
Outputs: ``SCORE`` FP32 ``[n]`` and ``REQUEST_ID`` BYTES ``[n]``; Triton's response names the
version (``model_version``). Payload logs lost so far are the ``watchloop_payload_log_lost``
counter on Triton's metrics.
"""

import json
import time
import uuid
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils
from watchloop_runtime import BadRequest, ModelRuntime, failure_text, request_ids


class TritonPythonModel:
    def initialize(self, args):
        directory = Path(args["model_repository"]) / args["model_version"]
        self.runtime = ModelRuntime(directory)
        self.reported = 0
        try:
            # The family must outlive its metric (Triton refuses to count otherwise).
            self.lost_family = family = pb_utils.MetricFamily(
                name="watchloop_payload_log_lost",
                description="Payload logs that did not reach the broker",
                kind=pb_utils.MetricFamily.COUNTER)
            self.lost_metric = family.Metric(labels={"model": self.runtime.model_name,
                                                     "version": self.runtime.version})
        except Exception as exc:  # noqa: BLE001 - metrics must never stop the model
            pb_utils.Logger.log_warn(f"watchloop: no payload-log metric: {exc}")
            self.lost_metric = None

    def execute(self, requests):
        return [self._answer(request) for request in requests]

    def _answer(self, request):
        started = time.perf_counter()
        runtime = self.runtime
        try:
            ids, rows = self._inputs(request)
        except (BadRequest, ValueError) as exc:
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(f"bad request: {exc}"))
        try:
            scores = runtime.score(rows)
        except Exception as exc:  # noqa: BLE001 - answered as an error, logged as one
            runtime.log(ids, rows, None, started, error=failure_text(exc))
            self._report_lost()
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(
                f"model {runtime.model_name} version {runtime.version} failed: "
                f"{failure_text(exc)}"))
        runtime.log(ids, rows, scores, started)
        self._report_lost()
        return pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor("SCORE", np.asarray(scores, dtype=np.float32)),
            pb_utils.Tensor("REQUEST_ID", np.asarray(ids, dtype=np.object_)),
        ])

    def _inputs(self, request):
        runtime = self.runtime
        given = pb_utils.get_input_tensor_by_name(request, "INSTANCES")
        if given is not None:
            instances = [json.loads(v) for v in given.as_numpy().reshape(-1)]
            return request_ids(instances), runtime.matrix(instances)
        features = pb_utils.get_input_tensor_by_name(request, "FEATURES")
        if features is None:
            raise BadRequest("send INSTANCES (JSON) or FEATURES (FP32)")
        rows = features.as_numpy().astype(np.float32).reshape(-1, len(runtime.features)).tolist()
        ids_tensor = pb_utils.get_input_tensor_by_name(request, "REQUEST_ID")
        if ids_tensor is None:
            return [uuid.uuid4().hex for _ in rows], rows
        ids = [v.decode() if isinstance(v, bytes) else str(v)
               for v in ids_tensor.as_numpy().reshape(-1)]
        if len(ids) != len(rows):
            raise BadRequest(f"REQUEST_ID has {len(ids)} ids for {len(rows)} rows of FEATURES")
        return ids, rows

    def _report_lost(self):
        lost = self.runtime.lost
        if self.lost_metric is not None and lost > self.reported:
            try:
                self.lost_metric.increment(lost - self.reported)
                self.reported = lost
            except Exception:  # noqa: BLE001 - metrics must never fail a request
                pass

    def finalize(self):
        if self.runtime.payload_log is not None:
            self.runtime.payload_log.close()
