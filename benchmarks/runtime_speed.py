"""How fast a generated megaservice is on each runtime, next to the direct calls, in one run.

    python benchmarks/runtime_speed.py [--duration 10] [--venv-comps DIR] [--venv-lite DIR]

Run it with the Python that has opea-new installed (the repo's .venv). It
renders, with opea-new, a 2-hop pass-through chain (`first` → `second`, raw
protocol) and a one-node chat pipeline (`llm`), once per runtime; creates a venv
per runtime with `make install` (or reuses --venv-comps / --venv-lite, created
if missing: opea-comps takes about 80 s); then, on 127.0.0.1:

* starts the chain's two services once, from the lite venv (as `make run` of a
  lite project does), and the megaservices pointing at those same services —
  lite, comps, and comps with MEGA_SERVICE_POOL_CONNECTIONS=true — so only the
  megaservice differs between the rows;
* starts, beside them, the floor: a bare asyncio + httptools server (no
  framework, no orchestration) that posts each request to `first`, then
  `second`, and answers what `second` said, once per HTTP client (lite's own,
  aiohttp, httpx): what any Python megaservice on this machine could reach, and
  what each client costs (lite has its own client because of these rows);
* loads each megaservice, each floor proxy, and each service directly (the limit), with wrk
  (`apt-get install wrk`; without it a built-in aiohttp load generator, which
  costs more CPU itself, so its figures are lower) at 1 and 16 connections:
  req/s, p50 and p99 latency, CPU per request of the process under load, and
  its RSS afterwards;
* streams 1, then 8 concurrent chat answers through the LLM stub with 0.5 s to
  the first token, through each megaservice and directly.

Load is bounded: every run stops after --duration seconds or --max-requests
requests, whichever comes first; a request that takes over 10 s counts as an
error. Every process is stopped by PID at the end. Figures are printed beside
the issue's goals, never asserted (timing on a shared machine is not a test).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent
OPEA_NEW = [str(BIN / "opea-new")] if (BIN / "opea-new").exists() else [sys.executable, "-m", "opea_new"]
RUNTIMES = ("comps", "lite")
BODY = {"text": "hello"}
STREAM_BODY = {"messages": "What is OPEA?", "stream": True, "max_tokens": 32}
FIRST_TOKEN_DELAY = 0.5
TOKEN_DELAY = 0.02
STREAMS = 8
REQUEST_TIMEOUT = 10.0

CHAIN_SPEC = """name: chain
runtime: {runtime}
megaservice: {{protocol: raw}}
services:
  - {{name: first, type: undefined, port: 17101, endpoint: /v1/echo}}
  - {{name: second, type: undefined, port: 17102, endpoint: /v1/echo}}
"""
STREAM_SPEC = """name: streaming
runtime: {runtime}
megaservice: {{protocol: chat}}
services:
  - {{name: llm, type: llm, port: 17109}}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured run (default 10)")
    parser.add_argument("--max-requests", type=int, default=200_000, help="requests per run at most")
    parser.add_argument("--venv-comps", type=Path, help="venv for the comps runtime (created if missing)")
    parser.add_argument("--venv-lite", type=Path, help="venv for the lite runtime (created if missing)")
    parser.add_argument("--loader", choices=("auto", "wrk", "builtin"), default="auto")
    parser.add_argument("--log-level", default="warning", help="LOG_LEVEL of every process (default warning)")
    parser.add_argument("--work", type=Path, help="keep the rendered projects and logs here")
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="opea-new-runtime-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    loader = "wrk" if args.loader == "wrk" or (args.loader == "auto" and shutil.which("wrk")) else "builtin"
    started = time.monotonic()
    bench = Bench(work, loader, args)
    try:
        bench.prepare()
        chain = bench.chain()
        streams = bench.streams()
    finally:
        bench.stop_all()
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    report(chain, streams, loader, args, time.monotonic() - started)


# ---------------------------------------------------------------- processes


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")


@dataclass
class Result:
    label: str
    connections: int
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    cpu_ms_per_request: float = float("nan")
    rss_mb: float = float("nan")

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


@dataclass
class StreamResult:
    label: str
    one_seconds: float
    many_seconds: float
    first_token_seconds: float
    failures: int = 0
    texts: list[str] = field(default_factory=list)


