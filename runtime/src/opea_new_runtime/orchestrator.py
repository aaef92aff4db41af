"""The runtime's ServiceOrchestrator (comps' or lite's), extended by overriding its methods, never patching it.

The runtime schedules the nodes; `Orchestration` decides, for the same result on both runtimes:
  * which nodes run (routing.py: edge conditions, a node whose incoming edges
    were all skipped is skipped, fan-in merges the predecessors that ran);
  * what each node receives (align.py, then the project's hooks.align_inputs); an
    llm/lvm node with downstream nodes is called with `stream: false`;
  * what it answered (align.py, then hooks.align_outputs);
  * failures: a node that answers an error status, cannot be reached or stays
    silent raises NodeError naming it (the app answers 502, or 504 for a
    timeout), unless it has an `error` edge: then the error document flows there;
  * which instance answers each call (instances.py: every instance of a node, least outstanding
    first, one retry on another instance when one refused before answering), chosen per call in
    `CheckedSession.post` and `_stream`: the shared MicroService is never changed;
  * streams: a terminal llm/lvm node is called without blocking the event loop
    (comps 1.5 uses a blocking `requests.post`), on the process's one HTTP client
    (`http_client()`: lite's own, aiohttp on comps), and its stream goes through
    hooks.align_generator.

    orchestrator = ServiceOrchestrator(hooks)            # hooks: a module with align_* functions, or None
    orchestrator.add(a).add(b)
    orchestrator.flow_to(a, b)                           # raises PipelineError on a bad edge (comps: False)
    orchestrator.flow_to(b, c, condition="!blocked")     # a conditional edge (see conditions.py)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextvars import ContextVar
from types import ModuleType
from typing import Any

import aiohttp
from fastapi.responses import StreamingResponse

from . import align, instances, settings
from .conditions import parse
from .nodes import Node, node_of
from .protocol import NodeError, raise_for_status, spec_name
from .routing import Flow, Run
from .statistics import Statistics

STREAMING_TYPES = ("llm", "lvm")


class PipelineError(RuntimeError):
    """The flow cannot be built (an edge to a node that was not added, or a cycle)."""


class Skipped(dict):
    """What a skipped node leaves for the runtime while a request runs (removed from the results)."""


# The request being scheduled; tasks the runtime starts for its nodes inherit it.
_current_run: ContextVar[Run | None] = ContextVar("current_run", default=None)


class Orchestration:
    """Mixed into a runtime's ServiceOrchestrator by opea_new_runtime.comps / .lite (`RUNTIME`, `LLMParams`)."""

    RUNTIME = ""
    LLMParams: type = dict

    def __init__(self, hooks: ModuleType | Any = None, timeouts: settings.Timeouts | None = None,
                 config: settings.MegaserviceSettings | None = None) -> None:
        super().__init__()
        self.config = config or settings.load()
        self.hooks = hooks
        self.timeouts = timeouts or settings.Timeouts.from_settings(self.config)
        self.node_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.timeouts.connect, sock_read=self.timeouts.call
        )
        self.statistics = Statistics()
        self.balancer = instances.Balancer(self.config)
        self.flow = Flow([], [])
        self._edges: list[tuple[str, str, str]] = []
        self._own_session: aiohttp.ClientSession | None = None  # comps: outlives requests (streams, pooled calls)
        self._types: dict[str, str] = {}
        self._nodes: dict[str, Node] = {}
        # comps opens a new aiohttp session, so new connections, for every request it schedules; on
        # request its nodes are called on this orchestrator's pooled session instead (lite always pools).
        self.pool_connections = self.RUNTIME == "comps" and self.config.pool_connections

    def add(self, service: Any) -> Orchestration:
        super().add(service)
        self.statistics.node(spec_name(service.name))
        static = getattr(service, "static_instances", None)
        if not hasattr(service, "static_instances"):  # a MicroService made without remote_service
            static = node_of(service).instances()
        self.balancer.add(service.name, service, static)
        self._rebuild_flow()
        return self

    def flow_to(self, from_service: Any, to_service: Any, condition: str = "success") -> bool:
        """comps' flow_to, checked (comps returns False on a bad edge), with the edge's condition."""
        if not super().flow_to(from_service, to_service):
            raise PipelineError(
                f"cannot add the edge {spec_name(from_service.name)} -> {spec_name(to_service.name)}: "
                "a node is missing from the orchestrator or the edge would close a cycle"
            )
        self._edges.append((from_service.name, to_service.name, condition))
        self._rebuild_flow()
        return True

    def _rebuild_flow(self) -> None:
        self.flow = Flow(self.services, [(source, target, parse(text)) for source, target, text in self._edges])

    # ------------------------------------------------------------ questions

    @property
    def nodes(self) -> list[Node]:
        """Every node, in the order added (the flow's order)."""
        return [node_of(service) for service in self.services.values()]

    @property
    def edges(self) -> list[tuple[str, str, str]]:
        """Every edge as (source, target, condition), by spec names, in the order added."""
        return [(spec_name(source), spec_name(target), condition) for source, target, condition in self._edges]

    def type_of(self, node: str) -> str:
        """The node's ServiceType name, lower-case (`llm`)."""
        service_type = self._types.get(node)
        if service_type is None:  # asked several times per node and request: worked out once
            service_type = self._types[node] = self.services[node].service_type.name.lower()
        return service_type

    def node(self, name: str) -> Node:
        """The Node of a runtime node name (worked out once)."""
        node = self._nodes.get(name)
        if node is None:
            node = self._nodes[name] = node_of(self.services[name])
        return node

    def terminal_nodes(self, result_dict: dict[str, Any], runtime_graph: Any) -> list[str]:
        """Nodes that ran and whose downstream nodes did not, in flow order."""
        ran = [node for node in self.services if node in result_dict]
        return [
            node for node in ran
            if node not in runtime_graph.graph
            or not any(downstream in result_dict for downstream in runtime_graph.downstream(node))
        ]

    # ------------------------------------------------------------ running a request

    async def schedule(self, initial_inputs: Any, llm_parameters: Any = None, **kwargs: Any) -> tuple[dict, Any]:
        """The runtime's schedule, within the request timeout; the results hold only the nodes that ran."""
        run = self.flow.start(initial_inputs)
        token = _current_run.set(run)
        try:
            async with asyncio.timeout(self.timeouts.request) as deadline:
                result_dict, runtime_graph = await super().schedule(
                    initial_inputs, llm_parameters=self.LLMParams() if llm_parameters is None else llm_parameters,
                    **kwargs,
                )
        except BaseException as error:
            # comps leaves the other branches running when one fails: stop them.
            await run.cancel()
            if isinstance(error, TimeoutError) and deadline.expired():
                waiting_for = run.waiting_for()  # the node still working when time ran out
                raise NodeError(
                    spec_name(waiting_for) if waiting_for else None, None,
                    f"the flow took longer than {self.timeouts.request:g} s (MEGA_SERVICE_REQUEST_TIMEOUT)",
                    timeout=True,
                ) from None
            raise
        finally:
            _current_run.reset(token)
        return run.results(result_dict, runtime_graph)

    async def execute(self, session, req_start, cur_node, inputs, runtime_graph, llm_parameters=None, **kwargs):
        run = _current_run.get()
        if run is not None:
            runs, inputs = run.inputs_of(cur_node, inputs)
            if not runs:
                run.skip(cur_node)
                return Skipped(), cur_node
            run.started(cur_node)
        if llm_parameters is None:
            llm_parameters = self.LLMParams()
        streams = self.type_of(cur_node) in STREAMING_TYPES and llm_parameters.stream
        if streams and runtime_graph.downstream(cur_node):
            # Only a terminal llm/lvm node streams: any other's answer flows on as JSON.
            llm_parameters = llm_parameters.model_copy(update={"stream": False})
            streams = False
        if isinstance(inputs, dict):
            inputs = dict(inputs)  # comps writes the LLM parameters into the dict it is given
        counter = self.statistics.node(spec_name(cur_node))
        started = time.perf_counter()
        try:
            if streams:
                output = await self._stream(cur_node, inputs, runtime_graph, llm_parameters, **kwargs)
            else:
                if self.pool_connections:
                    session = await self.http_client()
                checked = CheckedSession(session, self.node_timeout, self.balancer.get(cur_node))
                try:
                    output, _ = await super().execute(
                        checked, req_start, cur_node, inputs, runtime_graph, llm_parameters, **kwargs,
                    )
                except BaseException as error:
                    checked.done(error)
                    raise
                checked.done()
        except Exception as error:
            counter.record(time.perf_counter() - started, failed=True)
            failure = NodeError.from_exception(spec_name(cur_node), error)
            if run is None or not self.flow.routes_errors(cur_node):
                raise failure from error
            return run.finish(cur_node, failure.body(), failed=True), cur_node
        counter.record(time.perf_counter() - started)
        return (output if run is None else run.finish(cur_node, output)), cur_node

    async def _stream(self, cur_node: str, inputs: Any, runtime_graph: Any, llm_parameters: Any, **kwargs: Any) -> Any:
        """Call a terminal llm/lvm node that streams: its answer as a StreamingResponse, read as it arrives.

        comps 1.5 makes this call with a blocking `requests.post`, which stalls
        every other request of the megaservice; here it is aiohttp, on a session
        that outlives the request (the stream is read after `schedule` returned).
        """
        llm_parameters_dict = llm_parameters.model_dump()
        if isinstance(inputs, dict):
            inputs = {**inputs, **llm_parameters_dict}  # as comps does for llm/lvm nodes
        inputs = self.align_inputs(inputs, cur_node, runtime_graph, llm_parameters_dict, **kwargs)
        if hasattr(inputs, "model_dump"):
            inputs = inputs.model_dump(exclude_none=True)
        service = self.services[cur_node]
        headers = {"Content-Type": "application/json"}
        if service.api_key_value:
            headers["Authorization"] = f"Bearer {service.api_key_value}"
        model = inputs.get("model") if service.api_key_value and isinstance(inputs, dict) else None
        session = await self.http_client()
        response, lease = await instances.post(
            self.balancer.get(cur_node), session, service.endpoint_path(model), json=inputs, headers=headers,
            timeout=self.node_timeout,
        )
        if response.status >= 400 or response.content_type == "application/json":
            try:
                async with response:
                    await raise_for_status(response)
                    data = await response.json(content_type=None)  # a node that answered without streaming
            except BaseException as error:
                lease.done(error)
                raise
            lease.done()
            return self.align_outputs(data, cur_node, inputs, runtime_graph, llm_parameters_dict, **kwargs)
        chunks = self.align_generator(relay(response, lease), **kwargs)
        return StreamingResponse(chunks, media_type="text/event-stream")

    async def http_client(self) -> Any:
        """The process's one HTTP client, which outlives requests: lite's own pooled client, aiohttp on comps.

        lite's client costs about a third of aiohttp's CPU per call (benchmarks/runtime_speed.py, "floor"
        rows); comps keeps the library it is built on.
        """
        own = getattr(super(), "client", None)  # the lite engine's pooled client
        if own is not None:
            return await own()
        if self._own_session is None or self._own_session.closed:
            self._own_session = aiohttp.ClientSession(trust_env=False)
        return self._own_session

    async def aclose(self) -> None:
        """Close this orchestrator's connections (the app calls it at shutdown)."""
        if self._own_session is not None:
            await self._own_session.close()
        close = getattr(super(), "aclose", None)  # lite's pooled session; comps has none
        if close is not None:
            await close()

    # ------------------------------------------------------------ the runtime's hooks

    def _hook(self, name: str) -> Any:
        return getattr(self.hooks, name, None) if self.hooks is not None else None

    def align_inputs(self, inputs, cur_node, runtime_graph, llm_parameters_dict, **kwargs):
        service_type = self.type_of(cur_node)
        stream = None
        if service_type in STREAMING_TYPES:
            stream = bool(llm_parameters_dict.get("stream")) and not runtime_graph.downstream(cur_node)
        node = self.node(cur_node)
        inputs = align.node_inputs(service_type, inputs, stream=stream, server=node.server,
                                   model=node.model_id() if node.server else None,
                                   carried=self._carried(cur_node))
        hook = self._hook("align_inputs")
        if hook is None:
            return inputs
        return hook(inputs, node=spec_name(cur_node), service_type=service_type, runtime_graph=runtime_graph,
                    llm_parameters=llm_parameters_dict, **kwargs)

    def align_outputs(self, data, cur_node, inputs, runtime_graph, llm_parameters_dict, **kwargs):
        service_type = self.type_of(cur_node)
        data = align.node_outputs(service_type, data, inputs, server=self.node(cur_node).server,
                                  carried=self._carried(cur_node))
        hook = self._hook("align_outputs")
        if hook is None:
            return data
        return hook(data, node=spec_name(cur_node), service_type=service_type, inputs=inputs,
                    runtime_graph=runtime_graph, llm_parameters=llm_parameters_dict, **kwargs)

    @staticmethod
    def _carried(cur_node: str) -> Any:
        """What the upstream nodes of `cur_node` answered in this request, as a function (align asks when needed)."""
        run = _current_run.get()
        return None if run is None else (lambda: run.carried(cur_node))

    def align_generator(self, gen, *args, **kwargs):
        hook = self._hook("align_generator")
        return gen if hook is None else hook(gen, **kwargs)


