"""The resolved pipeline: every default filled in, the form every template receives.

`Pipeline.answers()` is the normalised spec stored as the project's root
answers file; `Pipeline.from_answers()` reads it back, so a generated project
always knows the pipeline it was made from.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from .. import catalog
from .graph import Edge, Graph, GraphError
from .model import PipelineSpec
from .problems import Problem, SpecError
from .validate import DEFAULT_MEGASERVICE_PORT, DEFAULT_UI_PORT

CHAT_TERMINAL_TYPES = ("llm", "lvm")
DOCUMENT_TYPE = "dataprep"


def beside_the_flow(services: list[tuple[str, str]], edges: list[tuple[str, str]] | None) -> list[str]:
    """The names of the services that run beside the flow: every dataprep service no edge names.

    `services` are (name, type), `edges` (source, target), None when the spec leaves
    the flow to its default chain (which never takes a dataprep service). Such a
    service is OPEA's dataprep, storing the documents the retriever searches; the
    megaservice does not call it. A dataprep service on an edge is a step like any other.
    """
    named = {name for edge in edges or () for name in edge}
    return [name for name, type_ in services if type_ == DOCUMENT_TYPE and name not in named]


@dataclass(frozen=True)
class Service:
    name: str
    type: str
    port: int
    endpoint: str
    image: str | None = None  # a published image runs the node (for a server node: always set)
    server: str | None = None  # the node is this model server (catalog.SERVERS)
    model: str | None = None  # the model the server loads

    @property
    def generated(self) -> bool:
        return self.image is None

    def answers(self) -> dict[str, Any]:
        """The service in the answers; `server`/`model` only for a server node, so other nodes' answers keep
        the shape of earlier releases (a plain `copier update` of those arrives at the same file)."""
        answers = {"name": self.name, "type": self.type, "port": self.port, "endpoint": self.endpoint,
                   "image": self.image}
        if self.server is not None:
            answers.update(server=self.server, model=self.model)
        return answers


@dataclass(frozen=True)
class Megaservice:
    port: int
    endpoint: str
    protocol: str  # chat | raw
    ui_port: int | None = DEFAULT_UI_PORT  # None: no web UI (the spec's `ui: false`)
    control: bool = False  # the opt-in instance-management service in compose (the spec's `control: true`)


@dataclass(frozen=True)
class Pipeline:
    name: str
    description: str
    runtime: str
    megaservice: Megaservice
    services: tuple[Service, ...]
    graph: Graph

    # ------------------------------------------------------------ building

    @classmethod
    def from_spec(cls, spec: PipelineSpec) -> Pipeline:
        explicit = {service.port for service in spec.services if service.port is not None}
        mega = spec.megaservice
        if mega and mega.port is not None:
            explicit.add(mega.port)
        mega_port = mega.port if mega and mega.port is not None else catalog.next_free_port(
            DEFAULT_MEGASERVICE_PORT, explicit)
        ui_port = None if mega and mega.ui is False else (mega.ui_port if mega and mega.ui_port else DEFAULT_UI_PORT)
        used = explicit | {mega_port} | ({ui_port} - {None})
        services = []
        for item in spec.services:
            info = catalog.get(item.type)
            port = item.port if item.port is not None else catalog.next_free_port(info.default_port, used)
            used.add(port)
            services.append(_service(item, info, port))
        edges = None if spec.flow is None else [
            Edge(entry.service, target.service, str(_parse_condition(target.condition)))
            for entry in spec.flow for target in entry.next]
        beside = beside_the_flow([(service.name, service.type) for service in services],
                                 None if edges is None else [(edge.source, edge.target) for edge in edges])
        names = [service.name for service in services if service.name not in beside]
        graph = Graph.chain(names) if edges is None else Graph(tuple(names), tuple(edges))
        protocol = mega.protocol if mega and mega.protocol else _default_protocol(services, graph)
        return cls(
            name=spec.name,
            description=spec.description or "",
            runtime=spec.runtime or "comps",
            megaservice=Megaservice(mega_port, (mega.endpoint if mega else None) or f"/v1/{spec.name}", protocol,
                                    ui_port, bool(mega and mega.control)),
            services=tuple(services),
            graph=graph,
        )

    @classmethod
    def from_answers(cls, answers: dict[str, Any]) -> Pipeline:
        """Read back `answers()` (an answers file holds other keys too: they are ignored)."""
        from .load import Document
        from .validate import validate

        spec = {key: answers[key] for key in ("name", "description", "runtime", "megaservice", "services", "flow")
                if key in answers}
        if not spec.get("description"):
            spec.pop("description", None)
        spec["services"] = [{k: v for k, v in service.items() if v is not None}
                            for service in spec.get("services") or [] if isinstance(service, dict)]
        return cls.from_spec(validate(Document(spec, "answers")))

    def answers(self) -> dict[str, Any]:
        flow = []
        for source in self.graph.nodes:
            targets = [{"service": edge.target, "condition": edge.condition}
                       for edge in self.graph.edges if edge.source == source]
            if targets:
                flow.append({"service": source, "next": targets})
        return {
            "name": self.name,
            "description": self.description,
            "runtime": self.runtime,
            "megaservice": {"port": self.megaservice.port, "endpoint": self.megaservice.endpoint,
                            "protocol": self.megaservice.protocol, **self._ui_answers()},
            "services": [service.answers() for service in self.services],
            "flow": flow,
        }

    def _ui_answers(self) -> dict[str, Any]:
        """Only what differs from the templates' defaults (a UI on 5173, no control): the answers of a project
        that keeps them stay as they were before these fields existed, so a plain `copier update` of an older
        project arrives at the same answers file as a fresh one."""
        ui_port = self.megaservice.ui_port
        answers: dict[str, Any] = {}
        if ui_port is None:
            answers["ui"] = False
        elif ui_port != DEFAULT_UI_PORT:
            answers["ui_port"] = ui_port
        if self.megaservice.control:
            answers["control"] = True
        return answers

    # ------------------------------------------------------------ questions

    def service(self, name: str) -> Service:
        return next(service for service in self.services if service.name == name)

    @property
    def documents(self) -> list[Service]:
        """The services beside the flow (dataprep: the documents the retriever searches)."""
        return [service for service in self.services if service.name not in self.graph.nodes]

    @property
    def embedding_node(self) -> Service | None:
        """The first embedding node of the flow: what a dataprep service embeds the chunks with."""
        return next((self.service(name) for name in self.graph.topological_order()
                     if self.service(name).type == "embedding"), None)

    @property
    def generated_services(self) -> list[Service]:
        return [service for service in self.services if service.generated]

    @property
    def has_conditions(self) -> bool:
        return any(edge.condition != "success" for edge in self.graph.edges)

    def mermaid(self) -> str:
        from .diagram import render_mermaid

        answers = self.answers()
        return render_mermaid(answers["services"], answers["flow"])

    # ------------------------------------------------------------ changes

    def with_runtime(self, runtime: str) -> Pipeline:
        return replace(self, runtime=runtime)

    def add_service(self, *, name: str, type: str, port: int | None = None, endpoint: str | None = None,
                    image: str | None = None, server: str | None = None, model: str | None = None,
                    after: list[str] = (), before: list[str] = ()) -> Pipeline:
        """This pipeline with one more service, wired after/before the named ones."""
        beside = type.strip().lower() == DOCUMENT_TYPE and not after and not before
        try:
            graph = None if beside or name in self.graph.nodes else self.graph.insert(name, list(after), list(before))
        except GraphError as error:
            raise SpecError([Problem("flow", str(error))]) from None
        spec = self.answers()
        new = {"name": name, "type": type, "port": port, "endpoint": endpoint, "image": image, "server": server,
               "model": model}
        spec["services"].append({key: value for key, value in new.items() if value is not None})
        if graph is not None:
            spec["flow"] = _flow_of(graph)
        return _revalidated(spec)

    def remove_service(self, name: str) -> Pipeline:
        if name not in {service.name for service in self.services}:
            known = ", ".join(service.name for service in self.services)
            raise SpecError([Problem("", f"there is no service {name!r} in this project (services: {known})")])
        if len(self.services) == 1:
            raise SpecError([Problem("", f"{name!r} is the only service; a pipeline needs at least one")])
        if name not in self.graph.nodes:  # beside the flow: nothing to rewire
            spec = self.answers()
            spec["services"] = [service for service in spec["services"] if service["name"] != name]
            return _revalidated(spec)
        try:
            graph = self.graph.remove(name)
        except GraphError as error:
            raise SpecError([Problem("flow", str(error))]) from None
        spec = self.answers()
        spec["services"] = [service for service in spec["services"] if service["name"] != name]
        spec["flow"] = _flow_of(graph)
        return _revalidated(spec)


def _flow_of(graph: Graph) -> list[dict[str, Any]]:
    return [{"service": source, "next": [{"service": e.target, "condition": e.condition}
                                         for e in graph.edges if e.source == source]}
            for source in graph.nodes if graph.successors(source)]


def _revalidated(spec: dict[str, Any]) -> Pipeline:
    from .load import Document
    from .validate import validate

    spec = dict(spec)
    spec["services"] = [{k: v for k, v in service.items() if v is not None} for service in spec["services"]]
    if not spec.get("description"):
        spec.pop("description", None)
    return Pipeline.from_spec(validate(Document(spec, "pipeline")))


def _parse_condition(text: str):
    from .. import conditions

    return conditions.parse(text)


def _service(item: Any, info: catalog.ServiceTypeInfo, port: int) -> Service:
    """A spec's service with its defaults; a server node gets the server's route, image and default model."""
    server = catalog.find_server(item.server) if item.server else None
    if server is None:
        return Service(item.name, info.name, port, item.endpoint or info.default_endpoint, item.image)
    return Service(item.name, info.name, port, item.endpoint or server.endpoint(info.name), item.image or server.image,
                   server.name, item.model or catalog.DEFAULT_MODELS[info.name])


def _default_protocol(services: list[Service], graph: Graph) -> str:
    types = {service.name: service.type for service in services}
    return "chat" if any(types[node] in CHAT_TERMINAL_TYPES for node in graph.terminal_nodes) else "raw"
