"""The megaservice's HTTP API: a plain FastAPI app, served by uvicorn (`python -m megaservice`).

    POST <settings.ENDPOINT>   the pipeline (protocol: settings.PROTOCOL, see protocol.py)
    GET  /v1/health_check      liveness (also /v1/health and /health)
    GET  /v1/statistics        request counts and latencies of the megaservice and of every node
    GET  /metrics              the same, in Prometheus' text format
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from . import settings
from .pipeline import Orchestrator, build_orchestrator
from .protocol import (
    DONE,
    ChatAnswer,
    NodeError,
    RequestError,
    StreamDecoder,
    error_event,
    parse_chat_request,
    parse_raw_request,
    spec_name,
    text_of,
    words,
)
from .runtime import RUNTIME, LLMParams

logger = logging.getLogger("megaservice")

CHAT_ANSWER_TYPES = ("llm", "lvm")


def create_app(orchestrator_factory: Callable[[], Orchestrator] = build_orchestrator) -> FastAPI:
    """The app; the orchestrator is built at startup (so it reads the environment of that moment)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.stream_format()  # a bad MEGA_SERVICE_STREAM_FORMAT stops the start, not every request
        orchestrator = orchestrator_factory()
        settings.bypass_proxies(service.host for service in orchestrator.services.values())
        app.state.orchestrator = orchestrator
        yield
        close = getattr(orchestrator, "aclose", None)  # the orchestrator's pooled connections
        if close is not None:
            await close()

    app = FastAPI(title=settings.NAME, description=settings.DESCRIPTION, lifespan=lifespan)
    handle = chat if settings.PROTOCOL == "chat" else raw

    @app.post(settings.ENDPOINT)
    async def pipeline_endpoint(request: Request) -> Response:
        orchestrator: Orchestrator = request.app.state.orchestrator
        counter = orchestrator.statistics.megaservice
        started = time.perf_counter()
        try:
            response = await handle(orchestrator, await read_json(request))
        except RequestError as error:
            counter.record(time.perf_counter() - started, rejected=True)
            return JSONResponse(error.body(), status_code=error.status)
        except NodeError as error:
            counter.record(time.perf_counter() - started, failed=True)
            logger.warning("%s failed: %s", error.node, error.detail)
            return JSONResponse(error.body(), status_code=error.http_status)
        except Exception as error:  # a bug, here or in the runtime: still a JSON answer
            counter.record(time.perf_counter() - started, failed=True)
            logger.exception("the pipeline failed")
            failure = NodeError(None, None, f"{type(error).__name__}: {error}")
            return JSONResponse(failure.body(), status_code=500)
        counter.record(time.perf_counter() - started)
        return response

    @app.get("/v1/health_check")
    @app.get("/v1/health")
    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "healthy",
            "service": settings.NAME,
            "runtime": RUNTIME,
            "endpoint": settings.ENDPOINT,
            "protocol": settings.PROTOCOL,
        }

    @app.get("/v1/statistics")
    async def statistics(request: Request) -> dict[str, Any]:
        return request.app.state.orchestrator.statistics.snapshot()

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        text = request.app.state.orchestrator.statistics.prometheus()
        return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    return app


async def read_json(request: Request) -> Any:
    body = await request.body()
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RequestError(f"the request body is not JSON: {error}", status=400) from None


# ---------------------------------------------------------------- chat


async def chat(orchestrator: Orchestrator, body: Any) -> Response:
    request = parse_chat_request(body)
    parameters = LLMParams(**request.llm_parameters())
    result_dict, runtime_graph = await orchestrator.schedule(
        initial_inputs={"text": request.prompt()}, llm_parameters=parameters
    )
    node, output = chat_output(orchestrator, result_dict, runtime_graph)
    answer = ChatAnswer(request.model or settings.NAME, settings.stream_format())
    if request.stream:
        if isinstance(output, StreamingResponse):
            return await relay(node, output, answer)
        return event_stream(synthesised(text_of(output), answer))
    if isinstance(output, StreamingResponse):
        content = "".join([piece async for piece in text_pieces(node, output)])
    else:
        content = text_of(output)
    return JSONResponse(answer.completion(content))


def chat_output(orchestrator: Orchestrator, result_dict: dict[str, Any], runtime_graph: Any) -> tuple[str, Any]:
    """The node the answer comes from: a terminal llm/lvm node that ran, else the last terminal one."""
    terminals = orchestrator.terminal_nodes(result_dict, runtime_graph)
    if not terminals:
        raise NodeError(None, None, "no node of the flow ran")
    answering = [node for node in terminals if orchestrator.type_of(node) in CHAT_ANSWER_TYPES]
    node = (answering or terminals)[-1]
    return spec_name(node), result_dict[node]


async def text_pieces(node: str, response: StreamingResponse) -> AsyncIterator[str]:
    """The text of a node's stream; a failure of the stream raises NodeError naming the node."""
    decoder = StreamDecoder()
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


async def relay(node: str, response: StreamingResponse, answer: ChatAnswer) -> StreamingResponse:
    """Re-emit a node's stream as chat chunks, after its first piece arrived.

    Waiting for the first piece means a node that fails before answering gets a
    proper 502 instead of a 200 with an empty stream.
    """
    pieces = text_pieces(node, response)
    first: str | None = None
    async for piece in pieces:
        if piece:
            first = piece
            break

    async def events() -> AsyncIterator[str]:
        try:
            yield answer.chunk(first or "", first=True)
            if first is not None:
                async for piece in pieces:
                    if piece:
                        yield answer.chunk(piece)
            yield answer.chunk(finish=True)
        except NodeError as error:
            logger.warning("%s failed while streaming: %s", error.node, error.detail)
            yield error_event(error)
        finally:
            await pieces.aclose()  # also when the client went away: release the node's stream
        yield DONE

    return event_stream(events())


async def synthesised(text: str, answer: ChatAnswer) -> AsyncIterator[str]:
    """A chat stream of a text that did not come as a stream (e.g. a guardrail's refusal)."""
    tokens = words(text)
    yield answer.chunk(tokens[0] if tokens else "", first=True)
    for token in tokens[1:]:
        yield answer.chunk(token)
    yield answer.chunk(finish=True)
    yield DONE


def event_stream(events: AsyncIterator[str]) -> StreamingResponse:
    async def nonempty() -> AsyncIterator[str]:
        async for event in events:
            if event:  # a format may have nothing to send for an event
                yield event

    return StreamingResponse(nonempty(), media_type="text/event-stream")


# ---------------------------------------------------------------- raw


async def raw(orchestrator: Orchestrator, body: Any) -> Response:
    inputs = parse_raw_request(body)
    result_dict, runtime_graph = await orchestrator.schedule(
        initial_inputs=inputs, llm_parameters=LLMParams(stream=False)
    )
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


app = create_app()
