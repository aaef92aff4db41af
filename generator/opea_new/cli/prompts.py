"""Interactive questions: build a pipeline spec at the terminal, with defaults from the catalog."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.prompt import Confirm, IntPrompt, Prompt
from rich.table import Table

from .. import catalog
from ..errors import OpeaNewError, UsageError

if TYPE_CHECKING:
    from ..spec import Pipeline

console = Console(highlight=False)
# The default pipeline's services (spec/default.py): the ChatQnA chain, then dataprep beside it.
_DEFAULT_CHAIN = ("embedding", "retriever", "rerank", "llm", "dataprep")


class Interview:
    """The questions of `opea-new megaservice`, each answer checked where it is asked.

    Every answer is checked by the spec layer as it is given — a service with the services before it,
    the megaservice, each flow entry with the flow so far — and re-asked with the spec layer's message
    (its "did you mean" included). The answers are never lost: when the session ends without a project
    (a refusal, a declined summary, Ctrl-C, a closed terminal, an output that cannot be used), they are
    written to a spec file and its path printed, so `opea-new megaservice --spec FILE` picks them up.
    """

    def __init__(self) -> None:
        self.spec: dict[str, Any] = {}
        self.saved: Path | None = None

    def ask_pipeline(self) -> Pipeline:
        from ..spec import SpecError, pipeline_from_data

        spec = self.spec
        console.print("[bold]New OPEA megaservice[/] — Enter takes the [cyan]default[/]; Ctrl-C cancels.\n")
        spec["name"] = _ask_name("Pipeline name", default="chatqna")
        description = _ask_checked("Description (optional)", "", lambda text: _field_problem(
            {"name": spec["name"], "description": text, "services": [{"name": "s", "type": "undefined"}]},
            "description") if text else None, show_default=False)
        if description:
            spec["description"] = description
        spec["runtime"] = Prompt.ask("Runtime: [cyan]comps[/] (opea-comps 1.5) or [cyan]lite[/] (fast, built in)",
                                     choices=["comps", "lite"], default="comps")
        spec["services"] = []
        _ask_services(spec)
        spec["flow"] = _ask_flow(spec)
        spec["megaservice"] = _ask_megaservice(spec)
        while True:
            try:
                return pipeline_from_data(spec)
            except SpecError as error:
                console.print("[red]That pipeline has problems:[/]")
                for problem in error.problems:
                    console.print(f"  {escape(problem.location)}: {escape(problem.message)}")
                in_flow = all(problem.location.startswith("flow") for problem in error.problems)
                if not in_flow or not Confirm.ask("Re-enter the flow?", default=True):
                    raise UsageError("the pipeline has problems; nothing was written",
                                     details=[str(problem) for problem in error.problems]) from None
                spec["flow"] = _ask_flow(spec, chain_default=False)

    @contextmanager
    def kept_on_failure(self) -> Iterator[None]:
        """On any end without a project, the answers so far go to a spec file (its path is printed)."""
        from typer import Abort

        try:
            yield
        except (KeyboardInterrupt, Abort):
            self._save()
            raise
        except EOFError:
            self._save()
            raise UsageError("the terminal closed before every question was answered; nothing was written",
                             hint=self._resume_hint()) from None
        except OpeaNewError as error:
            if self._save():
                error.hint = "; ".join(filter(None, [error.hint, self._resume_hint()]))
            raise
        except Exception:
            self._save()
            raise

    def _save(self) -> bool:
        if not self.spec.get("services") or self.saved:
            return bool(self.saved)
        import tempfile

        import yaml

        spec = {key: value for key, value in self.spec.items() if value not in (None, [], {})}
        name = str(spec.get("name") or "pipeline")
        try:
            descriptor, path = tempfile.mkstemp(prefix=f"opea-new-{name}-", suffix=".yaml")
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write("# Answers given to `opea-new megaservice`; run it again with --spec THIS_FILE\n")
                yaml.safe_dump(spec, handle, sort_keys=False, allow_unicode=True)
        except OSError as error:
            Console(stderr=True).print(f"[yellow]could not keep your answers: {escape(str(error))}[/]")
            return False
        self.saved = Path(path)
        Console(stderr=True, highlight=False).print(
            f"Your answers are saved in {escape(path)}: opea-new megaservice --spec {escape(path)}", soft_wrap=True)
        return True

    def _resume_hint(self) -> str:
        return f"your answers are in {self.saved}: opea-new megaservice --spec {self.saved}" if self.saved else ""


def ask_pipeline() -> Pipeline:
    """Ask for names, types, ports, endpoints and flow edges; re-ask what does not validate."""
    return Interview().ask_pipeline()


def confirm_pipeline(pipeline: Pipeline) -> bool:
    table = Table(title=f"{pipeline.name} — runtime {pipeline.runtime}", title_justify="left")
    for column in ("service", "type", "port", "endpoint", "image"):
        table.add_column(column)
    for service in pipeline.services:
        runs = f"{service.server}: {service.model} ({service.image})" if service.server else service.image
        table.add_row(service.name, service.type, str(service.port), service.endpoint, runs or "generated")
    mega = pipeline.megaservice
    table.add_row("megaservice", mega.protocol, str(mega.port), mega.endpoint, "generated", style="bold")
    console.print()
    console.print(table)
    console.print("\n[bold]Flow[/] (Mermaid):")
    console.print(escape(pipeline.mermaid()))
    return Confirm.ask(f"\nGenerate [bold]{escape(pipeline.name)}[/]?", default=True)


_shown_types = False


def ask_type(question: str, default: str | None = None) -> str:
    global _shown_types
    names = catalog.names()
    if not _shown_types:
        _print_types()
        _shown_types = True
    while True:
        answer = Prompt.ask(f"{question} (name or number; ? lists them)", default=default).strip().lower()
        if answer == "?":
            _print_types()
        elif answer.isdigit() and 1 <= int(answer) <= len(names):
            return names[int(answer) - 1]
        elif catalog.find(answer):
            return catalog.find(answer).name
        else:
            console.print(f"[red]{escape(answer)} is not a service type.[/]")


def _print_types() -> None:
    table = Table(show_header=False, box=None, padding=(0, 1))
    for number, info in enumerate(catalog.TYPES, start=1):
        table.add_row(f"{number:>2}", info.name, f"[dim]{escape(info.summary)}[/]")
    console.print(table)


def ask_position(pipeline: Pipeline, name: str) -> tuple[list[str], list[str]]:
    """Where a new service goes in a flow that is not a single chain: its upstream and downstream services."""
    console.print(f"\nThe flow is not a single chain, so say where [bold]{escape(name)}[/] goes:")
    console.print(escape(pipeline.mermaid()))
    known = [service.name for service in pipeline.services]
    while True:
        after = _ask_names(f"Insert {name} after (comma-separated, empty for none)", known)
        before = _ask_names("… and before (comma-separated, empty for none; an edge after → before is replaced)",
                            known)
        if after or before:
            return after, before
        console.print("[red]Name at least one service it comes after or before.[/]")


def ask_service_details(pipeline: Pipeline, name: str, type_name: str, endpoint: str | None) -> tuple[int, str]:
    """Port and endpoint of a service being added, defaulting to the type's, refusing ports in use."""
    info = catalog.get(type_name)
    used = {service.port: service.name for service in pipeline.services}
    used[pipeline.megaservice.port] = "the megaservice"
    port = _ask_port(f"Port of {name}", catalog.next_free_port(info.default_port, set(used)), used)
    if endpoint is None:
        spec = pipeline.answers()
        endpoint = _ask_checked(f"Endpoint of {name}", info.default_endpoint, lambda answer: _service_problem(
            spec, {"name": name, "type": type_name, "port": port, "endpoint": answer}, "endpoint"))
    return port, endpoint


