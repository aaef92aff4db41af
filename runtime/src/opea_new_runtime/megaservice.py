"""The megaservice: the pipeline's HTTP API, a plain FastAPI app served by uvicorn.

    POST <endpoint>            the pipeline (protocol chat or raw, see protocol.py)
    POST /v1/chat/completions  chat protocol: the same pipeline, for OpenAI's SDKs (errors in OpenAI's shape too)
    GET  /v1/models            chat protocol: the pipeline as the one model (its name), as OpenAI lists models
    GET  /v1/health_check      liveness (also /v1/health and /health): 200 once the process serves
    GET  /v1/health/ready      readiness: 200 {"ready": true, "not_ready": []} when every node answers its
                               /v1/health_check (a model server: /health) with 200, else 503
                               {"ready": false, "not_ready": [{"node", "address", "detail"}]}; every
                               instance of every node is probed in parallel (a node is ready when one of
                               its instances is; one that fails is set aside), READINESS_TIMEOUT seconds
                               each; the answer is kept READINESS_CACHE seconds
    GET  /v1/services          every node's instances (instances.py) and what the megaservice knows of them:
                               {"services": [{"name", "type", "discovery", "host", "port", "instances":
                               [{"address", "state": healthy | set_aside | unknown, "outstanding",
                               "requests", "failures"}]}]}; a management endpoint (API keys guard it)
    GET  /v1/statistics        request counts and latencies of the megaservice and of every node
    GET  /metrics              the same, in Prometheus' text format

A project's pipeline module declares `MEGASERVICE = Megaservice(...)` and
`build_orchestrator()`; `create_app(MEGASERVICE, build_orchestrator)` is its app,
and `serve(MEGASERVICE, build_orchestrator)` what `python -m megaservice` runs.
The orchestrator is built at startup, so it reads the environment of that moment.

The request body is strict JSON (opea_new_runtime.jsonbody: no NaN or Infinity, no lone
surrogates, at most 64 levels deep, integers of at most 100 digits, at most 16 MiB): a
bad body is a 400 (413 when too large) `{"error": {"node": null, "status", "detail"}}`,
a body that is JSON but not a request of the protocol a 422. The OpenAPI document
declares the protocol's request body and every answer: 200 (JSON, or an SSE stream
`text/event-stream`), 400, 413, 422, 502, 504; /metrics is `text/plain`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from . import access, jsonbody, settings
from .nodes import node_of
from .protocol import (
    DONE,
    ChatAnswer,
    ChatRequest,
    NodeError,
    RequestError,
    StreamDecoder,
    counted_usage,
    error_event,
    finish_reason_of,
    openai_error_body,
    parse_chat_request,
    parse_raw_request,
    spec_name,
    text_of,
    usage_of,
    words,
)

logger = logging.getLogger("megaservice")

CHAT_ANSWER_TYPES = ("llm", "lvm")
OPENAI_ROUTE = "/v1/chat/completions"
READY_ROUTE = "/v1/health/ready"
CREATED = int(time.time())  # when this process started: the `created` of the one model /v1/models lists
READINESS_TIMEOUT = 2.0  # seconds a node's /v1/health_check may take
READINESS_CACHE = 1.0  # seconds an answer of /v1/health/ready is kept


@dataclass(frozen=True)
class Megaservice:
    """What the spec fixed about the megaservice."""

    name: str
    port: int
    endpoint: str
    protocol: Literal["chat", "raw"] = "chat"
    description: str = ""
    ui_port: int | None = None  # the web UI's port (opea_new_runtime.ui); None: the project has no UI


def create_app(megaservice: Megaservice, build_orchestrator: Callable[[], Any]) -> FastAPI:
    """The app; `build_orchestrator()` is called at startup (so it reads the environment of that moment)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        orchestrator = build_orchestrator()
        settings.bypass_proxies([*(service.host for service in orchestrator.services.values()),
                                 *orchestrator.balancer.hosts()])
        app.state.orchestrator = orchestrator
        yield
        await orchestrator.aclose()

    app = FastAPI(title=megaservice.name, description=megaservice.description, lifespan=lifespan)
    handle = chat if megaservice.protocol == "chat" else raw
    readiness = Readiness()

    async def answer(orchestrator: Any, body: bytes | jsonbody.BodyError, openai: bool = False) -> Response:
        """The pipeline's answer to a request body (or to why it could not be read): failures answer JSON.

        `openai`: the request came to /v1/chat/completions, so errors carry OpenAI's fields too.
        """
        def failed(error: RequestError | NodeError) -> dict[str, Any]:
            return openai_error_body(error) if openai else error.body()

        counter = orchestrator.statistics.megaservice
        started = time.perf_counter()
        try:
            try:
                if isinstance(body, jsonbody.BodyError):
                    raise body
                document = jsonbody.loads(body)
            except jsonbody.BodyError as error:
                raise RequestError(error.detail, status=error.status) from None
            response = await handle(orchestrator, megaservice, document)
        except RequestError as error:
            counter.record(time.perf_counter() - started, rejected=True)
            return JSONResponse(failed(error), status_code=error.status)
        except NodeError as error:
            counter.record(time.perf_counter() - started, failed=True)
            logger.warning("%s failed: %s", error.node, error.detail)
            return JSONResponse(failed(error), status_code=error.http_status)
        except Exception as error:  # a bug, here or in the runtime: still a JSON answer
            counter.record(time.perf_counter() - started, failed=True)
            logger.exception("the pipeline failed")
            failure = NodeError(None, None, f"{type(error).__name__}: {error}")
            return JSONResponse(failed(failure), status_code=500)
        counter.record(time.perf_counter() - started)
        return response

    # Declared for the OpenAPI document (and served if PipelineRoute is ever taken away); PipelineRoute
    # answers this endpoint's POSTs before FastAPI's router sees them.
    @app.post(megaservice.endpoint, response_class=Response, openapi_extra=openapi_of(megaservice.protocol),
              responses=pipeline_responses(megaservice.protocol))
    async def pipeline_endpoint(request: Request) -> Response:
        return await answer(request.app.state.orchestrator, await request.body(), request.url.path == OPENAI_ROUTE)

    routes = {megaservice.endpoint: megaservice.endpoint == OPENAI_ROUTE}  # path: answers OpenAI-style errors
    if megaservice.protocol == "chat":
        routes[OPENAI_ROUTE] = True
        if megaservice.endpoint != OPENAI_ROUTE:
            app.post(OPENAI_ROUTE, response_class=Response, openapi_extra=openapi_of("chat"),
                     responses=pipeline_responses("chat"), summary="Chat completions (OpenAI-compatible)",
                     operation_id="chat_completions")(pipeline_endpoint)

        @app.get("/v1/models")
        async def models() -> dict[str, Any]:
            return {"object": "list", "data": [{"id": megaservice.name, "object": "model", "created": CREATED,
                                                "owned_by": "opea-new"}]}

    app.add_middleware(PipelineRoute, routes=routes, answer=answer)
    access.protect(app, os.environ, refusal=key_refusal)

    @app.get("/v1/health_check")
    @app.get("/v1/health")
    @app.get("/health")
    async def health(request: Request) -> dict[str, Any]:
        return {
            "status": "healthy",
            "service": megaservice.name,
            "runtime": request.app.state.orchestrator.RUNTIME,
            "endpoint": megaservice.endpoint,
            "protocol": megaservice.protocol,
        }

    @app.get(READY_ROUTE, responses={
        200: {"description": "Every node answers its /v1/health_check", "content": {"application/json": {
            "schema": READY_SCHEMA}}},
        503: {"description": "Some node does not answer yet (or any more)", "content": {"application/json": {
            "schema": READY_SCHEMA}}},
    })
    async def ready(request: Request) -> JSONResponse:
        answer = await readiness.check(request.app.state.orchestrator)
        return JSONResponse(answer, status_code=200 if answer["ready"] else 503)

    @app.get("/v1/services", responses={200: {
        "description": "Every node's instances, with their state and counts", "content": {"application/json": {
            "schema": SERVICES_SCHEMA}}}})
    async def services(request: Request) -> dict[str, Any]:
        return {"services": await services_of(request.app.state.orchestrator)}

    @app.get("/v1/statistics")
    async def statistics(request: Request) -> dict[str, Any]:
        return request.app.state.orchestrator.statistics.snapshot()

    @app.get("/metrics", response_class=PlainTextResponse,
             responses={200: {"description": "Prometheus' text format", "content": {"text/plain": {}}}})
    async def metrics(request: Request) -> Response:
        from prometheus_client.exposition import CONTENT_TYPE_LATEST

        return Response(request.app.state.orchestrator.statistics.prometheus(), media_type=CONTENT_TYPE_LATEST)

    return app


