"""The `lite` runtime: opea-new's own small, fast engine with comps' API (engine/), extended (orchestrator.py).

    from opea_new_runtime.lite import ServiceOrchestrator, ServiceType, remote_service

A project on the `comps` runtime imports the same names from `opea_new_runtime.comps`.
"""

from .engine import LLMParams, MicroService, ServiceType
from .engine import ServiceOrchestrator as _LiteOrchestrator
from .megaservice import Megaservice
from .nodes import Node, remote_service_factory
from .orchestrator import Orchestration, PipelineError

RUNTIME = "lite"


class ServiceOrchestrator(Orchestration, _LiteOrchestrator):
    RUNTIME = RUNTIME
    LLMParams = LLMParams


remote_service = remote_service_factory(MicroService)

__all__ = ["RUNTIME", "LLMParams", "Megaservice", "MicroService", "Node", "PipelineError", "ServiceOrchestrator",
           "ServiceType", "remote_service"]
