"""Files that run inside the model servers, copied into every packaged version.

``torchserve_handler.py`` is the TorchServe handler and ``triton_model.py`` the Triton
Python-backend ``model.py``; both load a version with ``watchloop_runtime`` (a copy of
``serving_adapters.runtime``) and publish payload logs with ``watchloop_payload_log``.
"""
