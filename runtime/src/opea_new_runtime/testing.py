"""The fixtures of a generated project's pipeline tests (`pytest_plugins = ["opea_new_runtime.testing"]`).

Every generated service and the megaservice run as real processes on free ports
of 127.0.0.1, never the spec's (so the tests do not collide with a running
`make run`); they are started once per session through the local runner's
`Stack` and stopped by PID at the end (logs in pytest's temporary directory,
printed when a start fails).

    project      the Project (its megaservice, nodes and edges, read from megaservice/pipeline.py)
    stack        every generated service, a stand-in for each model server, and the megaservice, running
                 and ready (/v1/health/ready); documents go to a store in a temporary folder
    documents    an httpx.Client on the dataprep service beside the flow (skips when there is none)
    client       an httpx.Client on the megaservice
    unreachable  nodes that run a published image and do not answer where the megaservice looks
    whole_flow   skips a test that needs every node when one is unreachable (says which)
    dead_node    (node name, client) of a second megaservice whose entry node is not listening
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import httpx
import pytest

from .run import Project, Stack, runs_here


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


def start(stack: Stack, log_dir: Path) -> Stack:
    try:
        stack.start()
    except Exception as error:
        stack.stop()
        logs = "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}"
                         for log in sorted(log_dir.glob("*.log")))
        pytest.fail(f"the pipeline did not start: {error}\n{logs}", pytrace=False)
    return stack


@pytest.fixture(scope="session")
def project(pytestconfig) -> Project:
    return Project.load(pytestconfig.rootpath)


@pytest.fixture(scope="session")
def stack(project, tmp_path_factory):
    local = [node.name for node in project.services if runs_here(node, os.environ)]  # generated, and stand-ins
    *service_ports, mega_port = free_ports(len(local) + 1)
    log_dir = tmp_path_factory.mktemp("logs")
    environ = dict(os.environ)
    if project.stores_documents:  # a store of the tests' own, never the project's data/
        environ.setdefault("VECTOR_STORE_PATH", str(tmp_path_factory.mktemp("store") / "vectors.db"))
    running = start(Stack(dict(zip(local, service_ports, strict=True)), mega_port, project=project,
                          log_dir=log_dir, environ=environ), log_dir)
    yield running
    running.stop()


@pytest.fixture(scope="session")
def client(stack):
    with httpx.Client(base_url=f"http://127.0.0.1:{stack.mega_port}", timeout=60, trust_env=False) as session:
        yield session


@pytest.fixture(scope="session")
def documents(project, stack):
    dataprep = next((node for node in project.beside if node.type == "dataprep"), None)  # the first
    if dataprep is None:
        pytest.skip("the pipeline has no dataprep service beside its flow")
    host, port = stack.address(dataprep)
    with httpx.Client(base_url=f"http://{host}:{port}", timeout=60, trust_env=False) as session:
        yield session


@pytest.fixture(scope="session")
def unreachable(stack) -> list[str]:
    missing = []
    for node in stack.remote_services:
        host, port = stack.address(node)
        try:
            httpx.get(f"http://{host}:{port}{node.health_path}", timeout=3, trust_env=False).raise_for_status()
        except httpx.HTTPError:
            missing.append(f"{node.name} ({node.image}) at {host}:{port}")
    return missing


@pytest.fixture
def whole_flow(unreachable):
    if unreachable:
        pytest.skip("needs every node; not reachable (published images, start them with `docker compose up -d`"
                    " or set <NODE>_SERVICE_HOST_IP/_PORT): " + ", ".join(unreachable))


@pytest.fixture(scope="session")
def dead_node(project, stack, tmp_path_factory):
    sources_of_errors = {source for source, _, condition in project.edges if condition == "error"}
    targets = {target for _, target, _ in project.edges}
    candidates = [node.name for node in project.nodes
                  if node.name not in targets and node.name not in sources_of_errors]
    if not candidates:
        pytest.skip("every entry node routes its errors (`error` edges): none can fail the request")
    victim = candidates[0]
    dead_port, mega_port = free_ports(2)
    ports = {node.name: stack.address(node)[1] for node in project.services}
    ports[victim] = dead_port
    log_dir = tmp_path_factory.mktemp("dead-node-logs")
    megaservice = start(Stack(ports, mega_port, project=project, log_dir=log_dir, environ=stack.environ,
                              start_services=False, wait_ready=False), log_dir)  # never ready: a node is down
    with httpx.Client(base_url=f"http://127.0.0.1:{mega_port}", timeout=60, trust_env=False) as session:
        yield victim, session
    megaservice.stop()
