"""`opea-new megaservice`: render a complete pipeline repository."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from .errors import fail_usage
from .specs import load_spec_or_fail

if TYPE_CHECKING:
    from ..spec import Pipeline


class Runtime(StrEnum):
    comps = "comps"
    lite = "lite"


def command(
    spec: Path = typer.Option(None, "--spec", "-s", dir_okay=False,
                              help="Pipeline spec (YAML or JSON). Without it: ask, or --defaults."),
    from_studio: Path = typer.Option(None, "--from-studio", dir_okay=False,
                                     help="A GenAIStudio export (workflow-info.json) instead of a spec."),
    print_spec: bool = typer.Option(False, "--print-spec", help="With --from-studio: print the spec it becomes "
                                    "(YAML) and write nothing."),
    output: Path = typer.Option(None, "--output", "-o", help="Where to create the project [default: ./<name>]."),
    defaults: bool = typer.Option(False, "--defaults", help="Take the default ChatQnA-shaped pipeline without asking."),
    runtime: Runtime = typer.Option(None, "--runtime", help="Megaservice runtime: comps (opea-comps 1.5) or lite.",
                                    case_sensitive=False),
    force: bool = typer.Option(False, "--force", help="Add the generated files to a non-empty output directory. "
                               "It only adds: if any generated file would change an existing file (or replace a "
                               "folder, or go through a symbolic link) it lists them and writes nothing."),
) -> None:
    """Generate a megaservice project: microservices, megaservice, compose, tests, CI and docs."""
    if sum(map(bool, (spec, defaults, from_studio))) > 1:
        fail_usage("--spec, --from-studio and --defaults are alternatives; pass one of them")
    if print_spec and not from_studio:
        fail_usage("--print-spec goes with --from-studio FILE")
    if from_studio:
        _from_studio(from_studio, output, force, runtime, print_spec)
        return
    asking = not spec and not defaults
    if not asking:
        pipeline = _pipeline_from(spec, defaults)
        if runtime:
            pipeline = pipeline.with_runtime(runtime.value)
        _generate(pipeline, output, force)
        return
    from .prompts import Interview

    interview = Interview()
    with interview.kept_on_failure():
        pipeline = _pipeline_from(None, False, interview)
        if runtime:
            pipeline = pipeline.with_runtime(runtime.value)
        from .prompts import confirm_pipeline

        if not confirm_pipeline(pipeline):
            fail_usage("Cancelled; nothing was written.")
        _generate(pipeline, output, force)


def _from_studio(path: Path, output: Path | None, force: bool, runtime: Runtime | None, print_spec: bool) -> None:
    from ..spec import SpecError
    from ..studio import load_studio_pipeline, studio_spec
    from .specs import problem_lines

    if not path.is_file():
        fail_usage(f"{path}: no such GenAIStudio workflow file")
    try:
        pipeline = load_studio_pipeline(path)
        if print_spec:
            import yaml

            from ..spec.load import read_document

            typer.echo(yaml.safe_dump(studio_spec(read_document(path).data, str(path)), sort_keys=False), nl=False)
            return
    except SpecError as error:
        count = error.total
        fail_usage(f"{path}: {count:,} problem{'s' if count != 1 else ''} in the GenAIStudio workflow; "
                   "nothing was written", details=problem_lines(error, str(path)))
    if runtime:
        pipeline = pipeline.with_runtime(runtime.value)
    _generate(pipeline, output, force)


def _generate(pipeline: Pipeline, output: Path | None, force: bool) -> None:
    from ..render import check_output, render_project

    destination = check_output(output if output is not None else Path(pipeline.name), force=force)
    result = render_project(pipeline, destination, force=force)
    _print_next_steps(pipeline, result.path, result.files, result.committed)


def _pipeline_from(spec: Path | None, defaults: bool, interview=None) -> Pipeline:
    if spec:
        return load_spec_or_fail(spec)
    if defaults:
        from ..spec import default_pipeline

        return default_pipeline()
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        fail_usage(
            "no terminal to ask the pipeline questions on",
            hint="pass --spec FILE to read a pipeline spec, or --defaults for the default ChatQnA-shaped pipeline",
        )
    return interview.ask_pipeline()


def _print_next_steps(pipeline: Pipeline, path: Path, files: int, committed: bool) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console(highlight=False)
    try:
        shown = path.relative_to(Path.cwd())
    except ValueError:
        shown = path
    state = "committed" if committed else "nothing new to commit"
    console.print(f"[green]✓[/] Generated [bold]{escape(pipeline.name)}[/] in {escape(str(shown))} "
                  f"({files} files, runtime {pipeline.runtime}, git: {state})")
    request = _example_request(pipeline)
    console.print("\nNext:")
    for line in (
        f"cd {shown}",
        "make install  # a .venv with everything the project needs",
        "make test     # its own tests: every service and the whole pipeline",
        "make run      # every service and the megaservice on 127.0.0.1 (Ctrl-C stops them)",
        request,
        *([f"open http://127.0.0.1:{pipeline.megaservice.ui_port}/  # the web UI, while make run runs"]
          if pipeline.megaservice.ui_port else []),
    ):
        console.print(f"  {escape(line)}", soft_wrap=True)


def _example_request(pipeline: Pipeline) -> str:
    url = f"http://127.0.0.1:{pipeline.megaservice.port}{pipeline.megaservice.endpoint}"
    if pipeline.megaservice.protocol == "chat":
        body = '{"messages": "What is OPEA?", "stream": false}'
    else:
        body = '{"text": "hello"}'
    return f"curl -s {url} -H 'Content-Type: application/json' -d '{body}'"
