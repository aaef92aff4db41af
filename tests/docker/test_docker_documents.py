"""A generated project with documents, in the real engine, used as a user would use it.

One chat pipeline (embedding → retriever → llm, the default linear flow) with a
dataprep service beside the flow, rendered once by `opea-new megaservice --spec`
(lite runtime) and run with each of its two vector stores:

* SQLite, the default: one file in the `documents` volume that dataprep and the
  retriever share;
* pgvector: `--profile pgvector` with VECTOR_STORE, POSTGRES_PASSWORD and
  PGVECTOR_IMAGE in the project's `.env` (as its compose.yaml says), the server
  being a stand-in for pgvector/pgvector:0.7.0-pg16 built here from
  tests/docker/pgvector/ (PostgreSQL 16 + pgvector from the pgserver wheel; no
  registry to pull the real one from).

Both with compose.ports.yaml (COMPOSE_FILE in .env), so each service's own port
is there for its health; everything a user does goes through the nginx front
door (127.0.0.1:NGINX_PORT), as the web UI does. For each: every container
healthy (the UI and nginx too), the UI's documents page; upload Markdown files
through the front door's /v1/dataprep/, list them, ask the megaservice (through
the front door too) a question only one of them answers; `compose
restart`, ask again; `down` (volumes kept) and `up` again — new containers —
ask again; delete the file, it is gone and so is the answer. An empty upload is
a 400 that stores nothing. With pgvector, a stopped server is a 503 naming the
store, and ingest works again once it is back, without restarting dataprep.

Builds stay few: the pgvector project is a copy of the SQLite one (same build
context, same image tags), so its `up --build` builds nothing.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from engine import ComposeProject, Engine
from test_docker_projects import generate

from tests.conftest import free_ports

pytestmark = pytest.mark.docker

PGVECTOR_DIR = Path(__file__).parent / "pgvector"
PGVECTOR_IMAGE = "opea-new-test/pgvector-standin:0.7.0-pg16"
PGVECTOR_STORE = "pgvector (pgvector:5432/vectordb)"  # how dataprep and the retriever name the server
SQLITE_STORE = "sqlite (/data/vectors.db)"
UP_TIMEOUT = 240  # seconds `up --wait` may take for every container to be healthy

FACT = "QX-7319"
QUESTION = "What is the access code of the Zorblat reactor?"  # only FACT_FILE answers it; FACT is not in it
FACT_FILE = ("zorblat.md", "# The Zorblat reactor\n\n"
             "The Zorblat reactor sits under the north harbour of Velmora.\n"
             f"The access code of the Zorblat reactor is {FACT}.\n")
OTHER_FILE = ("lighthouse.md", "# The Velmora lighthouse\n\n"
              "The Velmora lighthouse was painted green in 1911 and its lamp burns whale oil.\n")


def documents_spec(name: str) -> dict[str, Any]:
    embedding, retriever, llm, dataprep, mega, ui = free_ports(6)
    return {
        "name": name,
        "description": "A chat pipeline over the documents dataprep stores (the docker tier).",
        "megaservice": {"port": mega, "endpoint": "/v1/chatqna", "protocol": "chat", "ui_port": ui},
        "services": [  # no flow: the default chain embedding → retriever → llm; dataprep sits beside it
            {"name": "embedding", "type": "embedding", "port": embedding},
            {"name": "retriever", "type": "retriever", "port": retriever},
            {"name": "llm", "type": "llm", "port": llm},
            {"name": "dataprep", "type": "dataprep", "port": dataprep},
        ],
    }


class ProfiledProject(ComposeProject):
    """A ComposeProject whose every command runs with `--profile` options (up, ps, restart, down...)."""

    def __init__(self, engine: Engine, directory: Path, name: str, profiles: tuple[str, ...] = ()) -> None:
        super().__init__(engine, directory, name)
        self.profiles = profiles

    def compose(self, *args: str, **kwargs: Any):
        options = [option for profile in self.profiles for option in ("--profile", profile)]
        return super().compose(*options, *args, **kwargs)


@dataclass
class Documents:
    """A running documents project and what a user does with it, all through ports of 127.0.0.1."""

    store: str  # "sqlite" or "pgvector"
    spec: dict[str, Any]
    compose: ComposeProject
    client: httpx.Client
    nginx_port: int

    def port(self, service: str) -> int:
        """A service's own port (compose.ports.yaml publishes it on 127.0.0.1)."""
        if service in ("megaservice", "ui"):
            return self.spec["megaservice"]["port" if service == "megaservice" else "ui_port"]
        if service == "nginx":
            return self.nginx_port
        return next(entry["port"] for entry in self.spec["services"] if entry["name"] == service)

    @property
    def front_door(self) -> str:
        return f"http://127.0.0.1:{self.nginx_port}"

    @property
    def dataprep(self) -> str:
        """dataprep's API through the front door (nginx routes /v1/dataprep/ to it)."""
        return f"{self.front_door}/v1/dataprep"

    def ingest(self, *files: tuple[str, str | bytes]) -> httpx.Response:
        parts = [("files", (name, content.encode() if isinstance(content, str) else content, "text/markdown"))
                 for name, content in files]
        return self.client.post(f"{self.dataprep}/ingest", files=parts)

    def stored(self) -> list[str]:
        answer = self.client.post(f"{self.dataprep}/get")
        assert answer.status_code == 200, answer.text
        return sorted(entry["name"] for entry in answer.json())

    def delete(self, name: str) -> httpx.Response:
        return self.client.post(f"{self.dataprep}/delete", json={"file_path": name})

    def ask(self, question: str = QUESTION) -> str:
        url = f"{self.front_door}{self.spec['megaservice']['endpoint']}"
        answer = self.client.post(url, json={"messages": [{"role": "user", "content": question}], "stream": False})
        assert answer.status_code == 200, answer.text
        return answer.json()["choices"][0]["message"]["content"]

    def health(self, service: str) -> dict[str, Any]:
        answer = self.client.get(f"http://127.0.0.1:{self.port(service)}/v1/health_check")
        assert answer.status_code == 200, answer.text
        return answer.json()

    def in_the_store(self) -> list[str]:
        """The file names the store itself holds, read inside its container (not through the services' API)."""
        if self.store == "pgvector":
            output = self.exec("pgvector", "psql", "--username", "opea", "--dbname", "vectordb", "--tuples-only",
                               "--no-align", "--command", "SELECT name FROM opea_new_files ORDER BY name")
        else:  # the retriever's view of the documents volume, which dataprep writes
            output = self.exec("retriever", "python", "-c",
                               "import sqlite3; print('\\n'.join(row[0] for row in sqlite3.connect("
                               "'file:/data/vectors.db?mode=ro', uri=True).execute("
                               "'SELECT name FROM files ORDER BY name')))")
        return [line for line in output.splitlines() if line.strip()]

    def exec(self, service: str, *command: str) -> str:
        return self.compose.compose("exec", "-T", service, *command, timeout=60).stdout.strip()

    def ps(self) -> dict[str, dict[str, Any]]:
        output = self.compose.compose("ps", "--all", "--format", "json", timeout=60).stdout
        return {entry["Service"]: entry for entry in map(json.loads, filter(str.strip, output.splitlines()))}

    def started_at(self, service: str) -> str:
        container = self.ps()[service]["ID"]
        return self.compose.engine.docker("inspect", "--format", "{{.State.StartedAt}} {{.RestartCount}}",
                                          container).stdout.strip()

    def wait_healthy(self) -> float:
        """`up --wait` on what runs already: returns once every container is healthy (bounded); seconds it took."""
        started = time.monotonic()
        self.compose.up(wait_timeout=UP_TIMEOUT)
        return time.monotonic() - started


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=60, trust_env=False) as session:  # 127.0.0.1 only, never through a proxy
        yield session


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> tuple[dict[str, Any], Path]:
    spec = documents_spec("docs")
    return spec, generate(spec, tmp_path_factory.mktemp("documents"), "lite")