# ---------------------------------------------------------------- pieces


def _ask_services(spec: dict[str, Any]) -> None:
    """Services into spec["services"] (kept there as they are answered), each checked with the ones before."""
    services: list[dict[str, Any]] = spec["services"]
    used_ports: dict[int, str] = {}
    console.print("\n[bold]Services[/], in flow order. An empty name finishes the list.")
    while True:
        number = len(services) + 1
        # Suggest the default ChatQnA chain for as long as the user follows it.
        following = [service["name"] for service in services] == list(_DEFAULT_CHAIN[:len(services)])
        suggestion = _DEFAULT_CHAIN[len(services)] if following and len(services) < len(_DEFAULT_CHAIN) else ""
        question = f"Service {number} name"
        if services:
            question += " ('.' finishes)" if suggestion else " (empty finishes)"
        name = _ask_name(question, default=suggestion, allow_empty=bool(services),
                         taken={service["name"] for service in services},
                         check=lambda answer: _service_problem(spec, {"name": answer, "type": "undefined"}, "name"))
        if not name:
            return
        type_name = ask_type(f"Type of {name}", default=name if catalog.find(name) else "undefined")
        info = catalog.get(type_name)
        runs_as = _ask_runs_as(spec, name, type_name)
        port = _ask_port(f"Port of {name}", catalog.next_free_port(info.default_port, set(used_ports)), used_ports)
        new = {"name": name, "type": type_name, "port": port, **runs_as}
        default_endpoint = catalog.find_server(runs_as["server"]).endpoint(type_name) if runs_as else (
            info.default_endpoint)
        endpoint = _ask_checked(f"Endpoint of {name}", default_endpoint,
                                lambda answer, new=new: _service_problem(spec, {**new, "endpoint": answer}, "endpoint"))
        used_ports[port] = name
        services.append({**new, "endpoint": endpoint})