class Bench:
    def __init__(self, work: Path, loader: str, args: argparse.Namespace) -> None:
        self.work = work
        self.loader = loader
        self.args = args
        self.servers: list[Server] = []
        self.venvs = {"comps": args.venv_comps or work / "venv-comps", "lite": args.venv_lite or work / "venv-lite"}
        self.projects: dict[tuple[str, str], Path] = {}

    # ------------------------------------------------------------ setup

    def prepare(self) -> None:
        env = {**os.environ, "HOME": str(self.work / "home")}  # opea-new's template cache stays private
        (self.work / "home").mkdir(exist_ok=True)
        for runtime in RUNTIMES:
            for kind, spec in (("chain", CHAIN_SPEC), ("streaming", STREAM_SPEC)):
                spec_file = self.work / f"{kind}-{runtime}.yaml"
                spec_file.write_text(spec.format(runtime=runtime))
                project = self.work / f"{kind}-{runtime}"
                if not project.exists():
                    run(OPEA_NEW + ["megaservice", "--spec", str(spec_file), "--output", str(project)], env=env)
                self.projects[(kind, runtime)] = project
        for runtime in RUNTIMES:
            venv = self.venvs[runtime]
            if not (venv / "bin" / "python").exists() or not self.has_runtime(venv, runtime):
                print(f"creating the {runtime} venv in {venv} (make install) ...", flush=True)
                started = time.monotonic()
                for kind in ("chain", "streaming"):  # the streaming project adds the llm service's needs
                    run(["make", "install", f"VENV={venv}"], cwd=self.projects[(kind, runtime)])
                print(f"  {time.monotonic() - started:.0f} s", flush=True)

    @staticmethod
    def has_runtime(venv: Path, runtime: str) -> bool:
        module = "opea_new_runtime.comps" if runtime == "comps" else "opea_new_runtime.lite"
        probe = [str(venv / "bin" / "python"), "-c", f"import {module}, fastapi, httpx"]
        return subprocess.run(probe, capture_output=True).returncode == 0

    def python(self, runtime: str) -> str:
        return str(self.venvs[runtime] / "bin" / "python")

    def start(self, name: str, command: list[str], cwd: Path, env: dict[str, str], port: int) -> Server:
        log = self.work / f"{name}.log"
        environment = {**os.environ, **env, "LOG_LEVEL": self.args.log_level, "PYTHONUNBUFFERED": "1"}
        for variable in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
            environment.pop(variable, None)
        with log.open("wb") as output:
            process = subprocess.Popen(command, cwd=cwd, env=environment, stdout=output, stderr=subprocess.STDOUT)
        server = Server(name, port, process, log)
        self.servers.append(server)
        wait_healthy(server)
        return server

    def service(self, project: Path, name: str, runtime: str = "lite", **env: str) -> Server:
        port = free_port()
        return self.start(name, [self.python(runtime), "-m", "app"], project / "services" / name,
                          {"HOST": "127.0.0.1", "PORT": str(port), **env}, port)

    def megaservice(self, project: Path, runtime: str, nodes: dict[str, Server], **extra: str) -> Server:
        port = free_port()
        env = {"MEGA_SERVICE_HOST": "127.0.0.1", "MEGA_SERVICE_PORT": str(port), **extra}
        for name, server in nodes.items():
            env[f"{name.upper()}_SERVICE_HOST_IP"] = "127.0.0.1"
            env[f"{name.upper()}_SERVICE_PORT"] = str(server.port)
        return self.start(f"{project.name}-megaservice", [self.python(runtime), "-m", "megaservice"], project,
                          env, port)

    def stop_all(self) -> None:
        for server in reversed(self.servers):
            if server.process.poll() is None:
                server.process.terminate()
        for server in self.servers:
            try:
                server.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait()
        self.servers.clear()

    # ------------------------------------------------------------ the 2-hop chain

    def chain(self) -> list[Result]:
        lite_project = self.projects[("chain", "lite")]
        first = self.service(lite_project, "first")
        second = self.service(lite_project, "second")
        nodes = {"first": first, "second": second}
        megaservices = {runtime: self.megaservice(self.projects[("chain", runtime)], runtime, nodes)
                        for runtime in RUNTIMES}
        # comps as opea-comps runs it (a new session per request) above; here with MEGA_SERVICE_POOL_CONNECTIONS
        megaservices["comps pooled"] = self.megaservice(self.projects[("chain", "comps")], "comps", nodes,
                                                        MEGA_SERVICE_POOL_CONNECTIONS="true")
        for client in FLOOR_CLIENTS:
            port = free_port()
            megaservices[f"floor, {client}"] = self.start(
                f"floor-{client}", [self.python("lite"), __file__, "_floor", str(port), client,
                                    f"http://127.0.0.1:{first.port}/v1/echo", f"http://127.0.0.1:{second.port}/v1/echo"],
                self.work, {}, port)
        for runtime, server in megaservices.items():
            answer = post_json(f"http://127.0.0.1:{server.port}/v1/chain", BODY)
            if answer.get("trace") != ["first", "second"]:
                raise SystemExit(f"the {runtime} megaservice answered {answer!r}")
        targets = [
            (label if label.startswith("floor") else f"{label} megaservice", f"http://127.0.0.1:{server.port}/v1/chain",
             server)
            for label, server in megaservices.items()
        ] + [
            ("direct: first", f"http://127.0.0.1:{first.port}/v1/echo", first),
            ("direct: second", f"http://127.0.0.1:{second.port}/v1/echo", second),
        ]
        results = []
        for connections in (1, 16):
            for label, url, server in targets:
                self.load(url, connections, min(2.0, self.args.duration))  # warm-up
                results.append(self.measure(label, url, server, connections))
                print(f"  {label:<26} {connections:>2} connections  {results[-1].rate:8.1f} req/s", flush=True)
        return results

    def measure(self, label: str, url: str, server: Server, connections: int) -> Result:
        cpu_before = server.cpu_seconds()
        result = self.load(url, connections, self.args.duration)
        result.label = label
        result.cpu_ms_per_request = (server.cpu_seconds() - cpu_before) * 1000 / max(result.requests, 1)
        result.rss_mb = server.rss_mb()
        return result

    def load(self, url: str, connections: int, duration: float) -> Result:
        if self.loader == "wrk":
            return wrk(url, connections, duration, self.args.max_requests, self.work)
        command = [self.python("lite"), __file__, "_load", url, str(connections), str(duration),
                   str(self.args.max_requests)]
        data = json.loads(run(command, capture=True))
        return Result("", connections, data["requests"], data["errors"], data["seconds"], data["p50_ms"],
                      data["p99_ms"])

    # ------------------------------------------------------------ streams

    def streams(self) -> list[StreamResult]:
        llm = self.service(self.projects[("streaming", "lite")], "llm",
                           LLM_STUB_FIRST_TOKEN_DELAY=str(FIRST_TOKEN_DELAY), LLM_STUB_TOKEN_DELAY=str(TOKEN_DELAY))
        targets = []
        for runtime in RUNTIMES:
            server = self.megaservice(self.projects[("streaming", runtime)], runtime, {"llm": llm})
            targets.append((f"{runtime} megaservice", f"http://127.0.0.1:{server.port}/v1/streaming", STREAM_BODY))
        targets.append(("direct: llm", f"http://127.0.0.1:{llm.port}/v1/chat/completions",
                        {"messages": [{"role": "user", "content": STREAM_BODY["messages"]}], "stream": True,
                         "max_tokens": STREAM_BODY["max_tokens"]}))
        results = []
        for label, url, body in targets:
            command = [self.python("lite"), __file__, "_streams", url, json.dumps(body), str(STREAMS)]
            data = json.loads(run(command, capture=True))
            results.append(StreamResult(label, data["one"], data["many"], data["first_token"], data["failures"]))
            print(f"  {label:<26} 1 stream {data['one']:.2f} s, {STREAMS} streams {data['many']:.2f} s", flush=True)
        return results


