"""The `comps` runtime: opea-comps 1.5's own ServiceOrchestrator, extended (orchestrator.py).

    from opea_new_runtime.comps import ServiceOrchestrator, ServiceType, remote_service

A project on the `lite` runtime imports the same names from `opea_new_runtime.lite`.
"""

from comps import MicroService, ServiceType
from comps import ServiceOrchestrator as _CompsOrchestrator
from comps.cores.proto.docarray import LLMParams

from .megaservice import Megaservice
from .nodes import Node, remote_service_factory
from .orchestrator import Orchestration, PipelineError

RUNTIME = "comps"


class ServiceOrchestrator(Orchestration, _CompsOrchestrator):
    RUNTIME = RUNTIME
    LLMParams = LLMParams


remote_service = remote_service_factory(MicroService)

__all__ = ["RUNTIME", "LLMParams", "Megaservice", "MicroService", "Node", "PipelineError", "ServiceOrchestrator",
           "ServiceType", "remote_service"]
