"""lite: a small, fast orchestrator with the public API of comps' `ServiceOrchestrator`.

The runtime library extends either `comps` or this engine (opea_new_runtime.comps / .lite);
everything else is written once against the API both share:

    MicroService(name=..., host=..., port=..., endpoint=..., use_remote_service=True,
                 service_type=ServiceType.LLM)
    orchestrator = ServiceOrchestrator()
    orchestrator.add(a).add(b)
    orchestrator.flow_to(a, b)                     # False (not an exception) on a bad edge
    result_dict, runtime_graph = await orchestrator.schedule(initial_inputs, llm_parameters=LLMParams())

What lite keeps from comps 1.5: node names (`name/MicroService`), fan-in (the
outputs of every predecessor merged with `dict.update`, the last one wins),
`downstream_black_list` pruning, the `align_inputs` / `align_outputs` /
`align_generator` hooks and the DAG methods (`downstream`, `predecessors`,
`all_leaves`, ...). What it does differently: one pooled HTTP client per
process (http.py) instead of a new aiohttp session per request, fully async
streaming (never `requests`), a non-2xx answer raises `http.ResponseError`
instead of flowing on, sibling branches are cancelled when one fails, and a
streaming LLM that has downstream nodes is called without streaming.
"""

from .constants import ServiceRoleType, ServiceType
from .dag import DAG
from .orchestrator import ServiceOrchestrator
from .params import LLMParams
from .service import MicroService

__all__ = ["DAG", "LLMParams", "MicroService", "ServiceOrchestrator", "ServiceRoleType", "ServiceType"]