def key_refusal(message: str) -> dict[str, Any]:
    """A 401's body: the megaservice's error, with OpenAI's fields (its SDKs raise AuthenticationError)."""
    body = openai_error_body(RequestError(message, status=401))
    body["error"]["code"] = "invalid_api_key"
    return body


def serve(megaservice: Megaservice, build_orchestrator: Callable[[], Any]) -> None:
    """Serve the pipeline with uvicorn until Ctrl-C or SIGTERM, then exit 0.

    uvicorn stops gracefully on either signal: it stops accepting connections, lets
    requests in flight finish (at most MEGA_SERVICE_GRACEFUL_TIMEOUT seconds), closes
    the orchestrator's connections and returns.
    """
    import uvicorn

    try:
        config = settings.load()
        build_orchestrator()  # a bad node address stops the start here, with one line
        access.load_keys(os.environ)
    except (settings.SettingsError, access.KeysError) as error:
        sys.exit(f"{megaservice.name}: {error}")
    # Once it has shut down, uvicorn raises the signal that stopped it again, under the handlers it found:
    # with these, a graceful stop exits 0 instead of dying of SIGTERM.
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, _stopped)
    uvicorn.run(create_app(megaservice, build_orchestrator), host=config.host, port=config.port or megaservice.port,
                log_level=config.log_level.lower(), timeout_graceful_shutdown=config.graceful_timeout,
                # The megaservice never uses the client's address; uvicorn's proxy-header check parses it on
                # every request.
                proxy_headers=False)


