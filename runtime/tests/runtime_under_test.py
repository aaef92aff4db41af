"""The runtime these tests run on: OPEA_NEW_RUNTIME=comps|lite (default lite), so one suite covers both.

    OPEA_NEW_RUNTIME=comps python -m pytest runtime/tests     # in a venv with opea-comps 1.5
"""

from __future__ import annotations

import importlib
import os

RUNTIME = os.environ.get("OPEA_NEW_RUNTIME", "lite")
if RUNTIME not in ("comps", "lite"):
    raise RuntimeError(f"OPEA_NEW_RUNTIME must be comps or lite, not {RUNTIME!r}")

_facade = importlib.import_module(f"opea_new_runtime.{RUNTIME}")
if RUNTIME == "comps":
    from comps import ServiceOrchestrator as BaseOrchestrator
else:
    from opea_new_runtime.engine import ServiceOrchestrator as BaseOrchestrator

LLMParams = _facade.LLMParams
MicroService = _facade.MicroService
Orchestrator = _facade.ServiceOrchestrator
ServiceType = _facade.ServiceType
remote_service = _facade.remote_service

__all__ = ["RUNTIME", "BaseOrchestrator", "LLMParams", "MicroService", "Orchestrator", "ServiceType",
           "remote_service"]
