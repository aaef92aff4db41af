"""The pipeline spec as written (DESIGN §2): pydantic models of its shape and its single fields.

Checks that involve several fields (duplicates, ports in use, edges, cycles)
live in validate.py; defaults are filled in by pipeline.py.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from .. import catalog
from .names import name_problem
from .problems import SHOWN_CHARACTERS, shown

ENDPOINT_PATTERN = re.compile(r"/[A-Za-z0-9._~/-]*")
# A docker image reference: [registry[:port]/]path[:tag][@digest]
IMAGE_PATTERN = re.compile(
    r"(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?"
)
# A model id as Hugging Face writes it: [owner/]name, e.g. BAAI/bge-base-en-v1.5
MODEL_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(?:/[A-Za-z0-9][A-Za-z0-9._-]*)?")
MAX_DESCRIPTION = 500


def _name(value: str) -> str:
    problem = name_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise ValueError(f"port {shown(value)} is out of range 1–65535")
    return value


def _endpoint(value: str) -> str:
    if not ENDPOINT_PATTERN.fullmatch(value) or "//" in value or any(part in (".", "..") for part in value.split("/")):
        raise ValueError(f"{shown(value)} is not an endpoint path: start with '/', use letters, digits and . _ ~ - /, "
                         "no '..' or '//'")
    return value


def _type(value: str) -> str:
    info = catalog.find(value)
    if info is None:
        raise ValueError(catalog.unknown_type_message(value) if len(value) <= SHOWN_CHARACTERS else
                         f"unknown service type {shown(value)}; known types: {', '.join(catalog.names())}")
    return info.name


def _image(value: str) -> str:
    if not IMAGE_PATTERN.fullmatch(value) or len(value) > 255:
        raise ValueError(f"{shown(value)} is not a docker image reference such as opea/embedding:1.5")
    return value


def _server(value: str) -> str:
    if catalog.find_server(value) is None:
        raise ValueError(f"unknown model server {shown(value)}; known servers: {', '.join(catalog.server_names())}")
    return value


def _model(value: str) -> str:
    if not MODEL_PATTERN.fullmatch(value) or len(value) > 200:
        raise ValueError(f"{shown(value)} is not a model id such as BAAI/bge-base-en-v1.5")
    return value


def _description(value: str) -> str:
    if len(value) > MAX_DESCRIPTION:
        raise ValueError(f"is longer than {MAX_DESCRIPTION} characters")
    if any(ord(char) < 32 and char not in "\n\t" for char in value):
        raise ValueError("contains control characters")
    return value


Name = Annotated[StrictStr, AfterValidator(_name)]
Port = Annotated[StrictInt, AfterValidator(_port)]
Endpoint = Annotated[StrictStr, AfterValidator(_endpoint)]
TypeName = Annotated[StrictStr, AfterValidator(_type)]
Image = Annotated[StrictStr, AfterValidator(_image)]
Description = Annotated[StrictStr, AfterValidator(_description)]
Server = Annotated[StrictStr, AfterValidator(_server)]
Model = Annotated[StrictStr, AfterValidator(_model)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NextService(_Strict):
    """An edge with a condition: `{service: NAME, condition: COND}`."""

    service: Name
    condition: StrictStr = Field("success", description="success | error | PATH == LITERAL | PATH != LITERAL | "
                                                        "PATH | !PATH")


def _edge(value: object) -> object:
    return {"service": value} if isinstance(value, str) else value


Edge = Annotated[NextService, BeforeValidator(_edge, json_schema_input_type=Name | NextService)]


class FlowEntry(_Strict):
    """The services that receive one service's output (comps' `set_flow` format)."""

    service: Name
    next: list[Edge] = Field(description="Downstream services: names or {service, condition}.")


class ServiceSpec(_Strict):
    name: Name = Field(description="Unique; lower-case letters, digits, '-' or '_'; starts with a letter.")
    type: TypeName = Field(description="A comps ServiceType member, case-insensitive: "
                                       + ", ".join(catalog.names()) + ".")
    port: Port | None = Field(None, description="Default: the type's port, or the next free one.")
    endpoint: Endpoint | None = Field(None, description="Default: the type's OPEA route.")
    image: Image | None = Field(None, description="Use this published image instead of generating code "
                                                  "(with `server`: instead of the server's image).")
    server: Server | None = Field(None, description="The node is this model server itself, no generated code: "
                                                     "tei (embedding, rerank) | vllm | tgi (llm).")
    model: Model | None = Field(None, description="The model the server loads (only with `server`). Default: "
                                                   + ", ".join(f"{t} {m}" for t, m in catalog.DEFAULT_MODELS.items())
                                                   + ".")


class MegaserviceSpec(_Strict):
    port: Port | None = Field(None, description="Default 8888.")
    endpoint: Endpoint | None = Field(None, description="Default /v1/<name>.")
    protocol: Literal["chat", "raw"] | None = Field(
        None, description="chat (OpenAI-style) | raw (any JSON). Default: chat when a terminal node is llm/lvm.")
    ui: StrictBool | None = Field(None, description="Serve a web UI for the pipeline (`make run`, compose's front "
                                                    "door, the chart). Default true.")
    ui_port: Port | None = Field(None, description="The UI's port. Default 5173 (OPEA's UI port).")
    control: StrictBool | None = Field(None, description="Add the instance-management service to compose "
                                                         "(launch and stop instances through the Docker API; "
                                                         "needs API_KEYS). Default false.")


class PipelineSpec(_Strict):
    """An OPEA pipeline: microservices and the flow between them, driven by a megaservice."""

    model_config = ConfigDict(extra="forbid", title="opea-new pipeline spec")

    name: Name = Field(description="Project name; lower-case letters, digits, '-' or '_'; starts with a letter.")
    description: Description | None = None
    runtime: Literal["comps", "lite"] | None = Field(None, description="comps (default, opea-comps 1.5) | lite.")
    megaservice: MegaserviceSpec | None = None
    services: list[ServiceSpec] = Field(min_length=1)
    flow: list[FlowEntry] | None = Field(None, description="Default: a chain in the order services are listed.")
