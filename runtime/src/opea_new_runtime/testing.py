"""The fixtures of a generated project's pipeline tests (`pytest_plugins = ["opea_new_runtime.testing"]`).

Every generated service and the megaservice run as real processes on free ports
of 127.0.0.1, never the spec's (so the tests do not collide with a running
`make run`); they are started once per session through the local runner's
`Stack` and stopped by PID at the end (logs in pytest's temporary directory,
printed when a start fails).

    project      the Project (its megaservice, nodes and edges, read from megaservice/pipeline.py)
    stack        every generated service, a stand-in for each model server, the megaservice and the web UI
                 (when the pipeline has one), running and ready (/v1/health/ready); documents go to a store of
                 the tests' own (tests_store)
    documents    an httpx.Client on the dataprep service beside the flow (skips when there is none)
    client       an httpx.Client on the megaservice
    ui           an httpx.Client on the web UI (skips when the pipeline has none)
    unreachable  nodes that run a published image and do not answer where the megaservice looks
    whole_flow   skips a test that needs every node when one is unreachable (says which)
    dead_node    (node name, client) of a second megaservice whose entry node is not listening
    guarded      (key, client, log folder) of a second megaservice that requires an API key of its own
    guarded_ui   (key, client) of that megaservice's own web UI, which requires the same key

The tests ingest and delete documents, so they never use the project's data/ nor
a store VECTOR_STORE and PG_CONNECTION_STRING name: theirs is SQLite in a
temporary folder, or, with TEST_PG_CONNECTION_STRING set to a PostgreSQL
database with pgvector, a schema of the session's own in that database, dropped
at the end.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import httpx
import pytest

from .run import KEY_VARIABLES, Project, Stack, runs_here


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
    *service_ports, mega_port, ui_port = free_ports(len(local) + 2)
    log_dir = tmp_path_factory.mktemp("logs")
    with tests_store(tmp_path_factory) if project.stores_documents else nullcontext({}) as store:
        # Open, whatever keys the shell holds: `guarded` is the one that requires a key.
        environ = {key: value for key, value in {**os.environ, **store}.items() if key not in KEY_VARIABLES}
        running = start(Stack(dict(zip(local, service_ports, strict=True)), mega_port, project=project,
                              log_dir=log_dir, environ=environ, ui=True, ui_port=ui_port), log_dir)
        yield running
        running.stop()


TEST_DATABASE = "TEST_PG_CONNECTION_STRING"


@contextmanager
def tests_store(tmp_path_factory) -> Iterator[dict[str, str]]:
    """The store variables of the tests' own store (see the module's docstring)."""
    dsn = os.environ.get(TEST_DATABASE, "").strip()
    if not dsn:
        yield {"VECTOR_STORE": "sqlite", "VECTOR_STORE_PATH": str(tmp_path_factory.mktemp("store") / "vectors.db")}
        return
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    name = f"opea_new_tests_{secrets.token_hex(4)}"  # letters, digits and _: nothing to quote
    schema = sql.Identifier(name)
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as connection:
            connection.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
    except psycopg.Error as error:
        pytest.fail(f"{TEST_DATABASE} names no database the tests can use: {str(error).strip()}", pytrace=False)
    try:  # pgvector's type stays reachable in public, where CREATE EXTENSION usually put it
        yield {"VECTOR_STORE": "pgvector",
               "PG_CONNECTION_STRING": make_conninfo(dsn, options=f"-c search_path={name},public")}
    finally:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as connection:
            connection.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(schema))


@pytest.fixture(scope="session")
def client(stack):
    with httpx.Client(base_url=f"http://127.0.0.1:{stack.mega_port}", timeout=60, trust_env=False) as session:
        yield session


@pytest.fixture(scope="session")
def ui(stack):
    if not stack.ui_url:
        pytest.skip("the pipeline has no web UI (megaservice.ui: false)")
    with httpx.Client(base_url=stack.ui_url, timeout=60, trust_env=False) as session:
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


@pytest.fixture(scope="session")
def guarded_stack(project, stack, tmp_path_factory):
    """A second megaservice (and its web UI) on the same nodes, with API_KEYS set to a key of the tests' own."""
    key = f"test-{secrets.token_urlsafe(24)}"
    mega_port, ui_port = free_ports(2)
    ports = {node.name: stack.address(node)[1] for node in project.services}
    log_dir = tmp_path_factory.mktemp("guarded-logs")
    environ = {**stack.environ, "API_KEYS": key}
    guarded = start(Stack(ports, mega_port, project=project, log_dir=log_dir, environ=environ, start_services=False,
                          ui=True, ui_port=ui_port), log_dir)
    yield key, guarded, log_dir
    guarded.stop()


@pytest.fixture(scope="session")
def guarded(guarded_stack):
    key, guarded, log_dir = guarded_stack
    with httpx.Client(base_url=f"http://127.0.0.1:{guarded.mega_port}", timeout=60, trust_env=False) as session:
        yield key, session, log_dir


@pytest.fixture(scope="session")
def guarded_ui(guarded_stack):
    key, guarded, _ = guarded_stack
    if not guarded.ui_url:
        pytest.skip("the pipeline has no web UI (megaservice.ui: false)")
    with httpx.Client(base_url=guarded.ui_url, timeout=60, trust_env=False) as session:
        yield key, session