def _ask_runs_as(spec: dict[str, Any], name: str, type_name: str) -> dict[str, str]:
    """For a type a model server can be (catalog.SERVERS): a generated service ({}), or {server, model}."""
    servers = [server.name for server in catalog.SERVERS if type_name in server.types]
    if not servers:
        return {}
    listed = " or a model server: " + ", ".join(f"[cyan]{server}[/]" for server in servers)
    server = Prompt.ask(f"{name} runs as: a [cyan]generated[/] service{listed}",
                        choices=["generated", *servers], default="generated")
    if server == "generated":
        return {}
    new = {"name": name, "type": type_name, "server": server}
    model = _ask_checked(f"Model of {name} (its Hugging Face id)", catalog.DEFAULT_MODELS[type_name],
                         lambda answer: _service_problem(spec, {**new, "model": answer}, "model"))
    return {**new, "model": model}


def _ask_flow(spec: dict[str, Any], chain_default: bool = True) -> list[dict[str, Any]]:
    from ..spec.pipeline import DOCUMENT_TYPE

    names = [service["name"] for service in spec["services"]]
    # The chain leaves dataprep services beside the flow (no edge names them): they store the documents.
    chain = [service["name"] for service in spec["services"] if service["type"] != DOCUMENT_TYPE]
    beside = [name for name in names if name not in chain]
    question = "\nFlow: a chain in the order above?"
    if beside and chain:
        question = (f"\nFlow: a chain in the order above, with {', '.join(beside)} beside it "
                    "(storing the documents the retrievers search)?")
    if len(chain) < 2 or Confirm.ask(question, default=chain_default):
        return [{"service": a, "next": [b]} for a, b in zip(chain, chain[1:], strict=False)]
    console.print("For each service, the services that receive its output. Write [cyan]NAME[/] "
                  "or [cyan]NAME if CONDITION[/] (e.g. [cyan]refusal if blocked == true[/]); empty for none.")
    flow: list[dict[str, Any]] = []
    for name in names:
        while True:
            targets = []
            answer = Prompt.ask(f"  after {name}", default="", show_default=False)
            for item in filter(None, (part.strip() for part in answer.split(","))):
                target, _, condition = item.partition(" if ")
                targets.append({"service": target.strip(), "condition": condition.strip()} if condition
                               else target.strip())
            if not targets:
                break
            problems = _edge_problems(spec, flow, {"service": name, "next": targets})
            if not problems:
                flow.append({"service": name, "next": targets})
                break
            for problem in problems:
                console.print(f"  [red]{escape(problem)}[/]")
    return flow


def _ask_megaservice(spec: dict[str, Any]) -> dict[str, Any]:
    used = {service["port"]: service["name"] for service in spec["services"]}
    console.print("\n[bold]Megaservice[/]")
    port = _ask_port("Port", catalog.next_free_port(8888, set(used)), used)
    endpoint = _ask_checked("Endpoint", f"/v1/{spec['name'].replace('_', '-')}", lambda answer: _field_problem(
        {"name": spec["name"], "megaservice": {"port": port, "endpoint": answer}, "services": spec["services"]},
        "megaservice.endpoint"))
    terminal_types = {service["type"] for service in spec["services"]
                      if not any(edge["service"] == service["name"] for edge in spec["flow"])}
    default = "chat" if terminal_types & {"llm", "lvm"} else "raw"
    protocol = Prompt.ask("Protocol: [cyan]chat[/] (OpenAI-style) or [cyan]raw[/] (any JSON)",
                          choices=["chat", "raw"], default=default)
    answers = {"port": port, "endpoint": endpoint, "protocol": protocol}
    if not Confirm.ask("Web UI (pages to try the pipeline, served by `make run` and compose)", default=True):
        return {**answers, "ui": False}
    from ..spec.validate import DEFAULT_UI_PORT

    used[port] = "the megaservice"
    return {**answers, "ui": True,
            "ui_port": _ask_port("UI port", catalog.next_free_port(DEFAULT_UI_PORT, set(used)), used)}


