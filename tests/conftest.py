"""Test-wide isolation: a private HOME (template bundles, git config) and helpers to run the CLI."""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_SPECS = REPO.parent / "shared" / "specs"
TEST_SPECS = REPO / "tests" / "specs"


def pytest_configure(config: pytest.Config) -> None:
    # opea-new keeps template bundles in ~/.cache/opea-new: give the whole run its own HOME so
    # tests never touch the developer's cache, and a git identity a fresh CI machine lacks.
    real_home = Path.home()
    home = Path(os.environ.get("OPEA_NEW_TEST_HOME") or _fresh_dir("opea-new-test-home"))
    os.environ.setdefault("PIP_CACHE_DIR", str(real_home / ".cache" / "pip"))
    os.environ["HOME"] = str(home)
    os.environ.setdefault("GIT_AUTHOR_NAME", "opea-new tests")
    os.environ.setdefault("GIT_AUTHOR_EMAIL", "tests@opea-new.invalid")
    os.environ.setdefault("GIT_COMMITTER_NAME", "opea-new tests")
    os.environ.setdefault("GIT_COMMITTER_EMAIL", "tests@opea-new.invalid")
    os.environ.pop("OPEA_NEW_TEMPLATES_DIR", None)
    os.environ.pop("OPEA_NEW_TEMPLATE_VERSION", None)


def _fresh_dir(prefix: str) -> str:
    import tempfile

    return tempfile.mkdtemp(prefix=f"{prefix}-")


def opea_new_command() -> list[str]:
    """The installed console script when there is one (what users run), else the module."""
    script = Path(sys.executable).parent / "opea-new"
    if script.exists():
        return [str(script)]
    found = shutil.which("opea-new")
    return [found] if found else [sys.executable, "-m", "opea_new"]


def run_cli(*args: str | os.PathLike, cwd: Path | None = None, input: str | None = None,
            env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*opea_new_command(), *map(str, args)],
        cwd=cwd,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="session")
def project_venvs(tmp_path_factory) -> Path:
    """Venvs of generated projects for the whole run, one per runtime: `make install VENV=<this>/<runtime>`.

    Every tier that installs projects shares them: opea-comps alone takes ~80 s to install.
    """
    return tmp_path_factory.mktemp("project-venvs")


# ---------------------------------------------------------------- helpers shared by the tiers


def free_ports(count: int) -> list[int]:
    """`count` different ports of 127.0.0.1 that were free a moment ago."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for probe in sockets:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()


def free_port() -> int:
    return free_ports(1)[0]


def tool(name: str) -> str:
    """A command installed beside this Python (the test venv), else on PATH; skips, saying why, when missing."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if not found:
        pytest.skip(f"{name} not found beside {sys.executable} or on PATH (pip install {name})")
    return found


def copier_render(template: Path, data: dict[str, Any], destination: Path, **kwargs: Any) -> Path:
    """One template rendered with copier itself (not through opea-new), as the template tests need."""
    from copier import run_copy

    run_copy(str(template), destination, data=data, defaults=True, quiet=True, **kwargs)
    return destination


def files_of(root: Path) -> dict[str, str]:
    """Every file under `root` by its POSIX path relative to it, with its text (a binary file's bytes as
    surrogate escapes: equal texts are equal files)."""
    return {path.relative_to(root).as_posix(): path.read_text(errors="surrogateescape")
            for path in sorted(root.rglob("*")) if path.is_file()}


