"""Pipeline tests: every generated service and the megaservice as real processes.

They run on free ports of 127.0.0.1, never the spec's, so the tests do not
collide with a running `make run`; they are started once per session through
scripts/run_local.py's `Stack` and stopped by PID at the end (logs in pytest's
temporary directory, printed on failure to start).
"""

from __future__ import annotations

import importlib.util
import socket
import sys
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from megaservice import settings  # noqa: E402


def load_run_local():
    spec = importlib.util.spec_from_file_location("run_local", ROOT / "scripts" / "run_local.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            probe = socket.socket()
            probe.bind(("127.0.0.1", 0))
            sockets.append(probe)
        return [probe.getsockname()[1] for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()


def start(stack, log_dir: Path):
    try:
        stack.start()
    except Exception as error:
        stack.stop()
        logs = "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}"
                         for log in sorted(log_dir.glob("*.log")))
        pytest.fail(f"the pipeline did not start: {error}\n{logs}", pytrace=False)
    return stack


@pytest.fixture(scope="session")
def run_local():
    return load_run_local()


@pytest.fixture(scope="session")
def stack(run_local, tmp_path_factory):
    """Every generated service and the megaservice, running."""
    local = [service.name for service in settings.SERVICES if service.generated]
    *service_ports, mega_port = free_ports(len(local) + 1)
    log_dir = tmp_path_factory.mktemp("logs")
    running = start(run_local.Stack(dict(zip(local, service_ports, strict=True)), mega_port, log_dir=log_dir),
                    log_dir)
    yield running
    running.stop()


@pytest.fixture(scope="session")
def client(stack):
    with httpx.Client(base_url=f"http://127.0.0.1:{stack.mega_port}", timeout=60, trust_env=False) as session:
        yield session


@pytest.fixture(scope="session")
def unreachable(stack) -> list[str]:
    """Services that run a published image and do not answer where the megaservice looks for them."""
    missing = []
    for service in stack.remote_services:
        host, port = stack.address(service)
        try:
            httpx.get(f"http://{host}:{port}/v1/health_check", timeout=3, trust_env=False).raise_for_status()
        except httpx.HTTPError:
            missing.append(f"{service.name} ({service.image}) at {host}:{port}")
    return missing


@pytest.fixture
def whole_flow(unreachable):
    """Skip a test that sends requests through the whole flow when a node cannot answer."""
    if unreachable:
        pytest.skip("needs every node; not reachable (published images, start them with `docker compose up -d`"
                    " or set <NODE>_SERVICE_HOST_IP/_PORT): " + ", ".join(unreachable))


@pytest.fixture(scope="session")
def dead_node(run_local, stack, tmp_path_factory):
    """A second megaservice whose entry node points at a port nobody listens on: (node name, client)."""
    sources_of_errors = {source for source, _, condition in settings.EDGES if condition == "error"}
    targets = {target for _, target, _ in settings.EDGES}
    candidates = [service.name for service in settings.SERVICES
                  if service.name not in targets and service.name not in sources_of_errors]
    if not candidates:
        pytest.skip("every entry node routes its errors (`error` edges): none can fail the request")
    victim = candidates[0]
    dead_port, mega_port = free_ports(2)
    ports = {service.name: stack.address(service)[1] for service in settings.SERVICES}
    ports[victim] = dead_port
    log_dir = tmp_path_factory.mktemp("dead-node-logs")
    megaservice = start(run_local.Stack(ports, mega_port, log_dir=log_dir, environ=stack.environ,
                                        start_services=False), log_dir)
    with httpx.Client(base_url=f"http://127.0.0.1:{mega_port}", timeout=60, trust_env=False) as session:
        yield victim, session
    megaservice.stop()