# ---------------------------------------------------------------- load generators


WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"
local count = 0
response = function(status, headers, body)
  count = count + 1
  if count >= %d then wrk.thread:stop() end
end
"""


def wrk(url: str, connections: int, duration: float, max_requests: int, work: Path) -> Result:
    script = work / "post.lua"
    script.write_text(WRK_SCRIPT % (json.dumps(BODY), max_requests))
    output = run(["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout",
                  f"{REQUEST_TIMEOUT:g}s", "--latency", "-s", str(script), url], capture=True)
    requests, seconds = re.search(r"(\d+) requests in ([\d.]+)(m?s)", output).group(1, 2)
    unit = re.search(r"\d+ requests in [\d.]+(m?s)", output).group(1)
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors += int(non_2xx.group(1)) if non_2xx else 0
    return Result("", connections, int(requests), errors, float(seconds) / (1000 if unit == "ms" else 1),
                  _wrk_ms(output, "50%"), _wrk_ms(output, "99%"))


def _wrk_ms(output: str, percentile: str) -> float:
    value, unit = re.search(rf"^\s+{re.escape(percentile)}\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


async def builtin_load(url: str, connections: int, duration: float, max_requests: int) -> dict:
    """The fallback load generator (run with the lite venv's Python, which has aiohttp)."""
    import aiohttp

    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + duration
    body = json.dumps(BODY).encode()
    headers = {"Content-Type": "application/json"}

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while time.perf_counter() < deadline and len(latencies) + errors < max_requests:
            started = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        errors += 1
                        continue
            except (aiohttp.ClientError, TimeoutError):
                errors += 1
                continue
            latencies.append(time.perf_counter() - started)

    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(connections)))
        seconds = time.perf_counter() - started
    latencies.sort()

    def percentile(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000 if latencies else 0.0

    return {"requests": len(latencies) + errors, "errors": errors, "seconds": seconds,
            "p50_ms": percentile(50), "p99_ms": percentile(99)}


async def stream_times(url: str, body: dict, count: int) -> dict:
    """Wall time of one stream, then of `count` concurrent ones (run with the lite venv's Python)."""
    import aiohttp

    first_token: list[float] = []
    failures = 0

    async def one(session: aiohttp.ClientSession) -> None:
        nonlocal failures
        started = time.perf_counter()
        async with session.post(url, json=body) as response:
            seen_first = False
            text = b""
            async for chunk in response.content.iter_any():
                if not seen_first:
                    first_token.append(time.perf_counter() - started)
                    seen_first = True
                text += chunk
        if response.status != 200 or b"[DONE]" not in text:
            failures += 1

    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await one(session)  # warm-up (connections, imports)
        first_token.clear()
        started = time.perf_counter()
        await one(session)
        single = time.perf_counter() - started
        started = time.perf_counter()
        await asyncio.gather(*(one(session) for _ in range(count)))
        many = time.perf_counter() - started
    return {"one": single, "many": many, "first_token": max(first_token), "failures": failures}


# ---------------------------------------------------------------- report


def report(chain: list[Result], streams: list[StreamResult], loader: str, args: argparse.Namespace,
           seconds: float) -> None:
    print(f"\nMegaservice runtimes on 127.0.0.1 ({os.cpu_count()} CPUs), {loader}, "
          f"{args.duration:g} s per run, LOG_LEVEL={args.log_level}; total {seconds:.0f} s\n")
    print("2-hop pass-through chain (first -> second, raw protocol); services run from the lite venv")
    print(f"{'target':<26}{'conns':>6}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'CPU ms/req':>12}{'RSS MB':>8}"
          f"{'errors':>8}")
    for result in chain:
        print(f"{result.label:<26}{result.connections:>6}{result.rate:>10.1f}{result.p50_ms:>9.2f}"
              f"{result.p99_ms:>9.2f}{result.cpu_ms_per_request:>12.3f}{result.rss_mb:>8.1f}{result.errors:>8}")

    def find(label: str, connections: int) -> Result:
        return next(result for result in chain if result.label == label and result.connections == connections)

    comps16, lite16 = find("comps megaservice", 16), find("lite megaservice", 16)
    pooled16 = find("comps pooled megaservice", 16)
    hops = [find(f"direct: {name}", 1) for name in ("first", "second")]
    direct_p50 = sum(hop.p50_ms for hop in hops)
    limit16 = 1 / sum(1 / find(f"direct: {name}", 16).rate for name in ("first", "second"))
    print()
    print(f"lite / comps, req/s at 16 connections: {lite16.rate / comps16.rate:.2f}x   (goal >= 3.5x)")
    print(f"lite / comps with MEGA_SERVICE_POOL_CONNECTIONS=true: {lite16.rate / pooled16.rate:.2f}x "
          f"(comps pooled is {pooled16.rate / comps16.rate:.2f}x comps)")
    print(f"direct 2-hop limit at 16 connections: ~{limit16:.0f} req/s  (1 / (1/first + 1/second): both hops' CPU)")
    print(f"lite / direct 2-hop limit: {lite16.rate / limit16:.2f}   (goal >= 0.7); "
          f"CPU {lite16.cpu_ms_per_request:.3f} ms/req (goal <= 0.4)")
    for client in FLOOR_CLIENTS:
        floor = find(f"floor, {client}", 16)
        print(f"floor, {client:<12} / limit: {floor.rate / limit16:.2f}, CPU {floor.cpu_ms_per_request:.3f} ms/req"
              f"   (no framework, no orchestration)")
    for runtime in RUNTIMES:
        mega = find(f"{runtime} megaservice", 1)
        overhead = (mega.p50_ms - direct_p50) / 2
        goal = "   (goal <= 1 ms)" if runtime == "lite" else ""
        print(f"{runtime} overhead per hop, unloaded p50: ({mega.p50_ms:.2f} - {direct_p50:.2f} direct) / 2 = "
              f"{overhead:.2f} ms{goal}")
    print(f"\n{STREAMS} concurrent streams through the LLM stub ({FIRST_TOKEN_DELAY:g} s to the first token, "
          f"{TOKEN_DELAY:g} s per token, {STREAM_BODY['max_tokens']} tokens at most)")
    print(f"{'target':<26}{'1 stream s':>12}{f'{STREAMS} streams s':>13}{'ratio':>8}{'max TTFT s':>12}{'failed':>8}")
    for result in streams:
        print(f"{result.label:<26}{result.one_seconds:>12.3f}{result.many_seconds:>13.3f}"
              f"{result.many_seconds / result.one_seconds:>8.2f}{result.first_token_seconds:>12.3f}"
              f"{result.failures:>8}")
    print("  (goal: 8 streams in <= 1.2x the time of one)")
    failed = [result.label for result in chain if result.errors]
    failed += [result.label for result in streams if result.failures]
    if failed:
        print(f"\nWARNING: requests failed for {', '.join(dict.fromkeys(failed))}: their figures measure failures, "
              "not the pipeline; see the logs in the work folder")


# ---------------------------------------------------------------- the floor


FLOOR_CLIENTS = ("lite client", "aiohttp", "httpx")


def floor_proxy(port: int, client_name: str, first: str, second: str) -> None:
    """The least a Python megaservice does for the chain (run with the lite venv's Python).

    An asyncio server with httptools' parser, on uvloop, keep-alive, no framework:
    each request's JSON is posted to `first`, its answer to `second`, and that
    answer is the response. Only the HTTP client differs between the rows.
    """
    import httptools
    import uvloop

    async def main() -> None:
        if client_name == "lite client":
            from opea_new_runtime.engine.http import Client

            lite = Client()

            async def post(url: str, document: object) -> object:
                response = await lite.post(url, json=document)
                return await response.json()
        elif client_name == "aiohttp":
            import aiohttp

            session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

            async def post(url: str, document: object) -> object:
                async with session.post(url, json=document) as response:
                    return await response.json()
        else:
            import httpx

            client = httpx.AsyncClient(limits=httpx.Limits(max_connections=None), trust_env=False)

            async def post(url: str, document: object) -> object:
                return (await client.post(url, json=document)).json()

        class Proxy(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport
                self.parser = httptools.HttpRequestParser(self)
                self.body: list[bytes] = []

            def data_received(self, data: bytes) -> None:
                self.parser.feed_data(data)

            def on_body(self, body: bytes) -> None:
                self.body.append(body)

            def on_message_complete(self) -> None:
                body, self.body = b"".join(self.body), []
                asyncio.ensure_future(self.answer(body))

            async def answer(self, body: bytes) -> None:
                if not body:  # wait_healthy's GET /v1/health_check
                    self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                    return
                document = await post(second, await post(first, json.loads(body)))
                out = json.dumps(document).encode()
                self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                                     b"content-length: %d\r\n\r\n%s" % (len(out), out))

        server = await asyncio.get_running_loop().create_server(Proxy, "127.0.0.1", port)
        await server.serve_forever()

    uvloop.run(main())


# ---------------------------------------------------------------- helpers


def run(command: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
        capture: bool = False) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout[-3000:]}"
                         f"{result.stderr[-3000:]}")
    return result.stdout if capture else ""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_healthy(server: Server, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise SystemExit(f"{server.name} exited with {server.process.returncode}:\n"
                             f"{server.log.read_text(errors='replace')[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=1) as connection:
                connection.sendall(b"GET /v1/health_check HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                if connection.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{server.name} never answered /v1/health_check")


def post_json(url: str, body: dict) -> dict:
    import urllib.request

    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=REQUEST_TIMEOUT) as response:
        return json.loads(response.read())


if __name__ == "__main__":
    if sys.argv[1:2] == ["_load"]:
        url, connections, duration, max_requests = sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
        print(json.dumps(asyncio.run(builtin_load(url, connections, duration, max_requests))))
    elif sys.argv[1:2] == ["_floor"]:
        floor_proxy(int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5])
    elif sys.argv[1:2] == ["_streams"]:
        print(json.dumps(asyncio.run(stream_times(sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])))))
    else:
        main()
