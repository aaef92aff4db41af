"""ServiceOrchestrator: run a request through the DAG of remote services.

The scheduling follows comps 1.5 step by step, so a pipeline behaves the same
on both runtimes: every entry node starts with the initial inputs; when a node
answers, each downstream node whose predecessors have all answered starts with
their outputs merged (`dict.update`, the last predecessor wins); an output
carrying `downstream_black_list` (regular expressions) removes the matching
downstream edges. Sibling branches run concurrently.

The HTTP side is built for speed and clear failures: one pooled client per
process (http.py: keep-alive connections, created on the running loop, closed by
`aclose()`), streams relayed chunk by chunk without blocking the loop, and an
error status raised as `http.ResponseError` (with the start of the service's
answer as its message) instead of being passed on as data.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Coroutine
from typing import Any

from pydantic import BaseModel
from starlette.responses import StreamingResponse

from .constants import ServiceType
from .dag import DAG
from .http import Client, HTTPError, ResponseError, Timeout
from .params import LLMParams
from .service import MicroService

logger = logging.getLogger(__name__)

STREAMING_TYPES = (ServiceType.LLM, ServiceType.LVM)
MAX_ERROR_DETAIL = 2000


class ServiceOrchestrator(DAG):
    """Manage 1 or N remote services in a DAG (the API of comps' `ServiceOrchestrator`)."""

    def __init__(self) -> None:
        self.services: dict[str, MicroService] = {}
        # comps' fixed timeout; the megaservice passes its own per call.
        self.timeout = Timeout(connect=2000, read=2000)
        self.connection_limit = 512
        self._session: Client | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        super().__init__()

    # ------------------------------------------------------------ building

    def add(self, service: MicroService) -> ServiceOrchestrator:
        if service.name in self.services:
            raise ValueError(f"Service {service.name} already exists!")
        self.services[service.name] = service
        self.add_node_if_not_exists(service.name)
        return self

    def flow_to(self, from_service: MicroService, to_service: MicroService) -> bool:
        """Add an edge; False (as in comps) when a node is unknown or the edge would close a cycle."""
        try:
            self.add_edge(from_service.name, to_service.name)
        except (KeyError, ValueError) as error:
            logger.error("cannot add the edge %s -> %s: %s", from_service.name, to_service.name, error)
            return False
        return True

    # ------------------------------------------------------------ the HTTP client

    async def client(self) -> Client:
        """The process-wide client, created on the running loop the first time it is needed."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session_loop is not loop:
            self._session = Client(limit_per_host=self.connection_limit, timeout=self.timeout)
            self._session_loop = loop
        return self._session

    async def aclose(self) -> None:
        """Close the pooled connections (call on shutdown)."""
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None
        self._session_loop = None

    # ------------------------------------------------------------ running a request

    async def schedule(
        self,
        initial_inputs: dict | BaseModel,
        llm_parameters: LLMParams | None = None,
        **kwargs: Any,
    ) -> tuple[dict[str, Any], DAG]:
        """Run the flow; return every node's output by node name, and the graph that actually ran."""
        llm_parameters = LLMParams() if llm_parameters is None else llm_parameters
        if isinstance(initial_inputs, BaseModel):
            initial_inputs = initial_inputs.model_dump(exclude_none=True)
        req_start = time.monotonic()
        session = await self.client()
        result_dict: dict[str, Any] = {}
        runtime_graph = DAG()
        runtime_graph.graph = type(self.graph)((node, set(edges)) for node, edges in self.graph.items())
        entry_nodes = self.ind_nodes()
        pruned = False

        def call(node: str, inputs: dict) -> Coroutine[Any, Any, tuple[Any, str]]:
            return self.execute(session, req_start, node, inputs, runtime_graph, llm_parameters, **kwargs)

        def finished(response: Any, node: str) -> list[tuple[str, dict]]:
            """Record a node's answer; return the downstream nodes it made ready, with their inputs."""
            nonlocal pruned
            result_dict[node] = response
            downstreams = runtime_graph.downstream(node)
            if isinstance(response, dict) and "downstream_black_list" in response:
                downstreams = self._prune(node, response, downstreams, runtime_graph)
                pruned = True
                if not downstreams and llm_parameters.stream and "text" in response:
                    result_dict[node] = _text_stream(response["text"])
            ready = []
            for downstream in downstreams:
                predecessors = runtime_graph.predecessors(downstream)
                if all(predecessor in result_dict for predecessor in predecessors):
                    ready.append((downstream, self.process_outputs(predecessors, result_dict)))
            return ready

        ready = [(node, initial_inputs) for node in entry_nodes]
        pending: set[asyncio.Task] = set()
        try:
            while ready or pending:
                if len(ready) == 1 and not pending:
                    # The only node that can run now is awaited in place: a chain needs no task at all.
                    ready = finished(*await call(*ready[0]))
                    continue
                pending.update(asyncio.create_task(call(node, inputs)) for node, inputs in ready)
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                ready = [item for task in done for item in finished(*task.result())]
        except BaseException:
            for task in pending:  # a failed node fails the request: stop its siblings
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            raise

        if pruned:  # as comps: the graph that ran keeps only what the entry nodes still reach
            reachable = set(entry_nodes)
            for node in entry_nodes:
                reachable.update(runtime_graph.all_downstreams(node))
            for node in list(runtime_graph.graph):
                if node not in reachable:
                    runtime_graph.delete_node_if_exists(node)
        return result_dict, runtime_graph

    def _prune(self, node: str, response: dict, downstreams: list[str], runtime_graph: DAG) -> list[str]:
        kept = list(downstreams)
        for pattern in response.get("downstream_black_list") or ():
            for downstream in list(kept):
                try:
                    if re.findall(pattern, downstream):
                        runtime_graph.delete_edge(node, downstream)
                        kept.remove(downstream)
                except re.error:
                    logger.error("%s: invalid downstream_black_list pattern %r", node, pattern)
        return kept

    def process_outputs(self, prev_nodes: list[str], result_dict: dict[str, Any]) -> dict:
        """The input of a node: its predecessors' outputs merged in order (the last one wins)."""
        all_outputs: dict = {}
        for prev_node in prev_nodes:
            all_outputs.update(result_dict[prev_node])
        return all_outputs

    async def execute(
        self,
        session: Client,
        req_start: float,
        cur_node: str,
        inputs: dict | BaseModel,
        runtime_graph: DAG,
        llm_parameters: LLMParams | None = None,
        **kwargs: Any,
    ) -> tuple[Any, str]:
        """Call one node; return (its aligned output or a StreamingResponse, its name)."""
        llm_parameters = LLMParams() if llm_parameters is None else llm_parameters
        llm_parameters_dict = llm_parameters.model_dump()
        service = self.services[cur_node]
        if isinstance(inputs, BaseModel):
            inputs = inputs.model_dump(exclude_none=True)
        inputs = dict(inputs)  # never change the caller's (or a sibling's) dict
        is_llm_vlm = service.service_type in STREAMING_TYPES
        has_downstream = bool(runtime_graph.downstream(cur_node))
        if is_llm_vlm:
            inputs.update(llm_parameters_dict)
            if has_downstream:
                inputs["stream"] = False  # its output flows on: it must be a JSON document
        inputs = self.align_inputs(inputs, cur_node, runtime_graph, llm_parameters_dict, **kwargs)
        access_token = service.api_key_value
        endpoint = service.endpoint_path(inputs.get("model") if access_token and isinstance(inputs, dict) else None)
        headers = {"Content-Type": "application/json"}
        if access_token:
            headers["Authorization"] = f"Bearer {access_token}"
        if isinstance(inputs, BaseModel):
            inputs = inputs.model_dump(exclude_none=True)

        response = await session.post(endpoint, json=inputs, headers=headers)
        streaming = is_llm_vlm and llm_parameters.stream and not has_downstream
        if streaming and response.content_type != "application/json":
            try:
                await raise_for_status(response)
            except BaseException:
                response.release()
                raise
            generator = self.align_generator(response.iter_chunks(), **kwargs)
            return StreamingResponse(generator, media_type="text/event-stream"), cur_node

        async with response:
            await raise_for_status(response)
            if response.content_type == "audio/wav":
                data: Any = await response.read()
            else:
                data = await response.json(content_type=None)
        data = self.align_outputs(data, cur_node, inputs, runtime_graph, llm_parameters_dict, **kwargs)
        return data, cur_node

    # ------------------------------------------------------------ hooks

    def align_inputs(self, inputs, *args, **kwargs):
        """Override to adapt what a node receives."""
        return inputs

    def align_outputs(self, data, *args, **kwargs):
        """Override to adapt what a node answered."""
        return data

    def align_generator(self, gen, *args, **kwargs):
        """Override to adapt the stream of a streaming llm/lvm node."""
        return gen

    def get_all_final_outputs(self, result_dict: dict[str, Any], runtime_graph: DAG) -> dict[str, Any]:
        return {leaf: result_dict[leaf] for leaf in runtime_graph.all_leaves()}


async def raise_for_status(response: Any) -> None:
    """Raise `http.ResponseError` for an error status, with the start of the service's answer as message."""
    if response.status < 400:
        return
    try:
        detail = (await response.text(errors="replace"))[:MAX_ERROR_DETAIL]
    except (TimeoutError, HTTPError, OSError):
        detail = ""
    raise ResponseError(response.status, detail.strip() or response.reason or f"HTTP {response.status}")


def _text_stream(text: str) -> StreamingResponse:
    """What comps answers when a node's black list stopped a streaming flow: its text as one SSE event."""
    events = [f"data: {text.encode('utf-8')!r}\n\n", "data: [DONE]\n\n"]
    return StreamingResponse(iter(events), media_type="text/event-stream")