@pytest.fixture(scope="module")
def pgvector_image(docker_engine: Engine) -> str:
    """The stand-in pgvector server image, built in the engine from tests/docker/pgvector/ (cached after once)."""
    # the proxies, as the generated compose.yaml passes them to its builds (pip reaches PyPI through them)
    proxies = [option for key in ("http_proxy", "https_proxy", "no_proxy") if os.environ.get(key)
               for option in ("--build-arg", f"{key}={os.environ[key]}")]
    started = time.monotonic()
    docker_engine.docker("build", "--quiet", *proxies, "--tag", PGVECTOR_IMAGE, str(PGVECTOR_DIR), timeout=900)
    docker_engine.notes.append(f"documents: pgvector stand-in image build {time.monotonic() - started:.1f}s")
    return PGVECTOR_IMAGE


def write_env(directory: Path, settings: dict[str, str]) -> None:
    """`cp .env.example .env` and fill in `settings`, as the project's compose.yaml tells its users."""
    settings = dict(settings)
    lines = []
    for line in (directory / ".env.example").read_text().splitlines():
        key = line.split("=", 1)[0] if "=" in line and not line.startswith("#") else None
        lines.append(f"{key}={settings.pop(key)}" if key in settings else line)
    lines += [f"{key}={value}" for key, value in settings.items()]  # what .env.example does not list
    (directory / ".env").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module", params=["sqlite", "pgvector"])
