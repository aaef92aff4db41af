"""A GenAIStudio export (`workflow-info.json`) turned into a spec, then into the same Pipeline a spec file gives.

GenAIStudio (github.com/opea-project/GenAIStudio) writes `workflow-info.json` from its flow editor
(studio-backend/app/services/workflow_info_service.py): `{"id", "name", "nodes": {ID: node},
"chat_input_ids", ...}`, each node `{"id", "name": "opea_service@llm_tgi", "category",
"connected_to": [IDS], "dependent_services": {"tgi": {"modelName": ...}}, "params": {...}}`.
Its megaservice walks the graph forward from the chat/file input nodes (app-backend/megaservice.py);
so does this: the nodes reached from an input become services, the edges between them the flow.

    studio_spec(data, source) -> dict        the spec, or SpecError with every problem, each located
    load_studio_pipeline(path) -> Pipeline   read within the spec bounds, converted, validated like a spec

The kinds and what they become are in KINDS (docs/studio.md has the table); a kind that is not
there is refused by name, never guessed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from . import catalog
from .spec import Pipeline, Problem, SpecError, pipeline_from_data
from .spec.load import MAX_SERVICES, read_document
from .spec.problems import format_location, shown

# studio node kind -> (service type, model server or None)
KINDS: dict[str, tuple[str, str | None]] = {
    "opea_service@embedding_tei_langchain": ("embedding", "tei"),
    "opea_service@reranking_tei": ("rerank", "tei"),
    "opea_service@llm_tgi": ("llm", "tgi"),
    "opea_service@llm_codegen": ("llm", "tgi"),
    "opea_service@llm_docsum": ("llm", "tgi"),
    "opea_service@retriever_redis": ("retriever", None),
    "opea_service@asr": ("asr", None),
}
# The UI ends of a studio flow: where requests come in, where answers go out. Not services.
INPUTS = ("chat_input", "file_input")
UI_NODES = (*INPUTS, "chat_completion", "doc_input")
# Kinds studio knows that opea-new refuses, and why.
REFUSED = {
    "opea_service@supervisor_agent": "agent nodes run a nested megaservice with tools; opea-new has no agent type",
    "opea_service@rag_agent": "agent nodes run a nested megaservice with tools; opea-new has no agent type",
    "opea_service@sql_agent": "agent nodes run a nested megaservice with tools; opea-new has no agent type",
}
MEGASERVICE_PORT = 8888
_NOT_NAME = re.compile(r"[^a-z0-9-]+")


def load_studio_pipeline(path: Path) -> Pipeline:
    """The pipeline of a workflow-info.json file; SpecError (located) when it cannot be one."""
    document = read_document(path)  # the spec bounds: size, depth, values, duplicate keys, UTF-8
    return pipeline_from_data(studio_spec(document.data, document.source), source=document.source)


def studio_spec(data: Any, source: str = "workflow-info.json") -> dict[str, Any]:
    """The spec (a dict, as a spec file would hold) of a studio workflow."""
    nodes = data.get("nodes") if isinstance(data, dict) else None
    if not isinstance(nodes, dict) or not nodes:
        raise SpecError([Problem("nodes", f"{source}: not a GenAIStudio workflow-info.json: it needs `nodes`, "
                                          "a mapping of node id to node")])
    problems: list[Problem] = []
    kinds: dict[str, str] = {}
    for node_id, node in nodes.items():
        kind = node.get("name") if isinstance(node, dict) else None
        if not isinstance(kind, str):
            problems.append(Problem(format_location(("nodes", node_id)), "a node needs `name`, its kind "
                                    "(e.g. 'opea_service@llm_tgi')"))
            continue
        kinds[node_id] = kind
        targets = node.get("connected_to", [])
        if not isinstance(targets, list) or not all(isinstance(t, str) and t in nodes for t in targets):
            problems.append(Problem(format_location(("nodes", node_id, "connected_to")),
                                    "must be a list of ids of nodes in this workflow"))
    if problems:
        raise SpecError(problems)
    entries = [node_id for node_id, kind in kinds.items() if kind in INPUTS]
    if not entries:
        raise SpecError([Problem("nodes", f"{source}: no chat_input or file_input node: nothing sends "
                                          "requests into this workflow")])
    reached = _reached(nodes, entries)
    for node_id in reached:
        kind = kinds[node_id]
        if kind in REFUSED:
            problems.append(Problem(format_location(("nodes", node_id, "name")), f"{shown(kind)}: {REFUSED[kind]}"))
        elif kind not in KINDS and kind not in UI_NODES:
            problems.append(Problem(format_location(("nodes", node_id, "name")),
                                    f"unknown GenAIStudio node kind {shown(kind)}; opea-new maps "
                                    f"{', '.join(KINDS)} (and the UI nodes {', '.join(UI_NODES)})"))
    if problems:
        raise SpecError(problems)
    services_of = [node_id for node_id in reached if kinds[node_id] in KINDS]
    if len(services_of) > MAX_SERVICES:
        raise SpecError([Problem("nodes", f"more than {MAX_SERVICES:,} service nodes, the limit for a spec")])
    names = _names(services_of, kinds)
    services = [_service(nodes[node_id], names[node_id], kinds[node_id]) for node_id in services_of]
    _assign_ports(services)
    flow = []
    for node_id in services_of:
        targets = [names[t] for t in dict.fromkeys(nodes[node_id].get("connected_to", [])) if t in names]
        if targets:
            flow.append({"service": names[node_id], "next": targets})
    spec: dict[str, Any] = {"name": _dns_name(data.get("name")) or "studio", "services": services}
    if any(kinds[e] == "chat_input" for e in entries):
        spec["megaservice"] = {"port": MEGASERVICE_PORT, "protocol": "chat"}
    if flow:
        spec["flow"] = flow
    return spec


def _reached(nodes: dict[str, Any], entries: list[str]) -> list[str]:
    """Node ids reached from the inputs, breadth first like studio's megaservice; each once (cycles end here)."""
    seen = dict.fromkeys(entries)
    queue = list(entries)
    while queue:
        for target in nodes[queue.pop(0)].get("connected_to", []):
            if target not in seen:
                seen[target] = None
                queue.append(target)
    return list(seen)