def _ask_name(question: str, *, default: str = "", allow_empty: bool = False, taken: set[str] = frozenset(),
              check: Callable[[str], str | None] | None = None) -> str:
    from ..spec.names import name_problem

    while True:
        answer = Prompt.ask(question, default=default or None, show_default=bool(default)) or ""
        answer = answer.strip()
        if allow_empty and answer in ("", "."):
            return ""
        problem = name_problem(answer) or (f"{answer} is already used" if answer in taken else None)
        if not problem and check:
            problem = check(answer)
        if not problem:
            return answer
        console.print(f"[red]{escape(problem)}[/]")


def _ask_checked(question: str, default: str, check: Callable[[str], str | None], *, show_default: bool = True
                 ) -> str:
    """A free-text answer, re-asked until `check` (the spec layer) finds no problem in it."""
    while True:
        answer = Prompt.ask(question, default=default, show_default=show_default)
        problem = check(answer)
        if problem is None:
            return answer
        console.print(f"[red]{escape(problem)}[/]")


# ---------------------------------------------------------------- the spec layer, one answer at a time


def _problems(spec: dict[str, Any]) -> list[tuple[str, str]]:
    from ..spec import SpecError, pipeline_from_data

    try:
        pipeline_from_data(spec, source="answers")
    except SpecError as error:
        return [(problem.location, problem.message) for problem in error.problems]
    return []


def _field_problem(spec: dict[str, Any], location: str) -> str | None:
    """The spec layer's message about `location` in `spec` (the other problems are not this answer's)."""
    return next((message for where, message in _problems(spec) if where == location
                 or where.startswith((location + ".", location + "["))), None)


def _service_problem(spec: dict[str, Any], service: dict[str, Any], field: str) -> str | None:
    """What the spec layer says about `field` of a new service, given the services before it."""
    services = [*spec.get("services", []), service]
    used = {item.get("port") for item in services}
    mega = next(port for port in range(8888, 70000) if port not in used)  # the megaservice is asked later
    index = len(services) - 1
    return _field_problem({"name": spec.get("name") or "pipeline", "megaservice": {"port": mega},
                           "services": services}, f"services[{index}].{field}")


def _edge_problems(spec: dict[str, Any], flow: list[dict[str, Any]], entry: dict[str, Any]) -> list[str]:
    """Problems a flow entry brings (unknown targets with "did you mean", self-loops, conditions, cycles)."""
    services = spec["services"]
    used = {service["port"] for service in services}
    base = {"name": spec["name"], "megaservice": {"port": next(p for p in range(8888, 70000) if p not in used)},
            "services": services}
    before = set(_problems({**base, "flow": flow})) if flow else set()
    index = len(flow)
    found = [(where, message) for where, message in _problems({**base, "flow": [*flow, entry]})
             if (where, message) not in before
             and (where.startswith(f"flow[{index}]") or where == "flow")]
    return [message if where == "flow" else f"{_describe(where, index, entry)}: {message}"
            for where, message in found]


def _describe(where: str, index: int, entry: dict[str, Any]) -> str:
    rest = where.removeprefix(f"flow[{index}]")
    if rest.startswith(".next["):
        position = int(rest[len(".next["):].split("]")[0])
        target = entry["next"][position]
        return repr(target if isinstance(target, str) else target.get("service"))
    return entry["service"]


def _ask_port(question: str, default: int, used: dict[int, str]) -> int:
    while True:
        port = IntPrompt.ask(question, default=default)
        if not 1 <= port <= 65535:
            console.print("[red]A port is a number from 1 to 65535.[/]")
        elif port in used:
            console.print(f"[red]Port {port} is already used by {escape(used[port])}.[/]")
        else:
            return port


def _ask_names(question: str, known: list[str]) -> list[str]:
    while True:
        answer = Prompt.ask(question, default="", show_default=False)
        names = [part.strip() for part in answer.split(",") if part.strip()]
        unknown = [name for name in names if name not in known]
        if not unknown:
            return names
        console.print(f"[red]Unknown service(s): {escape(', '.join(unknown))}. Known: {escape(', '.join(known))}[/]")
