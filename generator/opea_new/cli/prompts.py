"""Interactive questions: build a pipeline spec at the terminal, with defaults from the catalog."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.prompt import Confirm, IntPrompt, Prompt
from rich.table import Table

from .. import catalog

if TYPE_CHECKING:
    from ..spec import Pipeline

console = Console(highlight=False)
_DEFAULT_CHAIN = ("embedding", "retriever", "rerank", "llm")


def ask_pipeline() -> Pipeline:
    """Ask for names, types, ports, endpoints and flow edges; re-ask what does not validate."""
    from ..spec import SpecError, pipeline_from_data

    console.print("[bold]New OPEA megaservice[/] — Enter takes the [cyan]default[/]; Ctrl-C cancels.\n")
    spec: dict[str, Any] = {"name": _ask_name("Pipeline name", default="chatqna")}
    description = Prompt.ask("Description (optional)", default="", show_default=False)
    if description:
        spec["description"] = description
    spec["runtime"] = Prompt.ask("Runtime: [cyan]comps[/] (opea-comps 1.5) or [cyan]lite[/] (fast, built in)",
                                 choices=["comps", "lite"], default="comps")
    spec["services"] = _ask_services()
    spec["flow"] = _ask_flow(spec["services"])
    spec["megaservice"] = _ask_megaservice(spec)
    while True:
        try:
            return pipeline_from_data(spec)
        except SpecError as error:
            console.print("[red]That pipeline has problems:[/]")
            for problem in error.problems:
                console.print(f"  {escape(problem.location)}: {escape(problem.message)}")
            if not Confirm.ask("Re-enter the flow?", default=True):
                raise
            spec["flow"] = _ask_flow(spec["services"], chain_default=False)


def confirm_pipeline(pipeline: Pipeline) -> bool:
    table = Table(title=f"{pipeline.name} — runtime {pipeline.runtime}", title_justify="left")
    for column in ("service", "type", "port", "endpoint", "image"):
        table.add_column(column)
    for service in pipeline.services:
        table.add_row(service.name, service.type, str(service.port), service.endpoint,
                      service.image or "generated")
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
        endpoint = Prompt.ask(f"Endpoint of {name}", default=info.default_endpoint)
    return port, endpoint


# ---------------------------------------------------------------- pieces


def _ask_services() -> list[dict[str, Any]]:
    services: list[dict[str, Any]] = []
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
                         taken={service["name"] for service in services})
        if not name:
            return services
        type_name = ask_type(f"Type of {name}", default=name if catalog.find(name) else "undefined")
        info = catalog.get(type_name)
        port = _ask_port(f"Port of {name}", catalog.next_free_port(info.default_port, set(used_ports)), used_ports)
        used_ports[port] = name
        endpoint = Prompt.ask(f"Endpoint of {name}", default=info.default_endpoint)
        services.append({"name": name, "type": type_name, "port": port, "endpoint": endpoint})


def _ask_flow(services: list[dict[str, Any]], chain_default: bool = True) -> list[dict[str, Any]]:
    names = [service["name"] for service in services]
    if len(names) < 2 or Confirm.ask("\nFlow: a chain in the order above?", default=chain_default):
        return [{"service": a, "next": [b]} for a, b in zip(names, names[1:], strict=False)]
    console.print("For each service, the services that receive its output. Write [cyan]NAME[/] "
                  "or [cyan]NAME if CONDITION[/] (e.g. [cyan]refusal if blocked == true[/]); empty for none.")
    flow = []
    for name in names:
        targets = []
        answer = Prompt.ask(f"  after {name}", default="", show_default=False)
        for item in filter(None, (part.strip() for part in answer.split(","))):
            target, _, condition = item.partition(" if ")
            targets.append({"service": target.strip(), "condition": condition.strip()} if condition
                           else target.strip())
        if targets:
            flow.append({"service": name, "next": targets})
    return flow


def _ask_megaservice(spec: dict[str, Any]) -> dict[str, Any]:
    used = {service["port"]: service["name"] for service in spec["services"]}
    console.print("\n[bold]Megaservice[/]")
    port = _ask_port("Port", catalog.next_free_port(8888, set(used)), used)
    endpoint = Prompt.ask("Endpoint", default=f"/v1/{spec['name'].replace('_', '-')}")
    terminal_types = {service["type"] for service in spec["services"]
                      if not any(edge["service"] == service["name"] for edge in spec["flow"])}
    default = "chat" if terminal_types & {"llm", "lvm"} else "raw"
    protocol = Prompt.ask("Protocol: [cyan]chat[/] (OpenAI-style) or [cyan]raw[/] (any JSON)",
                          choices=["chat", "raw"], default=default)
    return {"port": port, "endpoint": endpoint, "protocol": protocol}


def _ask_name(question: str, *, default: str = "", allow_empty: bool = False, taken: set[str] = frozenset()
              ) -> str:
    from ..spec.names import name_problem

    while True:
        answer = Prompt.ask(question, default=default or None, show_default=bool(default)) or ""
        answer = answer.strip()
        if allow_empty and answer in ("", "."):
            return ""
        problem = name_problem(answer) or (f"{answer} is already used" if answer in taken else None)
        if not problem:
            return answer
        console.print(f"[red]{escape(problem)}[/]")


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