class CheckedSession:
    """The session a runtime posts with, checking every answer's status and applying the node timeout.

    comps feeds an error answer with a JSON body to the next node as if it were
    data; through this wrapper every error status raises instead (NodeError → 502).
    """

    def __init__(self, session: aiohttp.ClientSession, timeout: aiohttp.ClientTimeout,
                 pool: instances.Instances | None = None) -> None:
        self._session = session
        self._timeout = timeout
        self._pool = pool
        self._leases: list[instances.Lease] = []

    async def post(self, url: str, **kwargs: Any) -> aiohttp.ClientResponse:
        """The node's answer, from the instance chosen for this call (`url` names the node's own address)."""
        kwargs.setdefault("timeout", self._timeout)
        response, lease = await instances.post(self._pool, self._session, url, **kwargs)
        self._leases.append(lease)
        if response.status >= 400:
            async with response:
                await raise_for_status(response)
        return response

    def done(self, error: BaseException | None = None) -> None:
        """The call is over (its answer read, or failed with `error`): its instance is free again."""
        for lease in self._leases:
            lease.done(error)
        self._leases.clear()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


async def relay(response: Any, lease: instances.Lease = instances.NO_LEASE) -> AsyncIterator[bytes]:
    """A streaming answer (lite's or aiohttp's), chunk by chunk as it arrives; released at the end.

    A stream that breaks off is never sent again (part of it was relayed): the error goes on to the client.
    """
    chunks = response.iter_chunks() if hasattr(response, "iter_chunks") else response.content.iter_any()
    failure: BaseException | None = None
    try:
        async for chunk in chunks:
            yield chunk
    except BaseException as error:
        failure = error
        raise
    finally:
        response.release()
        lease.done(failure)
