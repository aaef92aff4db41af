"""How a request runs through a flow on either runtime (runtime_under_test.py): routing, failures, streams, statistics.

Each test builds a small orchestrator of its own (not the spec's) whose nodes
are routes of one aiohttp server running in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiohttp import web
from runtime_under_test import BaseOrchestrator, LLMParams, MicroService, Orchestrator, ServiceType

from opea_new_runtime.protocol import NodeError, StreamDecoder, spec_name
from opea_new_runtime.settings import Timeouts

Behaviour = Callable[[str, dict, web.Request], Awaitable[web.StreamResponse]]
RAW = LLMParams(stream=False)


async def passthrough(node: str, body: dict, request: web.Request) -> web.Response:
    return web.json_response({**body, "trace": [*body.get("trace", []), node]})


def answering(status: int, text: str, content_type: str = "application/json") -> Behaviour:
    async def behaviour(node: str, body: dict, request: web.Request) -> web.Response:
        return web.Response(status=status, text=text, content_type=content_type)

    return behaviour


def silent_for(seconds: float) -> Behaviour:
    async def behaviour(node: str, body: dict, request: web.Request) -> web.Response:
        await asyncio.sleep(seconds)
        return await passthrough(node, body, request)

    return behaviour


class Services:
    """One aiohttp server: POST /<node> runs that node's behaviour (by default it appends its name to `trace`)."""

    def __init__(self, **behaviours: Behaviour) -> None:
        self.behaviours = behaviours
        self.calls: list[str] = []
        self.cancelled: list[str] = []
        self.port = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        node = request.match_info["node"]
        body = await request.json()
        self.calls.append(node)
        try:
            return await self.behaviours.get(node, passthrough)(node, body, request)
        except asyncio.CancelledError:  # the caller went away
            self.cancelled.append(node)
            raise

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Services]:
        app = web.Application()
        app.router.add_post("/{node}", self.handle)
        runner = web.AppRunner(app, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = runner.addresses[0][1]
        try:
            yield self
        finally:
            await runner.cleanup()

    @contextlib.contextmanager
    def in_thread(self) -> Iterator[Services]:
        """The server on its own event loop, in a thread: it keeps answering even if the caller's loop blocks."""
        loop = asyncio.new_event_loop()
        started, stop = threading.Event(), asyncio.Event()

        async def serve() -> None:
            async with self.running():
                started.set()
                await stop.wait()

        thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
        thread.start()
        started.wait(10)
        try:
            yield self
        finally:
            loop.call_soon_threadsafe(stop.set)
            thread.join(10)
            loop.close()


def build(port: int, edges: list[tuple], *, nodes: list[str] = (), types: dict[str, ServiceType] | None = None,
          timeouts: Timeouts | None = None) -> Orchestrator:
    """An orchestrator of the nodes named in `edges` (source, target[, condition]) and `nodes`, in that order."""
    names = list(dict.fromkeys([*nodes, *(name for edge in edges for name in edge[:2])]))
    orchestrator = Orchestrator(timeouts=timeouts or Timeouts(call=10, connect=10, request=30))
    services = {
        name: MicroService(name=name, host="127.0.0.1", port=port, endpoint=f"/{name}", use_remote_service=True,
                           service_type=(types or {}).get(name, ServiceType.UNDEFINED))
        for name in names
    }
    for service in services.values():
        orchestrator.add(service)
    for source, target, *condition in edges:
        orchestrator.flow_to(services[source], services[target], *condition)
    return orchestrator


async def run(orchestrator: Orchestrator, inputs: dict, parameters: LLMParams = RAW) -> tuple[dict[str, Any], Any]:
    """(outputs by spec name, the runtime graph), the orchestrator's connections closed afterwards."""
    try:
        result_dict, runtime_graph = await orchestrator.schedule(initial_inputs=inputs, llm_parameters=parameters)
    finally:
        await orchestrator.aclose()
    return {spec_name(node): output for node, output in result_dict.items()}, runtime_graph


def graph_nodes(runtime_graph: Any) -> set[str]:
    return {spec_name(node) for node in runtime_graph.graph}


# ---------------------------------------------------------------- data through nodes that do not own it


async def retriever(node: str, body: dict, request: web.Request) -> web.Response:
    return web.json_response({"initial_query": body["text"], "retrieved_docs": [{"text": "OPEA is open."}]})


async def guardrail(node: str, body: dict, request: web.Request) -> web.Response:
    return web.json_response({"text": body["text"], "blocked": False})  # a TextDoc: no documents


async def llm(node: str, body: dict, request: web.Request) -> web.Response:
    return web.json_response({"text": f"{body['query']} | {' '.join(body.get('documents') or ['no documents'])}"})


@pytest.mark.parametrize("order", [
    ["retriever", "guardrail", "llm"],
    ["retriever", "guardrail", "check", "llm"],  # two nodes that do not own the documents
])
def test_the_documents_reach_an_llm_behind_nodes_that_do_not_carry_them(order):
    async def scenario():
        async with Services(retriever=retriever, guardrail=guardrail, llm=llm).running() as services:
            edges = list(zip(order, order[1:], strict=False))
            types = {"retriever": ServiceType.RETRIEVER, "guardrail": ServiceType.GUARDRAIL, "llm": ServiceType.LLM}
            outputs, _ = await run(build(services.port, edges, types=types), {"text": "what is opea"})
            assert outputs["llm"] == {"text": "what is opea | OPEA is open."}

    asyncio.run(scenario())


def test_a_parallel_branch_does_not_lend_its_fields():
    async def scenario():
        async with Services(retriever=retriever, guardrail=guardrail, llm=llm).running() as services:
            types = {"retriever": ServiceType.RETRIEVER, "guardrail": ServiceType.GUARDRAIL, "llm": ServiceType.LLM}
            # guardrail → llm, and a retriever on a branch of its own: its documents are not the llm's upstream
            edges = [("guardrail", "llm")]
            outputs, _ = await run(build(services.port, edges, nodes=["retriever"], types=types),
                                   {"text": "what is opea"})
            assert outputs["llm"] == {"text": "what is opea | no documents"}

    asyncio.run(scenario())


# ---------------------------------------------------------------- routing


def test_outputs_flow_along_a_chain():
    async def scenario():
        async with Services().running() as services:
            orchestrator = build(services.port, [("a", "b"), ("b", "c")])
            outputs, graph = await run(orchestrator, {"text": "hi"})
            assert outputs["c"] == {"text": "hi", "trace": ["a", "b", "c"]}
            assert [spec_name(node) for node in orchestrator.terminal_nodes(
                {f"{name}/MicroService": output for name, output in outputs.items()}, graph)] == ["c"]

    asyncio.run(scenario())


async def guard(node: str, body: dict, request: web.Request) -> web.Response:
    """Like the guardrail stub: when blocked, it also black-lists every downstream node."""
    if body["text"] == "bad":
        return web.json_response({"text": "refused", "blocked": True, "downstream_black_list": [".*"]})
    return web.json_response({"text": body["text"], "blocked": False})


@pytest.mark.parametrize(("text", "ran", "skipped"), [
    ("good", {"guard", "answer", "after_answer"}, {"refusal"}),
    ("bad", {"guard", "refusal"}, {"answer", "after_answer"}),
])
def test_only_edges_whose_condition_holds_are_taken(text, ran, skipped):
    async def scenario():
        async with Services(guard=guard).running() as services:
            orchestrator = build(services.port, [("guard", "answer", "!blocked"),
                                                 ("guard", "refusal", "blocked == true"),
                                                 ("answer", "after_answer")])
            outputs, graph = await run(orchestrator, {"text": text})
            assert set(outputs) == ran and graph_nodes(graph) == ran  # skipped nodes leave no trace
            assert not skipped & set(services.calls)
            assert all("downstream_black_list" not in output for output in outputs.values())

    asyncio.run(scenario())


def test_a_fan_in_node_merges_only_the_branches_taken():
    """x → z only when x says `go`; y → z always. x answers last: z must still run, with y's output alone."""

    async def scenario():
        y_done = asyncio.Event()

        async def x(node: str, body: dict, request: web.Request) -> web.Response:
            await y_done.wait()
            return web.json_response({"go": False, "from_x": True})

        async def y(node: str, body: dict, request: web.Request) -> web.Response:
            y_done.set()
            return await passthrough(node, body, request)

        async with Services(x=x, y=y).running() as services:
            orchestrator = build(services.port, [("x", "z", "go == true"), ("y", "z")])
            outputs, _ = await run(orchestrator, {"text": "hi"})
            assert outputs["z"] == {"text": "hi", "trace": ["y", "z"]}  # no `from_x`

    asyncio.run(scenario())


def test_a_fan_in_node_merges_every_branch_taken_in_flow_order():
    async def scenario():
        async def left(node: str, body: dict, request: web.Request) -> web.Response:
            return web.json_response({"left": 1, "shared": "left"})

        async def right(node: str, body: dict, request: web.Request) -> web.Response:
            return web.json_response({"right": 2, "shared": "right"})

        async with Services(left=left, right=right).running() as services:
            orchestrator = build(services.port, [("left", "merge"), ("right", "merge")])
            outputs, _ = await run(orchestrator, {"text": "hi"})
            assert outputs["merge"] == {"left": 1, "right": 2, "shared": "right", "trace": ["merge"]}  # last wins

    asyncio.run(scenario())


def test_a_service_black_list_stops_plain_edges():
    async def scenario():
        async with Services(guard=guard).running() as services:
            orchestrator = build(services.port, [("guard", "llm")])
            outputs, graph = await run(orchestrator, {"text": "bad"})
            assert outputs == {"guard": {"text": "refused", "blocked": True}}
            assert "llm" not in services.calls and graph_nodes(graph) == {"guard"}

    asyncio.run(scenario())


@pytest.mark.parametrize("fails", [True, False])
def test_an_error_edge_receives_the_error(fails):
    async def scenario():
        behaviours = {"worker": answering(503, '{"detail": "overloaded"}')} if fails else {}
        async with Services(**behaviours).running() as services:
            orchestrator = build(services.port, [("worker", "analyzer"), ("worker", "handler", "error")])
            outputs, _ = await run(orchestrator, {"text": "hi"})
            if fails:
                assert set(outputs) == {"worker", "handler"}
                error = outputs["handler"]["error"]
                assert (error["node"], error["status"]) == ("worker", 503) and "overloaded" in error["detail"]
                assert outputs["handler"]["trace"] == ["handler"]
            else:
                assert set(outputs) == {"worker", "analyzer"}

    asyncio.run(scenario())


# ---------------------------------------------------------------- failures


@pytest.mark.parametrize(("status", "text", "content_type"), [
    (503, '{"detail": "overloaded"}', "application/json"),  # comps 1.5 would pass this on as data
    (500, "Internal Server Error", "text/plain"),
    (422, '{"detail": [{"msg": "text is required"}]}', "application/json"),
])
def test_a_failing_node_fails_the_request_naming_it(status, text, content_type):
    async def scenario():
        async with Services(b=answering(status, text, content_type)).running() as services:
            with pytest.raises(NodeError) as caught:
                await run(build(services.port, [("a", "b"), ("b", "c")]), {"text": "hi"})
            assert (caught.value.node, caught.value.status, caught.value.http_status) == ("b", status, 502)
            assert text[:10] in caught.value.detail
            assert "c" not in services.calls

    asyncio.run(scenario())


def test_an_unreachable_node_is_named():
    async def scenario():
        async with Services().running() as services:
            orchestrator = build(services.port, [("a", "b")])
            orchestrator.services["b/MicroService"].port = unused_port()
            with pytest.raises(NodeError) as caught:
                await run(orchestrator, {"text": "hi"})
            assert (caught.value.node, caught.value.status, caught.value.http_status) == ("b", None, 502)

    asyncio.run(scenario())


def test_a_silent_node_times_out_and_so_does_a_slow_flow():
    async def scenario():
        async with Services(b=silent_for(5)).running() as services:
            with pytest.raises(NodeError) as call:
                await run(build(services.port, [("a", "b")], timeouts=Timeouts(call=0.2, connect=5, request=30)),
                          {"text": "hi"})
            assert (call.value.node, call.value.http_status) == ("b", 504)
            with pytest.raises(NodeError) as flow:
                await run(build(services.port, [("a", "b")], timeouts=Timeouts(call=30, connect=5, request=0.3)),
                          {"text": "hi"})
            assert (flow.value.node, flow.value.http_status) == ("b", 504)
            assert "MEGA_SERVICE_REQUEST_TIMEOUT" in flow.value.detail

    asyncio.run(scenario())


def test_siblings_are_cancelled_when_a_branch_fails():
    async def scenario():
        async with Services(fast=answering(500, "boom", "text/plain"), slow=silent_for(30)).running() as services:
            orchestrator = build(services.port, [], nodes=["slow", "fast"])
            with pytest.raises(NodeError) as caught:
                await run(orchestrator, {"text": "hi"})
            assert caught.value.node == "fast"
            for _ in range(100):  # the server notices the closed connection shortly after
                if "slow" in services.cancelled:
                    break
                await asyncio.sleep(0.05)
            assert services.cancelled == ["slow"]

    asyncio.run(scenario())


# ---------------------------------------------------------------- streams


def llm_types(*names: str) -> dict[str, ServiceType]:
    return dict.fromkeys(names, ServiceType.LLM)


def test_concurrent_streams_never_block_the_loop():
    """The LLM answers only once every request has reached it: one call blocking the loop would keep the
    others from being sent (comps 1.5 streams with a blocking `requests.post`), and the answers say so."""
    count = 4
    arrived = 0
    everyone = asyncio.Event()  # used on the server's loop only

    async def llm(node: str, body: dict, request: web.Request) -> web.StreamResponse:
        nonlocal arrived
        arrived += 1
        if arrived == count:
            everyone.set()
        try:
            await asyncio.wait_for(everyone.wait(), 10)
        except TimeoutError:
            return web.json_response({"detail": f"only {arrived} of {count} calls arrived"}, status=500)
        assert body["stream"] is True and body["query"] == "q"
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for token in ("one ", "two"):
            chunk = json.dumps({"choices": [{"delta": {"content": token}}]})
            await response.write(f"data: {chunk}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        return response

    async def one_stream(port: int) -> str:
        orchestrator = build(port, [], nodes=["llm"], types=llm_types("llm"))
        try:
            result_dict, _ = await orchestrator.schedule(initial_inputs={"text": "q"},
                                                         llm_parameters=LLMParams(stream=True))
            decoder = StreamDecoder()
            pieces = [piece async for chunk in result_dict["llm/MicroService"].body_iterator
                      for piece in decoder.feed(chunk)]
            return "".join(pieces + decoder.close())
        finally:
            await orchestrator.aclose()

    async def scenario(port: int) -> list[str]:
        return await asyncio.gather(*(one_stream(port) for _ in range(count)))

    with Services(llm=llm).in_thread() as services:
        assert asyncio.run(scenario(services.port)) == ["one two"] * count


def test_a_stream_that_fails_before_its_first_byte_is_a_node_error():
    async def scenario():
        async with Services(llm=answering(500, '{"detail": "model crashed"}')).running() as services:
            orchestrator = build(services.port, [], nodes=["llm"], types=llm_types("llm"))
            with pytest.raises(NodeError) as caught:
                await run(orchestrator, {"text": "q"}, LLMParams(stream=True))
            assert (caught.value.node, caught.value.status) == ("llm", 500)
            assert "model crashed" in caught.value.detail

    asyncio.run(scenario())


def test_an_llm_with_downstream_nodes_is_called_without_streaming():
    async def scenario():
        async def llm(node: str, body: dict, request: web.Request) -> web.Response:
            return web.json_response({"text": f"stream={body['stream']}", "prompt": body["query"]})

        async with Services(llm=llm).running() as services:
            orchestrator = build(services.port, [("llm", "after")], types=llm_types("llm"))
            outputs, _ = await run(orchestrator, {"text": "q"}, LLMParams(stream=True))
            assert outputs["after"]["text"] == "stream=False"

    asyncio.run(scenario())


# ---------------------------------------------------------------- the runtime's own API


def test_the_runtime_has_comps_public_api():
    """The runtime's own ServiceOrchestrator, not the extension: what OPEA code written for comps relies on."""

    async def left(node: str, body: dict, request: web.Request) -> web.Response:
        return web.json_response({"shared": "left", "left": True})

    async def guard(node: str, body: dict, request: web.Request) -> web.Response:
        return web.json_response({**body, "downstream_black_list": ["^never"]})

    async def llm(node: str, body: dict, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(f"data: {json.dumps(body['query'])}\n\ndata: [DONE]\n\n".encode())
        return response

    async def scenario(port: int) -> None:
        def service(name: str, service_type: ServiceType = ServiceType.UNDEFINED) -> MicroService:
            return MicroService(name=name, host="127.0.0.1", port=port, endpoint=f"/{name}",
                                use_remote_service=True, service_type=service_type)

        orchestrator = BaseOrchestrator()
        nodes = {name: service(name) for name in ("guard", "left", "right", "merge", "never")}
        nodes["llm"] = service("llm", ServiceType.LLM)
        for node in nodes.values():
            assert orchestrator.add(node) is orchestrator
        assert orchestrator.flow_to(nodes["guard"], nodes["left"]) and orchestrator.flow_to(nodes["guard"],
                                                                                            nodes["right"])
        for source, target in (("left", "merge"), ("right", "merge"), ("guard", "never"), ("merge", "llm")):
            assert orchestrator.flow_to(nodes[source], nodes[target])
        assert orchestrator.flow_to(nodes["llm"], nodes["guard"]) is False  # a cycle: False, not an exception
        result_dict, runtime_graph = await orchestrator.schedule(
            initial_inputs={"text": "q", "query": "q"}, llm_parameters=LLMParams(stream=True))
        assert set(result_dict) == {f"{name}/MicroService" for name in ("guard", "left", "right", "merge", "llm")}
        assert result_dict["merge/MicroService"]["shared"] == "right"  # fan-in: dict.update, the last one wins
        assert result_dict["merge/MicroService"]["left"] is True
        assert "never/MicroService" not in runtime_graph.graph  # pruned by the black list
        assert runtime_graph.all_leaves() == ["llm/MicroService"]
        final = orchestrator.get_all_final_outputs(result_dict, runtime_graph)
        stream = final["llm/MicroService"]
        chunks = [chunk async for chunk in stream.body_iterator]
        text = b"".join(chunk if isinstance(chunk, bytes) else chunk.encode() for chunk in chunks)
        assert text == b'data: "q"\n\ndata: [DONE]\n\n'
        close = getattr(orchestrator, "aclose", None)
        if close is not None:
            await close()

    async def passthrough_right(node: str, body: dict, request: web.Request) -> web.Response:
        return web.json_response({**body, "shared": "right"})

    # comps streams with a blocking call: its server must not share the loop
    with Services(guard=guard, left=left, right=passthrough_right, llm=llm).in_thread() as services:
        asyncio.run(scenario(services.port))


# ---------------------------------------------------------------- statistics


def test_statistics_count_calls_and_failures_per_node():
    async def scenario():
        async with Services(b=answering(500, "boom", "text/plain")).running() as services:
            orchestrator = build(services.port, [("a", "b")])
            with pytest.raises(NodeError):
                await run(orchestrator, {"text": "hi"})
            nodes = orchestrator.statistics.snapshot()["nodes"]
            assert (nodes["a"]["requests"], nodes["a"]["failures"]) == (1, 0)
            assert (nodes["b"]["requests"], nodes["b"]["failures"]) == (1, 1)
            metrics = orchestrator.statistics.prometheus()
            assert 'opea_megaservice_node_requests_total{node="b",outcome="failed"} 1' in metrics
            assert 'opea_megaservice_node_duration_seconds_count{node="a"} 1' in metrics

    asyncio.run(scenario())


# ---------------------------------------------------------------- helpers


def unused_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
