"""Connections from the megaservice to its nodes: how many a run of requests opens, per runtime and setting.

A node here is a small HTTP/1.1 server in this process that records the client
port of every request it answers. lite calls nodes on one pooled client; comps
opens a new session (so a new connection) per request, as opea-comps 1.5 does,
unless MEGA_SERVICE_POOL_CONNECTIONS=true.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

pytestmark = pytest.mark.slow

ONE_NODE = {"name": "pooling", "megaservice": {"protocol": "raw"},
            "services": [{"name": "node", "type": "undefined", "port": 19301}]}
REQUESTS = 5


class RecordingNode:
    """A pass-through node on 127.0.0.1 that remembers which client port each request came from."""

    def __init__(self) -> None:
        self.client_ports: list[int] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: a pooled client can reuse its connection

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                recorder.client_ports.append(self.client_address[1])
                self._send({**body, "trace": [*body.get("trace", []), "node"]})

            def do_GET(self) -> None:  # noqa: N802
                self._send({"status": "healthy"})

            def _send(self, document: dict) -> None:
                data = json.dumps(document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> RecordingNode:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def node() -> Iterator[RecordingNode]:
    with RecordingNode() as recording:
        yield recording


@pytest.mark.parametrize(("runtime", "pool", "connections"), [
    ("lite", None, 1),       # always one pooled client
    ("comps", None, REQUESTS),  # opea-comps' own behaviour: a new session per request
    ("comps", "true", 1),    # MEGA_SERVICE_POOL_CONNECTIONS=true
])
def test_connections_opened_for_a_run_of_requests(runtime, pool, connections, projects, processes, node):
    project = projects(ONE_NODE, runtime)
    settings = {"MEGA_SERVICE_POOL_CONNECTIONS": pool} if pool else {}
    megaservice = processes.megaservice(project, {"node": node.port}, **settings)
    with httpx.Client(base_url=megaservice.url, timeout=30, trust_env=False) as client:
        for number in range(REQUESTS):
            answer = client.post("/v1/pooling", json={"n": number})
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"n": number, "trace": ["node"]}
    assert len(node.client_ports) == REQUESTS
    assert len(set(node.client_ports)) == connections, node.client_ports


def test_a_bad_pool_setting_stops_the_megaservice_with_a_clear_message(projects, processes, node):
    project = projects(ONE_NODE, "comps")
    megaservice = processes.megaservice(project, {"node": node.port}, wait=False,
                                        MEGA_SERVICE_POOL_CONNECTIONS="sometimes")
    assert megaservice.process.wait(timeout=60) != 0
    log = megaservice.log.read_text()
    assert "MEGA_SERVICE_POOL_CONNECTIONS: Input should be a valid boolean" in log and "Traceback" not in log
