"""What scaling a CPU-bound node out buys, through the megaservice: 1 instance vs 3, in one run.

    python benchmarks/replicas.py [--python /tmp/venv-rt/bin/python] [--runtime lite] [--requests 400]
                                  [--concurrency 8] [--cpu-ms 20]

`--python` is a Python with opea-new-runtime installed (and aiohttp; comps' extra for --runtime comps).
On 127.0.0.1 it starts three stub instances, each its own process (FastAPI on uvicorn, burning --cpu-ms of
CPU per request), and a raw megaservice whose one node lists them in <NODE>_SERVICE_INSTANCES: first just
the first instance, then all three. For each it sends --requests requests, --concurrency at a time, and
prints req/s, p50 / p99 latency and how many requests each instance served, side by side. Bounded (every
request has a 30 s timeout); every process is stopped by its PID at the end. Figures are printed, never
asserted: the gain is bounded by the machine's cores (the stubs and the megaservice share them).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

STUB = textwrap.dedent("""
    import sys, time
    import uvicorn
    from fastapi import FastAPI

    app = FastAPI()
    served = 0
    CPU = float(sys.argv[2]) / 1000

    @app.get("/v1/health_check")
    async def health():
        return {"status": "healthy"}

    @app.get("/served")
    async def count():
        return {"served": served}

    @app.post("/v1/burn")
    async def burn(body: dict):
        global served
        served += 1
        end = time.thread_time() + CPU
        total = 0
        while time.thread_time() < end:  # CPU, not sleep: what a model on CPU does
            total += 1
        return {"text": body.get("text", ""), "spins": total}

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
""")

MEGA = textwrap.dedent("""
    from opea_new_runtime.{runtime} import ServiceOrchestrator, ServiceType, remote_service
    from opea_new_runtime.megaservice import Megaservice, serve

    def build():
        orchestrator = ServiceOrchestrator()
        orchestrator.add(remote_service("burner", ServiceType.UNDEFINED, port=1, endpoint="/v1/burn"))
        return orchestrator

    serve(Megaservice(name="replicas", port={port}, endpoint="/v1/burn", protocol="raw"), build)
""")


def free_ports(count: int) -> list[int]:
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def wait_up(url: str, process: subprocess.Popen, seconds: float = 60) -> None:
    import urllib.request

    deadline = time.monotonic() + seconds
    while True:
        if process.poll() is not None:
            raise SystemExit(f"{url}: the process exited ({process.returncode})")
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"{url} never answered") from None
            time.sleep(0.1)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


LOAD = textwrap.dedent("""
    import asyncio, json, sys, time
    import aiohttp

    async def main(url, total, concurrency):
        latencies, errors = [], 0
        queue = iter(range(total))
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            async def worker():
                nonlocal errors
                for index in queue:
                    started = time.perf_counter()
                    try:
                        async with session.post(url, json={"text": f"request {index}"}) as answer:
                            await answer.read()
                            ok = answer.status == 200
                    except Exception:
                        ok = False
                    latencies.append(time.perf_counter() - started)
                    errors += not ok
            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            elapsed = time.perf_counter() - started
        latencies.sort()
        print(json.dumps({"rps": total / elapsed, "p50": latencies[len(latencies) // 2] * 1000,
                          "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
                          "errors": errors}))

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
""")


def served(python: str, ports: list[int]) -> list[int]:
    import urllib.request

    return [json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/served", timeout=5).read())["served"]
            for port in ports]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", default=os.environ.get("RUNTIME_PYTHON", "/tmp/venv-rt/bin/python"))
    parser.add_argument("--runtime", choices=["lite", "comps"], default="lite")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--cpu-ms", type=float, default=20.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="replicas-"))
    (work / "stub.py").write_text(STUB)
    (work / "load.py").write_text(LOAD)
    *stub_ports, mega_port = free_ports(4)
    processes: list[subprocess.Popen] = []
    rows = []
    try:
        for port in stub_ports:
            stub = subprocess.Popen([args.python, str(work / "stub.py"), str(port), str(args.cpu_ms)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            processes.append(stub)
            wait_up(f"http://127.0.0.1:{port}/v1/health_check", stub)
        for count in (1, 3):
            (work / "mega.py").write_text(MEGA.format(runtime=args.runtime, port=mega_port))
            environ = {**os.environ, "LOG_LEVEL": "warning",
                       "BURNER_SERVICE_INSTANCES": ",".join(f"127.0.0.1:{port}" for port in stub_ports[:count])}
            mega = subprocess.Popen([args.python, str(work / "mega.py")], env=environ,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            try:
                wait_up(f"http://127.0.0.1:{mega_port}/v1/health_check", mega)
                url = f"http://127.0.0.1:{mega_port}/v1/burn"
                # warm up (connections, imports), then measure
                subprocess.run([args.python, str(work / "load.py"), url, "16", "4"], check=True,
                               capture_output=True, timeout=120)
                before = served(args.python, stub_ports)
                measured = subprocess.run([args.python, str(work / "load.py"), url, str(args.requests),
                                           str(args.concurrency)], check=True, capture_output=True, text=True,
                                          timeout=600)
                after = served(args.python, stub_ports)
                figures = json.loads(measured.stdout)
                figures["spread"] = [b - a for a, b in zip(before, after, strict=True)][:count]
                rows.append((count, figures))
            finally:
                stop(mega)
    finally:
        for process in processes:
            stop(process)
    print(f"{args.runtime} megaservice, one node of {args.cpu_ms:g} ms CPU per request, {args.requests} requests, "
          f"{args.concurrency} at a time, {os.cpu_count()} cores")
    print(f"{'instances':>9}  {'req/s':>7}  {'p50 ms':>7}  {'p99 ms':>7}  {'errors':>6}  requests per instance")
    for count, figures in rows:
        print(f"{count:>9}  {figures['rps']:>7.1f}  {figures['p50']:>7.1f}  {figures['p99']:>7.1f}  "
              f"{figures['errors']:>6}  {figures['spread']}")
    if len(rows) == 2:
        print(f"3 instances / 1: {rows[1][1]['rps'] / rows[0][1]['rps']:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