def _names(node_ids: list[str], kinds: dict[str, str]) -> dict[str, str]:
    """`embedding`, `embedding-2`, ... in the order studio reaches them."""
    names: dict[str, str] = {}
    count: dict[str, int] = {}
    for node_id in node_ids:
        service_type = KINDS[kinds[node_id]][0]
        count[service_type] = count.get(service_type, 0) + 1
        names[node_id] = service_type if count[service_type] == 1 else f"{service_type}-{count[service_type]}"
    return names


def _service(node: dict[str, Any], name: str, kind: str) -> dict[str, Any]:
    service_type, server = KINDS[kind]
    service: dict[str, Any] = {"name": name, "type": service_type}
    if server is None:
        return service
    params = node.get("params") if isinstance(node.get("params"), dict) else {}
    engine = params.get("llmEngine")
    if service_type == "llm" and engine == "vllm":  # studio's LLM nodes can choose their engine
        server = "vllm"
    service["server"] = server
    dependent = node.get("dependent_services")
    settings = dependent.get(server) if isinstance(dependent, dict) else None
    model = settings.get("modelName") if isinstance(settings, dict) else None
    if isinstance(model, str) and model:  # an empty modelName: studio's default, so the catalog's
        service["model"] = model
    return service


def _assign_ports(services: list[dict[str, Any]]) -> None:
    used = {MEGASERVICE_PORT}
    for service in services:
        port = catalog.next_free_port(catalog.get(service["type"]).default_port, used)
        used.add(port)
        service["port"] = port


def _dns_name(value: Any) -> str:
    if not isinstance(value, str):
        return ""
    return _NOT_NAME.sub("-", value.lower()).strip("-")[:63].strip("-")