def build_context(root: Path) -> set[str]:
    """The files `docker build` sends from `root` under its .dockerignore, by POSIX path.

    Docker's rules (moby/patternmatcher): patterns are matched in order and the last one that matches a path
    or one of its parent folders decides; `!` lets a path back in; `*` and `?` stay within one folder, `**`
    spans any number of them; a leading `/` and a trailing `/` are dropped.
    """
    import re

    rules = []
    for line in (root / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line[1:].strip() if negated else line
        pattern = re.sub(r"/+", "/", pattern).strip("/")
        regex, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        rules.append((re.compile(regex), negated))

    def excluded(path: str) -> bool:
        parts = path.split("/")
        prefixes = ["/".join(parts[:count]) for count in range(1, len(parts) + 1)]
        verdict = False
        for regex, negated in rules:
            if any(regex.fullmatch(prefix) for prefix in prefixes):
                verdict = not negated
        return verdict

    files = (path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file())
    return {path for path in files if path.split("/")[0] != ".git" and not excluded(path)}


def released_template(template: Path, destination: Path) -> Path:
    """A copy of a template folder as its release holds it: the files plus what is built (the runtime's wheel).

    opea-new renders from the release tree (template_store.built_files adds the built files to it), so a template
    test renders from this copy to see what users get.
    """
    from opea_new.template_store import built_files

    shutil.copytree(template, destination, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for path, data in built_files(template.name).items():
        (destination / path).parent.mkdir(parents=True, exist_ok=True)
        (destination / path).write_bytes(data)
    return destination


def chart_checks():
    """tests/chart/chart_checks.py as generated projects have it (a static file of the compose template): how a
    project renders, lints and validates its Helm chart offline."""
    import importlib.util
    import sys

    name = "_template_chart_checks"
    if name not in sys.modules:
        source = REPO / "templates" / "compose" / "template" / "tests" / "chart" / "chart_checks.py"
        spec = importlib.util.spec_from_file_location(name, source)
        module = importlib.util.module_from_spec(spec)
        dont_write, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no __pycache__ in the template
        try:
            spec.loader.exec_module(module)
        finally:
            sys.dont_write_bytecode = dont_write
        sys.modules[name] = module
    return sys.modules[name]


# ---------------------------------------------------------------- a rendered megaservice/pipeline.py, executed


def runtime_node_class() -> type:
    """The runtime's own `Node` (opea_new_runtime/nodes.py is stdlib-only), loaded from its source."""
    import importlib.util
    import sys

    name = "_runtime_source_nodes"
    if name not in sys.modules:
        from opea_new.paths import runtime_root

        spec = importlib.util.spec_from_file_location(name, runtime_root() / "src" / "opea_new_runtime" / "nodes.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses need their module registered
        dont_write, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no __pycache__ in the runtime's source
        try:
            spec.loader.exec_module(module)
        finally:
            sys.dont_write_bytecode = dont_write
    return sys.modules[name].Node


RecordedNode = runtime_node_class()  # one `remote_service(...)` call of pipeline.py, as the runtime describes it


@dataclass
class RecordedPipeline:
    """What running a project's pipeline.py did: its import, MEGASERVICE and build_orchestrator()'s calls."""

    runtime: str  # the opea_new_runtime.<runtime> module it imported from
    megaservice: dict[str, Any]  # the keyword arguments of Megaservice(...)
    hooks: Any  # what ServiceOrchestrator() was given
    nodes: list[RecordedNode]  # remote_service() calls, in order
    added: list[str]  # orchestrator.add() calls, by node name, in order
    edges: list[tuple[str, str, str]]  # orchestrator.flow_to() calls: (source, target, condition)
    variables: dict[str, str] = field(default_factory=dict)  # node name -> the local variable holding it


MEGASERVICE_FIELDS = ("name", "port", "endpoint", "protocol", "description")


def read_pipeline(project: Path) -> RecordedPipeline:
    """Execute `project`/megaservice/pipeline.py against a recording stand-in of `opea_new_runtime.<runtime>`.

    The real runtime needs FastAPI and (comps) opea-comps, which the generator's venv does not have; the stand-in
    has the same names and signatures (keyword-only where the runtime's are), checks what it is given (ServiceType
    members are comps' 20, ports are ints, flow_to only between added nodes) and records every call. The project's
    own hooks module is imported with it, as `from . import hooks` does.
    """
    import ast
    import enum
    import importlib.util
    import types

    from opea_new import catalog

    path = project / "megaservice" / "pipeline.py"
    tree = ast.parse(path.read_text())
    imported = [node for node in tree.body if isinstance(node, ast.ImportFrom)
                and (node.module or "").split(".")[0] == "opea_new_runtime"]
    assert len(imported) == 1, f"{path}: expected one import from opea_new_runtime"
    module_name = imported[0].module
    service_type = enum.Enum("ServiceType", [name.upper() for name in catalog.names()])
    recorded = RecordedPipeline(module_name.partition(".")[2], {}, None, [], [], [])

    class Megaservice:
        def __init__(self, name: str, port: int, endpoint: str, protocol: str = "chat",
                     description: str = "", ui_port: int | None = None) -> None:
            recorded.megaservice.update(name=name, port=port, endpoint=endpoint, protocol=protocol,
                                        description=description, ui_port=ui_port)

    class Service:
        def __init__(self, node: RecordedNode) -> None:
            self.node = node

    def remote_service(name: str, type_: Any, *, port: int, endpoint: str, image: str | None = None,
                       server: str | None = None, model: str | None = None) -> Service:
        assert isinstance(type_, service_type), type_
        assert type(port) is int and isinstance(endpoint, str), (name, port, endpoint)
        assert (server is None) == (model is None), (name, server, model)  # a server node always names its model
        recorded.nodes.append(RecordedNode(name, type_.name.lower(), port, endpoint, image, server, model))
        return Service(recorded.nodes[-1])

    class ServiceOrchestrator:
        def __init__(self, hooks: Any = None) -> None:
            recorded.hooks = hooks

        def add(self, service: Service) -> ServiceOrchestrator:
            assert service.node.name not in recorded.added, f"{service.node.name} added twice"
            recorded.added.append(service.node.name)
            return self

        def flow_to(self, from_service: Service, to_service: Service, condition: str = "success") -> bool:
            for end in (from_service, to_service):
                assert end.node.name in recorded.added, f"flow_to {end.node.name} before add"
            recorded.edges.append((from_service.node.name, to_service.node.name, condition))
            return True

    facade = types.ModuleType(module_name)
    facade.Megaservice, facade.ServiceOrchestrator = Megaservice, ServiceOrchestrator
    facade.ServiceType, facade.remote_service = service_type, remote_service
    package_name = f"_rendered_megaservice_{next(_pipelines)}"
    package = types.ModuleType(package_name)
    package.__path__ = [str(path.parent)]
    stand_ins = {"opea_new_runtime": types.ModuleType("opea_new_runtime"), module_name: facade,
                 package_name: package}
    saved = {name: sys.modules[name] for name in stand_ins if name in sys.modules}
    sys.modules.update(stand_ins)
    writes_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # leave no __pycache__ in the project
    try:
        spec = importlib.util.spec_from_file_location(f"{package_name}.pipeline", path)
        pipeline = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = pipeline
        spec.loader.exec_module(pipeline)
        assert not recorded.nodes, "pipeline.py makes its nodes in build_orchestrator(), not at import"
        assert isinstance(pipeline.MEGASERVICE, Megaservice)
        assert isinstance(pipeline.build_orchestrator(), ServiceOrchestrator)
        if recorded.hooks is sys.modules.get(f"{package_name}.hooks"):
            recorded.hooks = "megaservice.hooks"
    finally:
        for name in [*stand_ins, f"{package_name}.pipeline", f"{package_name}.hooks"]:
            sys.modules.pop(name, None)
        sys.modules.update(saved)
        sys.dont_write_bytecode = writes_bytecode
    for node in ast.walk(tree):  # `<variable> = remote_service("<name>", ...)`
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                and getattr(node.value.func, "id", None) == "remote_service"):
            recorded.variables[ast.literal_eval(node.value.args[0])] = node.targets[0].id
    return recorded


_pipelines = itertools.count()
