"""`make run`: the whole pipeline on this machine, on 127.0.0.1, in the foreground.

    python -m opea_new_runtime.run [PROJECT]      # PROJECT: the project's root (default: the current folder)

Starts every generated service (`python -m app` in services/<name>, with HOST and
PORT) and the megaservice (`python -m megaservice`, with <NODE>_SERVICE_HOST_IP /
<NODE>_SERVICE_PORT pointing at them), waits until each answers
/v1/health_check, then prints the URL and an example request. With a web UI
in the spec (MEGASERVICE.ui_port), `make run` serves it too (python -m
opea_new_runtime.ui on UI_PORT, default the spec's) and prints its URL. Ctrl-C or SIGTERM
stops them all; if one of them dies, the others are stopped and this exits 1.

The nodes come from the project's pipeline module (`megaservice/pipeline.py`),
where the flow is written once. Ports are the spec's, unless <NODE>_SERVICE_PORT /
MEGA_SERVICE_PORT are set. A model-server node (`server:` tei, vllm, tgi) is
played by the runtime's stand-in (opea_new_runtime.model_servers: TEI's and the
OpenAI API with working fake models) unless <NODE>_SERVICE_HOST_IP names a real
server. Any other node that runs a published image (`image:` in the
spec) cannot run here: start it yourself (e.g. `docker compose up -d <name>`);
the megaservice expects it at <NODE>_SERVICE_HOST_IP:<NODE>_SERVICE_PORT,
printed at start; with such nodes the runner waits on the megaservice's liveness only
and names the nodes that are not ready yet. The project's pipeline tests start the same processes through
`Stack` (opea_new_runtime.testing), on free ports.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .megaservice import READY_ROUTE, Megaservice
from .nodes import Node, node_of

LOCALHOST = "127.0.0.1"
KEY_VARIABLES = ("API_KEYS", "API_KEYS_FILE", "CORS_ALLOW_ORIGINS")  # for what users call, see access.py
STARTUP_TIMEOUT = float(os.environ.get("RUN_LOCAL_STARTUP_TIMEOUT", 90))
STOP_TIMEOUT = 10.0
PIPELINE_MODULE = "megaservice.pipeline"
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy


@dataclass(frozen=True)
class Project:
    """A generated project as its pipeline module describes it: the megaservice, the nodes, the edges.

    `beside` are the services beside the flow (the pipeline module's BESIDE_THE_FLOW, such as
    a dataprep service): run like the others, never called by the megaservice.
    """

    root: Path
    megaservice: Megaservice
    nodes: tuple[Node, ...]
    edges: tuple[tuple[str, str, str], ...]  # (source, target, condition) by spec names
    module: Any
    beside: tuple[Node, ...] = ()

    @property
    def services(self) -> tuple[Node, ...]:
        """Every service the project runs: the flow's nodes, then those beside it."""
        return self.nodes + self.beside

    @property
    def stores_documents(self) -> bool:
        return any(node.type == "dataprep" for node in self.beside)

    @classmethod
    def load(cls, root: Path | str = ".") -> Project:
        """Import `megaservice.pipeline` from the project at `root` and read its flow."""
        root = Path(root).resolve()
        if not (root / "megaservice" / "pipeline.py").is_file():
            raise StackError(f"{root} is not an opea-new project (no megaservice/pipeline.py)")
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
        module = importlib.import_module(PIPELINE_MODULE)
        orchestrator = module.build_orchestrator()
        return cls(root, module.MEGASERVICE, tuple(orchestrator.nodes), tuple(orchestrator.edges), module,
                   tuple(node_of(service) for service in getattr(module, "BESIDE_THE_FLOW", ())))

    def node(self, name: str) -> Node:
        return next(node for node in self.services if node.name == name)


class StackError(RuntimeError):
    """A process did not start, or died."""


@dataclass
class Process:
    name: str
    port: int
    command: list[str]
    cwd: Path
    env: dict[str, str]
    popen: subprocess.Popen | None = None
    log: IO[bytes] | None = None
    ready_path: str = "/v1/health_check"  # the megaservice's: its readiness
    health_path: str = "/v1/health_check"  # a model server's stand-in: /health, as TEI and vLLM

    @property
    def health_url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}{self.health_path}"

    @property
    def ready_url(self) -> str:
        """The megaservice's readiness (every node answers); for a service, its health check."""
        return f"http://{LOCALHOST}:{self.port}{self.ready_path}"