def _stopped(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


class PipelineRoute:
    """ASGI middleware: the pipeline endpoint's POSTs, answered without FastAPI's router.

    The pipeline reads its body itself and answers every failure as JSON, so it
    needs none of what FastAPI's router, request objects, dependency solving and
    exception middlewares do per request, which is about a quarter of the CPU a
    lite megaservice spends on a 2-hop pass-through request
    (benchmarks/runtime_speed.py). Every other request goes to FastAPI as before.
    """

    def __init__(self, app: Any, *, routes: dict[str, bool], answer: Callable[..., Any]) -> None:
        self.app = app
        self.routes = routes  # path: whether errors are answered in OpenAI's shape too
        self.answer = answer

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        openai = self.routes.get(scope["path"]) if scope["type"] == "http" else None
        if openai is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        try:
            body: bytes | jsonbody.BodyError | None = await jsonbody.read_body(receive)
        except jsonbody.BodyError as error:
            body = error
        if body is None:  # the client went away before its request was complete
            return
        response = await self.answer(scope["app"].state.orchestrator, body, openai)
        await response(scope, receive, send)


# ---------------------------------------------------------------- readiness


class Readiness:
    """GET /v1/health/ready: probes every node's /v1/health_check, in parallel; keeps its answer a moment."""

    def __init__(self, timeout: float = READINESS_TIMEOUT, cache: float = READINESS_CACHE) -> None:
        self.timeout = timeout
        self.cache = cache
        self._answer: dict[str, Any] | None = None
        self._at = 0.0
        self._lock = asyncio.Lock()

    async def check(self, orchestrator: Any) -> dict[str, Any]:
        async with self._lock:  # one probe at a time, however many ask
            if self._answer is None or time.monotonic() - self._at > self.cache:
                self._answer = await self._probe(orchestrator)
                self._at = time.monotonic()
            return self._answer

    async def _probe(self, orchestrator: Any) -> dict[str, Any]:
        client = await orchestrator.http_client()
        probes = []  # (node, pool, instance, host, port, path): every instance of every node
        for name, service in orchestrator.services.items():
            path = node_of(service).health_path
            pool = orchestrator.balancer.get(name)
            if pool is None:
                probes.append((spec_name(name), None, None, service.host, int(service.port), path))
                continue
            for instance in await pool.current():
                probes.append((spec_name(name), pool, instance, instance.host, instance.port, path))
        problems = await asyncio.gather(*(self._node(client, host, port, path)
                                          for _, _, _, host, port, path in probes))
        ready_nodes = set()
        for (node, pool, instance, _, _, _), problem in zip(probes, problems, strict=True):
            if problem is None:
                ready_nodes.add(node)
            if pool is not None:
                if problem is None:
                    pool.succeeded(instance)
                else:
                    pool.failed(instance)  # set aside: calls go to its healthy siblings meanwhile
        not_ready = [{"node": node, "address": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
                      "detail": problem}
                     for (node, _, _, host, port, _), problem in zip(probes, problems, strict=True)
                     if problem and node not in ready_nodes]
        return {"ready": not not_ready, "not_ready": not_ready}

    async def _node(self, client: Any, host: str, port: int, path: str = "/v1/health_check") -> str | None:
        """None when the node is ready, else what is wrong (client: lite's, or an aiohttp session)."""
        try:
            async with asyncio.timeout(self.timeout):
                async with await client.request("GET", f"http://{host}:{port}{path}") as answer:
                    status = answer.status
                    await answer.read()
        except TimeoutError:
            return f"no answer from {path} in {self.timeout:g} s"
        except Exception as error:  # whatever the client raises: the node is not ready, and why
            return f"{path} failed: {type(error).__name__}: {error}"
        if status != 200:
            return f"{path} answered {status}"
        return None


READY_SCHEMA = {
    "type": "object",
    "properties": {
        "ready": {"type": "boolean"},
        "not_ready": {"type": "array", "items": {"type": "object", "properties": {
            "node": {"type": "string"}, "address": {"type": "string"}, "detail": {"type": "string"}},
            "required": ["node", "address", "detail"]}},
    },
    "required": ["ready", "not_ready"],
}


async def services_of(orchestrator: Any) -> list[dict[str, Any]]:
    """GET /v1/services: every node, in flow order, with its instances."""
    listed = []
    for name, service in orchestrator.services.items():
        pool = orchestrator.balancer.get(name)
        if pool is None:  # a node called at its one base URL (an API key)
            shown = {"discovery": "url", "host": str(service.host), "port": int(service.port), "instances": []}
        else:
            await pool.current()
            shown = pool.snapshot()
        listed.append({"name": spec_name(name), "type": orchestrator.type_of(name), **shown})
    return listed


SERVICES_SCHEMA = {
    "type": "object",
    "properties": {"services": {"type": "array", "items": {"type": "object", "properties": {
        "name": {"type": "string"}, "type": {"type": "string"},
        "discovery": {"enum": ["static", "address", "dns", "url"]},
        "host": {"type": "string"}, "port": {"type": "integer"},
        "instances": {"type": "array", "items": {"type": "object", "properties": {
            "address": {"type": "string"}, "state": {"enum": ["healthy", "set_aside", "unknown"]},
            "outstanding": {"type": "integer"}, "requests": {"type": "integer"}, "failures": {"type": "integer"},
            "retry_in_seconds": {"type": "number"}},
            "required": ["address", "state", "outstanding", "requests", "failures"]}}},
        "required": ["name", "type", "discovery", "instances"]}}},
    "required": ["services"],
}

# ---------------------------------------------------------------- the OpenAPI document

SSE_EVENT = {"type": "object", "properties": {"data": {"type": "string"}}, "required": ["data"]}  # one event
ERROR_SCHEMA = {
    "type": "object",
    "properties": {"error": {"type": "object", "properties": {
        "node": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "status": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        "detail": {"type": "string"}}, "required": ["node", "status", "detail"]}},
    "required": ["error"],
}


def openapi_of(protocol: str) -> dict[str, Any]:
    """The request body the endpoint reads itself (strictly, see read_json), declared for clients and fuzzers."""
    schema = ChatRequest.openapi_schema() if protocol == "chat" else {"type": "object"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def pipeline_responses(protocol: str) -> dict[int | str, dict[str, Any]]:
    error = {"application/json": {"schema": ERROR_SCHEMA}}
    if protocol == "chat":
        answer = {"application/json": {"schema": {"type": "object", "properties": {
                      "object": {"const": "chat.completion"}, "choices": {"type": "array"}},
                      "required": ["object", "choices"]}},
                  "text/event-stream": {"schema": SSE_EVENT}}
        described = "A ChatCompletion, or (stream: true) an SSE stream of chat.completion.chunk ending data: [DONE]"
    else:
        answer = {"application/json": {}, "text/event-stream": {"schema": SSE_EVENT},
                  "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
        described = "The output of the terminal node that ran, or {node: output} when several ran"
    return {
        200: {"description": described, "content": answer},
        400: {"description": "The body is not JSON (or not standard JSON: NaN, lone surrogates, too deep, ...)",
              "content": error},
        413: {"description": f"The body is larger than {jsonbody.MAX_BODY_BYTES} bytes", "content": error},
        422: {"description": f"The body is JSON but not a {protocol} request", "content": error},
        502: {"description": "A node failed (error.node names it)", "content": error},
        504: {"description": "A node did not answer in time (error.node names it)", "content": error},
    }


# ---------------------------------------------------------------- chat


async def chat(orchestrator: Any, megaservice: Megaservice, body: Any) -> Response:
    request = parse_chat_request(body)
    parameters = orchestrator.LLMParams(**request.llm_parameters())
    prompt = request.prompt()
    result_dict, runtime_graph = await orchestrator.schedule(
        initial_inputs={"text": prompt}, llm_parameters=parameters
    )
    node, output = chat_output(orchestrator, result_dict, runtime_graph)
    answer = ChatAnswer(request.model or megaservice.name, orchestrator.config.stream_format)
    if request.stream:
        if isinstance(output, StreamingResponse):
            return await relay(node, output, answer, prompt, include_usage=request.include_usage)
        return event_stream(synthesised(text_of(output), answer, finish_reason_of(output) or "stop",
                                        _usage(output, prompt) if request.include_usage else None))
    if isinstance(output, StreamingResponse):
        decoder = StreamDecoder()
        content = "".join([piece async for piece in text_pieces(node, output, decoder)])
        finish_reason, usage = decoder.finish_reason, decoder.usage or counted_usage(prompt, content)
    else:
        content = text_of(output)
        finish_reason, usage = finish_reason_of(output), _usage(output, prompt)
    return JSONResponse(answer.completion(content, finish_reason=finish_reason or "stop", usage=usage))


def _usage(output: Any, prompt: str) -> dict[str, int]:
    """The node's usage when it reports one, else counted here."""
    return usage_of(output) or counted_usage(prompt, text_of(output))


def chat_output(orchestrator: Any, result_dict: dict[str, Any], runtime_graph: Any) -> tuple[str, Any]:
    """The node the answer comes from: a terminal llm/lvm node that ran, else the last terminal one."""
    terminals = orchestrator.terminal_nodes(result_dict, runtime_graph)
    if not terminals:
        raise NodeError(None, None, "no node of the flow ran")
    answering = [node for node in terminals if orchestrator.type_of(node) in CHAT_ANSWER_TYPES]
    node = (answering or terminals)[-1]
    return spec_name(node), result_dict[node]


async def text_pieces(node: str, response: StreamingResponse, decoder: StreamDecoder | None = None
                      ) -> AsyncIterator[str]:
    """The text of a node's stream; a failure of the stream raises NodeError naming the node.

    `decoder` (optional) is left holding what the stream said besides its text (finish_reason, usage).
    """
    decoder = decoder or StreamDecoder()
    iterator = response.body_iterator
    try:
        async for chunk in iterator:
            for piece in decoder.feed(chunk):
                yield piece
        for piece in decoder.close():
            yield piece
    except NodeError:
        raise
    except Exception as error:
        raise NodeError.from_exception(node, error) from error
    finally:
        close = getattr(iterator, "aclose", None)
        if close is not None:
            await close()
    if not decoder.seen_data:
        # comps answers an upstream error on its streaming path with an empty stream
        raise NodeError(node, None, "its stream ended without any data (did the service fail?)")


async def relay(node: str, response: StreamingResponse, answer: ChatAnswer, prompt: str = "", *,
                include_usage: bool = False) -> StreamingResponse:
    """Re-emit a node's stream as chat chunks, after its first piece arrived.

    Waiting for the first piece means a node that fails before answering gets a
    proper 502 instead of a 200 with an empty stream. The last chunk carries the
    node's finish_reason; with `include_usage`, a usage chunk follows it.
    """
    decoder = StreamDecoder()
    pieces = text_pieces(node, response, decoder)
    first: str | None = None
    async for piece in pieces:
        if piece:
            first = piece
            break

    async def events() -> AsyncIterator[str]:
        sent = [first or ""]
        try:
            yield answer.chunk(first or "", first=True)
            if first is not None:
                async for piece in pieces:
                    if piece:
                        sent.append(piece)
                        yield answer.chunk(piece)
            yield answer.chunk(finish=True, finish_reason=decoder.finish_reason or "stop")
            if include_usage:
                yield answer.usage_chunk(decoder.usage or counted_usage(prompt, "".join(sent)))
        except NodeError as error:
            logger.warning("%s failed while streaming: %s", error.node, error.detail)
            yield error_event(error)
        finally:
            await pieces.aclose()  # also when the client went away: release the node's stream
        yield DONE

    return event_stream(events())


async def synthesised(text: str, answer: ChatAnswer, finish_reason: str = "stop",
                      usage: dict[str, int] | None = None) -> AsyncIterator[str]:
    """A chat stream of a text that did not come as a stream (e.g. a guardrail's refusal)."""
    tokens = words(text)
    yield answer.chunk(tokens[0] if tokens else "", first=True)
    for token in tokens[1:]:
        yield answer.chunk(token)
    yield answer.chunk(finish=True, finish_reason=finish_reason)
    if usage is not None:
        yield answer.usage_chunk(usage)
    yield DONE


def event_stream(events: AsyncIterator[str]) -> StreamingResponse:
    async def nonempty() -> AsyncIterator[str]:
        async for event in events:
            if event:  # a format may have nothing to send for an event
                yield event

    return StreamingResponse(nonempty(), media_type="text/event-stream")


# ---------------------------------------------------------------- raw


async def raw(orchestrator: Any, megaservice: Megaservice, body: Any) -> Response:
    inputs = parse_raw_request(body)
    try:
        result_dict, runtime_graph = await orchestrator.schedule(
            initial_inputs=inputs, llm_parameters=orchestrator.LLMParams(stream=False)
        )
    except NodeError as error:
        # An entry node gets the request as it came: its refusal (400/413/422) is the client's error, a 422
        # naming the node, not a 502.
        entries = {node.name for node in orchestrator.nodes} - {target for _, target, _ in orchestrator.edges}
        if error.status in (400, 413, 422) and error.node in entries:
            raise RequestError(f"{error.node} refused the request: {error.detail}", node=error.node) from None
        raise
    terminals = orchestrator.terminal_nodes(result_dict, runtime_graph)
    if not terminals:
        raise NodeError(None, None, "no node of the flow ran")
    if len(terminals) == 1:
        output = result_dict[terminals[0]]
        if isinstance(output, Response):
            return output
        if isinstance(output, (bytes, bytearray)):
            return Response(bytes(output), media_type="application/octet-stream")
        return JSONResponse(output)
    return JSONResponse({spec_name(node): _jsonable(result_dict[node]) for node in terminals})


def _jsonable(output: Any) -> Any:
    if isinstance(output, (bytes, bytearray)):
        return {"bytes": len(output)}
    if isinstance(output, Response):
        return {"stream": output.media_type}
    return output

