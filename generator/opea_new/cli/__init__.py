"""The `opea-new` command line.

Commands live in small modules and import their heavy dependencies (copier,
pydantic models, YAML) only when they run, so `opea-new --help` stays fast.
"""

from __future__ import annotations

import sys

import typer

from .. import __version__
from . import grow, inspect, megaservice, update
from .errors import run_guarded

app = typer.Typer(
    name="opea-new",
    help="Scaffold OPEA GenAI pipelines: one spec in, a complete, tested, updatable repository out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        print(f"opea-new {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the version and exit."),
    verbose: bool = typer.Option(False, "--verbose", "-v",
                                 help="Log each step to stderr; when something fails, keep the scratch clone or "
                                 "staging folder and print where it is."),
) -> None:
    """Scaffold OPEA GenAI pipelines: one spec in, a complete, tested, updatable repository out."""
    from ..errors import set_verbose

    set_verbose(verbose)


app.command("megaservice")(megaservice.command)
app.command("add-service")(grow.add_service)
app.command("remove-service")(grow.remove_service)
app.command("update")(update.command)
app.command("validate")(inspect.validate)
app.command("graph")(inspect.graph)
app.command("schema")(inspect.schema)


def main() -> None:
    sys.exit(run_guarded(app))