def documents(request, rendered, docker_engine: Engine, client: httpx.Client,
              tmp_path_factory) -> Iterator[Documents]:
    """The project running with one store (module-scoped: pytest runs every test of one store, brings it down,
    then the other's). SQLite: as rendered (.env.example says VECTOR_STORE empty, the default). pgvector: a
    copy of it (same build context, so the same images) with `.env` from `.env.example`, filled in."""
    spec, directory = rendered
    profiles: tuple[str, ...] = ()
    nginx_port = free_ports(1)[0]
    front_door = {"NGINX_PORT": str(nginx_port), "COMPOSE_FILE": "compose.yaml:compose.ports.yaml"}
    if request.param == "sqlite":
        assert "\nVECTOR_STORE=\n" in (directory / ".env.example").read_text()
        write_env(directory, front_door)
    else:
        image = request.getfixturevalue("pgvector_image")
        copy = tmp_path_factory.mktemp("documents-pgvector") / directory.name
        shutil.copytree(directory, copy, symlinks=True)
        directory = copy
        write_env(directory, {**front_door, "VECTOR_STORE": "pgvector", "POSTGRES_PASSWORD": secrets.token_hex(16),
                              "PGVECTOR_IMAGE": image})
        profiles = ("pgvector",)
    project = Documents(request.param, spec, ProfiledProject(docker_engine, directory, f"t-docs-{request.param}",
                                                             profiles), client, nginx_port)
    try:
        started = time.monotonic()
        project.compose.up(wait_timeout=UP_TIMEOUT, build=True)
        docker_engine.notes.append(f"documents-{request.param}: up --build --wait {time.monotonic() - started:.1f}s")
        yield project
    finally:
        project.compose.down()


# ---------------------------------------------------------------- both stores


def test_every_container_is_healthy_and_uses_the_store(documents: Documents):
    containers = documents.ps()
    expected = {"embedding", "retriever", "llm", "dataprep", "megaservice", "ui", "nginx"} | (
        {"pgvector"} if documents.store == "pgvector" else set())
    assert set(containers) == expected, containers
    for name, entry in containers.items():
        assert (entry["State"], entry["Health"]) == ("running", "healthy"), (name, entry)
        published = {(publisher["URL"], publisher["PublishedPort"])
                     for publisher in entry["Publishers"] if publisher["PublishedPort"]}
        assert published == (set() if name == "pgvector" else {("127.0.0.1", documents.port(name))}), (name, entry)
    page = documents.client.get(f"{documents.front_door}/documents")  # the UI's page, through the front door
    assert page.status_code == 200, page.text
    assert documents.spec["name"] in page.text
    if documents.store == "pgvector":  # the stand-in runs its server as the official image does: not root
        assert documents.exec("pgvector", "id", "-u") == "999"
    store = PGVECTOR_STORE if documents.store == "pgvector" else SQLITE_STORE
    for service in ("dataprep", "retriever"):
        assert store in documents.health(service)["model"], (service, documents.health(service))