class Stack:
    """Every generated service plus the megaservice, as child processes.

    `ports` maps service names to the port to run them on, `mega_port` is the
    megaservice's; by default the spec's (or those set in the environment).
    With `log_dir`, each process writes to <log_dir>/<name>.log instead of this
    terminal. With `start_services=False` only the megaservice is started (the
    services are expected at `ports`). `wait_ready`: whether `start` also waits until the
    megaservice is ready (every node answers it); by default when every node is started here.
    With `ui=True` the web UI is started last, on `ui_port` (default UI_PORT, else the spec's),
    when the pipeline has one (MEGASERVICE.ui_port is not None).
    """

    def __init__(
        self,
        ports: Mapping[str, int] | None = None,
        mega_port: int | None = None,
        *,
        python: str = sys.executable,
        project: Project | None = None,
        log_dir: Path | None = None,
        environ: Mapping[str, str] | None = None,
        start_services: bool = True,
        wait_ready: bool | None = None,
        ui: bool = False,
        ui_port: int | None = None,
    ) -> None:
        self.environ = dict(os.environ if environ is None else environ)
        self.project = project or Project.load()
        self.python = python
        self.log_dir = log_dir
        self.ports = {node.name: node.address(self.environ)[1] for node in self.project.services}
        self.ports.update(ports or {})
        self.mega_port = mega_port or int(self.environ.get("MEGA_SERVICE_PORT") or self.project.megaservice.port)
        self.start_services = start_services
        self.wait_ready = (start_services and not self.remote_services) if wait_ready is None else wait_ready
        spec_ui_port = getattr(self.project.megaservice, "ui_port", None)
        self.ui_port = (ui_port or int(self.environ.get("UI_PORT") or spec_ui_port)) if ui and spec_ui_port else None
        self.processes: list[Process] = []
        self.megaservice_process: Process | None = None

    # ------------------------------------------------------------ what runs where

    @property
    def local_services(self) -> list[Node]:
        return [node for node in self.project.services if node.generated]

    @property
    def stand_ins(self) -> list[Node]:
        """Model-server nodes run here by the runtime's stand-ins (not when <NODE>_SERVICE_HOST_IP names a server)."""
        return [node for node in self.project.nodes if node.server and not runs_elsewhere(node, self.environ)]

    @property
    def remote_services(self) -> list[Node]:
        stand_ins = {node.name for node in self.stand_ins} if self.start_services else set()
        return [node for node in self.project.services if not node.generated and node.name not in stand_ins]

    def address(self, service: Node) -> tuple[str, int]:
        if service.generated or (self.start_services and service in self.stand_ins):
            return LOCALHOST, self.ports[service.name]
        return self.environ.get(service.host_variable, LOCALHOST), self.ports[service.name]

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self.mega_port}{self.project.megaservice.endpoint}"

    @property
    def ui_url(self) -> str | None:
        return f"http://{LOCALHOST}:{self.ui_port}/" if self.ui_port else None

    def base_environment(self) -> dict[str, str]:
        env = dict(self.environ)
        env["PYTHONUNBUFFERED"] = "1"
        for variable in ("no_proxy", "NO_PROXY"):
            entries = [entry for entry in env.get(variable, "").split(",") if entry]
            env[variable] = ",".join(entries + [host for host in ("localhost", LOCALHOST) if host not in entries])
        return env

    def megaservice_environment(self) -> dict[str, str]:
        env = self.addresses(self.base_environment())
        env["MEGA_SERVICE_HOST"] = LOCALHOST
        env["MEGA_SERVICE_PORT"] = str(self.mega_port)
        return env

    def ui_environment(self) -> dict[str, str]:
        """The UI's: where it listens, and the megaservice and nodes it shows (it calls them as the browser's proxy)."""
        env = self.addresses(self.base_environment())
        env.update(UI_HOST=LOCALHOST, UI_PORT=str(self.ui_port), MEGA_SERVICE_HOST_IP=LOCALHOST,
                   MEGA_SERVICE_PORT=str(self.mega_port))
        return env

    def service_environment(self, service: Node) -> dict[str, str]:
        """A service's: where it listens, where the others are (a dataprep service calls the embedding node)
        and, when the project stores documents, the store its dataprep and retriever share.

        Only what users call takes API keys (the megaservice and the services beside the flow): the
        megaservice calls the flow's nodes without one, as it does in compose."""
        env = self.addresses(self.base_environment())
        env["HOST"] = LOCALHOST
        env["PORT"] = str(self.ports[service.name])
        if service not in self.project.beside:
            for variable in KEY_VARIABLES:
                env.pop(variable, None)
        if self.project.stores_documents:
            env.setdefault("VECTOR_STORE", "sqlite")
            env.setdefault("VECTOR_STORE_PATH", str(self.project.root / "data" / "vectors.db"))
        return env

    def addresses(self, env: dict[str, str]) -> dict[str, str]:
        for service in self.project.services:
            host, port = self.address(service)
            env[service.host_variable] = host
            env[service.port_variable] = str(port)
        return env

    # ------------------------------------------------------------ starting and stopping

    def start(self) -> None:
        """Start everything; wait until every process answers its health check (and the megaservice is ready)."""
        for service in self.local_services if self.start_services else ():
            self._spawn(Process(service.name, self.ports[service.name], [self.python, "-m", "app"],
                                self.project.root / service.folder, self.service_environment(service)))
        for service in self.stand_ins if self.start_services else ():
            command = [self.python, "-m", "opea_new_runtime.model_servers", stand_in_kind(service),
                       "--host", LOCALHOST, "--port", str(self.ports[service.name])]
            if service.model_id(self.environ):
                command += ["--model-id", service.model_id(self.environ)]
            self._spawn(Process(service.name, self.ports[service.name], command, self.project.root,
                                self.base_environment(), health_path=service.health_path))
        self.megaservice_process = Process("megaservice", self.mega_port, [self.python, "-m", "megaservice"],
                                           self.project.root, self.megaservice_environment(), ready_path=READY_ROUTE)
        self._spawn(self.megaservice_process)
        if self.ui_port:
            self._spawn(Process("ui", self.ui_port, [self.python, "-m", "opea_new_runtime.ui"], self.project.root,
                                self.ui_environment(), health_path="/v1/health"))
        deadline = time.monotonic() + STARTUP_TIMEOUT
        for process in self.processes:
            self._wait_healthy(process, deadline)
        if self.wait_ready:
            self._wait_healthy(self.megaservice_process, deadline, ready=True)

    def readiness(self) -> dict[str, Any]:
        """The megaservice's answer to /v1/health/ready (`{"ready", "not_ready"}`), or why there is none."""
        try:
            with _DIRECT.open(self.megaservice_process.ready_url, timeout=5) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as error:
            try:
                return json.loads(error.read())
            except ValueError:
                return {"ready": False, "not_ready": [], "detail": f"HTTP {error.code}"}
        except (urllib.error.URLError, OSError, ValueError) as error:
            return {"ready": False, "not_ready": [], "detail": str(error)}

    def _spawn(self, process: Process) -> None:
        if not process.cwd.is_dir():
            raise StackError(f"{process.name}: {process.cwd} does not exist")
        output = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            process.log = open(self.log_dir / f"{process.name}.log", "ab")  # noqa: SIM115 (closed in stop)
            output = process.log
        # A session of its own: Ctrl-C in this terminal reaches this script only, which stops each child.
        process.popen = subprocess.Popen(process.command, cwd=process.cwd, env=process.env, stdout=output,
                                         stderr=subprocess.STDOUT if output else None, start_new_session=True,
                                         preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        self.processes.append(process)

    def _wait_healthy(self, process: Process, deadline: float, *, ready: bool = False) -> None:
        url = process.ready_url if ready else process.health_url
        while True:
            if process.popen.poll() is not None:
                raise StackError(f"{process.name} exited with status {process.popen.returncode} while starting"
                                 + self._log_hint(process))
            try:
                with _DIRECT.open(url, timeout=3) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                waiting = ""
                if ready:
                    names = [f"{node.get('node')} at {node.get('address')}: {node.get('detail')}"
                             for node in self.readiness().get("not_ready", [])]
                    waiting = f" (not ready: {'; '.join(names)})" if names else ""
                raise StackError(f"{process.name} did not answer {url} with 200 within "
                                 f"{STARTUP_TIMEOUT:.0f}s{waiting}" + self._log_hint(process))
            time.sleep(0.1)

    def _log_hint(self, process: Process) -> str:
        return f" (see {self.log_dir / (process.name + '.log')})" if self.log_dir else ""

    def dead(self) -> Process | None:
        """The first process that exited, if any."""
        return next((process for process in self.processes if process.popen.poll() is not None), None)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM every process (the megaservice first), wait, SIGKILL those still running."""
        running = [process for process in reversed(self.processes) if process.popen.poll() is None]
        for process in running:
            process.popen.terminate()
        deadline = time.monotonic() + timeout
        for process in running:
            try:
                process.popen.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait()
        for process in self.processes:
            if process.log is not None:
                process.log.close()

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def runs_elsewhere(node: Node, environ: Mapping[str, str]) -> bool:
    """Whether <NODE>_SERVICE_HOST_IP names where a node runs (then nothing here starts it)."""
    return bool(environ.get(node.host_variable, "").strip())


def runs_here(node: Node, environ: Mapping[str, str]) -> bool:
    """Whether the local runner starts the node: generated code, or a model server's stand-in."""
    return node.generated or (node.server is not None and not runs_elsewhere(node, environ))


def stand_in_kind(node: Node) -> str:
    """Which stand-in plays a model-server node (python -m opea_new_runtime.model_servers KIND)."""
    if node.server == "tei":
        return "tei-rerank" if node.type == "rerank" else "tei-embedding"
    return "openai"  # vllm, tgi: OpenAI-compatible chat completions


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM when this process dies without stopping it (e.g. SIGKILL)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


# ---------------------------------------------------------------- make run


class _Stop(Exception):
    """Ctrl-C or SIGTERM."""


def _raise_stop(signum: int, _frame: object) -> None:
    raise _Stop(signal.Signals(signum).name)


EXAMPLE_REQUESTS = {
    "chat": {"messages": "What is OPEA?", "stream": False},
    "raw": {"text": "What is OPEA?"},
}


def example_request(protocol: str) -> str:
    return json.dumps(EXAMPLE_REQUESTS[protocol])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    try:
        stack = Stack(project=Project.load(argv[0] if argv else "."), ui=True)
    except StackError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 2
    megaservice = stack.project.megaservice
    for service in stack.remote_services:
        host, port = stack.address(service)
        print(f"{service.name}: runs the published image {service.image}; start it yourself. The megaservice "
              f"expects it at {host}:{port} ({service.host_variable} / {service.port_variable}).")
    for service in stack.stand_ins:
        print(f"{service.name}: a {service.server} server ({service.image}); here the runtime's stand-in plays it "
              f"(set {service.host_variable} to use a real one).")
    try:
        print(f"starting {len(stack.local_services) + len(stack.stand_ins)} service(s) and the megaservice ...",
              flush=True)
        stack.start()
        if not stack.wait_ready:
            for node in stack.readiness().get("not_ready", []):
                print(f"not ready yet: {node.get('node')} at {node.get('address')} ({node.get('detail')})",
                      flush=True)
        print(f"\n{megaservice.name} is running: {stack.url} ({megaservice.protocol} protocol)\n")
        body = example_request(megaservice.protocol)
        keyed = any(stack.environ.get(variable, "").strip() for variable in KEY_VARIABLES[:2])
        key = " -H \"Authorization: Bearer $API_KEY\"" if keyed else ""  # the variable's name, never a key
        print(f"  curl -s {stack.url} -H 'Content-Type: application/json'{key} -d '{body}'\n")
        if keyed:
            print("  API keys are required (API_KEYS / API_KEYS_FILE): the megaservice and the services beside "
                  "the flow answer 401 without one.\n")
        if stack.ui_url:
            print(f"  the web UI: {stack.ui_url}\n")
        for process in stack.processes:
            if process.name not in ("megaservice", "ui"):  # both names are reserved: no service has them
                print(f"  {process.name}: http://{LOCALHOST}:{process.port}")
        print("\nCtrl-C stops everything.", flush=True)
        while True:
            dead = stack.dead()
            if dead is not None:
                print(f"\n{dead.name} exited with status {dead.popen.returncode}: stopping everything",
                      file=sys.stderr, flush=True)
                return 1
            time.sleep(0.2)
    except _Stop as stop:
        print(f"\n{stop}: stopping everything", flush=True)
        return 0
    except StackError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