def test_documents_are_answered_from_survive_restarts_and_go_when_deleted(documents: Documents):
    assert documents.stored() == []
    assert FACT not in documents.ask()  # nothing stored yet: the answer cannot know it

    ingested = documents.ingest(FACT_FILE, OTHER_FILE)
    assert ingested.status_code == 200, ingested.text
    assert sorted(entry["name"] for entry in ingested.json()["files"]) == ["lighthouse.md", "zorblat.md"]
    assert documents.stored() == ["lighthouse.md", "zorblat.md"]
    assert documents.in_the_store() == ["lighthouse.md", "zorblat.md"]
    assert FACT in documents.ask(), "the megaservice did not answer from the uploaded file"

    # every container restarted: the same containers, the store's data where it was
    documents.compose.compose("restart", "--timeout", "10", timeout=180)
    restarted = documents.wait_healthy()
    documents.compose.engine.notes.append(f"documents-{documents.store}: healthy {restarted:.1f}s after restart")
    assert documents.stored() == ["lighthouse.md", "zorblat.md"]
    assert FACT in documents.ask(), "after `compose restart`"

    # new containers, the volumes kept: only the volume can hold the documents now
    old = {name: entry["ID"] for name, entry in documents.ps().items()}
    documents.compose.compose("down", "--timeout", "10", timeout=180)  # no --volumes
    started = time.monotonic()
    documents.compose.up(wait_timeout=UP_TIMEOUT)
    documents.compose.engine.notes.append(
        f"documents-{documents.store}: down + up --wait (volumes kept) {time.monotonic() - started:.1f}s")
    assert not set(old.values()) & {entry["ID"] for entry in documents.ps().values()}  # all recreated
    assert documents.stored() == ["lighthouse.md", "zorblat.md"]
    assert FACT in documents.ask(), "after `compose down` and `up` (the volume kept)"

    deleted = documents.delete("zorblat.md")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"status": True}  # OPEA's answer
    assert documents.stored() == ["lighthouse.md"]
    assert documents.in_the_store() == ["lighthouse.md"]
    answer = documents.ask()
    assert FACT not in answer, answer
    assert documents.delete("zorblat.md").status_code == 404  # it is not there to delete twice


def test_an_empty_upload_is_refused_and_stores_nothing(documents: Documents):
    before = documents.stored()
    empty = documents.ingest(("empty.md", b""))
    assert empty.status_code == 400, empty.text
    assert "empty.md" in empty.json()["detail"], empty.text
    # with a good file beside it: all or nothing
    mixed = documents.ingest(("notes.md", "# Notes\n\nThe harbour of Velmora freezes in January.\n"), ("empty.md", b""))
    assert mixed.status_code == 400, mixed.text
    assert documents.stored() == before
    assert documents.in_the_store() == before


# ---------------------------------------------------------------- pgvector only


@pytest.mark.parametrize("documents", ["pgvector"], indirect=True)
def test_a_stopped_pgvector_server_is_a_503_and_dataprep_recovers_without_restart(documents: Documents):
    dataprep_started = documents.started_at("dataprep")
    before = documents.stored()

    documents.compose.compose("stop", "--timeout", "10", "pgvector", timeout=120)
    assert documents.ps()["pgvector"]["State"] == "exited"
    refused = documents.ingest(("outage.md", "# Outage\n\nThe tide clock of Velmora stopped at noon.\n"))
    assert refused.status_code == 503, refused.text
    assert PGVECTOR_STORE in refused.json()["detail"], refused.text

    documents.compose.compose("start", "pgvector", timeout=120)
    back = documents.wait_healthy()
    documents.compose.engine.notes.append(f"documents-pgvector: server healthy {back:.1f}s after start")
    ingested = documents.ingest(("outage.md", "# Outage\n\nThe tide clock of Velmora stopped at noon.\n"))
    assert ingested.status_code == 200, ingested.text
    assert documents.stored() == sorted([*before, "outage.md"])
    assert "noon" in documents.ask("When did the tide clock of Velmora stop?")
    assert documents.started_at("dataprep") == dataprep_started  # the same process: it recovered by itself
