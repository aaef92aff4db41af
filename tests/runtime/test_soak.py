"""20,000 requests through the lite megaservice: no errors, and memory that does not grow after warm-up.

A 2-hop pass-through chain; 16 concurrent connections from an aiohttp client run
with the lite venv's Python (bounded: 20,000 requests or 240 s, whichever first).
The megaservice's RSS is read every 2,000 requests; after the first 4,000 (imports,
pools, caches, the statistics window filled) it must stay within a small margin.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import httpx
import pytest

pytestmark = pytest.mark.slow

REQUESTS = 20_000
STEP = 2_000
WARM_UP = 4_000
SECONDS = 240
RSS_MARGIN_KB = 1536  # a leak of 100 bytes per request would exceed it (measured: flat to 4 kB)
CHAIN = {"name": "soak", "megaservice": {"protocol": "raw"}, "services": [
    {"name": "first", "type": "undefined", "port": 19301}, {"name": "second", "type": "undefined", "port": 19302}]}

# Prints one JSON line per STEP requests: {"done", "errors", "statuses"}; waits for a line on stdin before going on.
LOADER = textwrap.dedent("""
    import asyncio, json, sys, time
    import aiohttp

    async def main(url, total, step, seconds):
        deadline = time.monotonic() + seconds
        done = errors = 0
        statuses = {}
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=16)) as session:
            async def one(index):
                nonlocal errors
                body = {"text": f"request {index}"}
                try:
                    async with session.post(url, json=body) as response:
                        answer = await response.json()
                        statuses[response.status] = statuses.get(response.status, 0) + 1
                        if response.status != 200 or answer.get("trace") != ["first", "second"] \\
                                or answer.get("text") != body["text"]:
                            errors += 1
                except Exception:
                    errors += 1

            while done < total and time.monotonic() < deadline:
                batch = min(step, total - done)
                queue = iter(range(done, done + batch))

                async def worker():
                    for index in queue:
                        await one(index)

                await asyncio.gather(*(worker() for _ in range(16)))
                done += batch
                print(json.dumps({"done": done, "errors": errors, "statuses": statuses}), flush=True)
                sys.stdin.readline()

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])))
""")


def test_twenty_thousand_requests_without_errors_or_growth(projects, processes, tmp_path):
    project = projects(CHAIN, "lite")
    first = processes.service(project, "first")
    second = processes.service(project, "second")
    megaservice = processes.megaservice(project, {"first": first.port, "second": second.port})
    loader = tmp_path / "loader.py"
    loader.write_text(LOADER)
    command = [processes.python("lite"), str(loader), f"{megaservice.url}/v1/soak", str(REQUESTS), str(STEP),
               str(SECONDS)]
    samples: list[tuple[int, int]] = []  # (requests done, RSS in kB)
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as load:
        try:
            for line in load.stdout:
                progress = json.loads(line)
                samples.append((progress["done"], megaservice.rss_kb()))
                assert progress["errors"] == 0, progress
                load.stdin.write("\n")
                load.stdin.flush()
        finally:
            if load.poll() is None:
                load.kill()
    assert load.returncode == 0
    assert samples[-1][0] == REQUESTS, f"only {samples[-1][0]} requests in {SECONDS} s"

    warm = next(rss for done, rss in samples if done >= WARM_UP)
    after = [rss for done, rss in samples if done > WARM_UP]
    print(f"RSS (kB) every {STEP} requests: {[rss for _, rss in samples]}", file=sys.stderr)
    assert max(after) - warm <= RSS_MARGIN_KB, f"RSS grew from {warm} kB to {max(after)} kB: {samples}"

    statistics = httpx.get(f"{megaservice.url}/v1/statistics", trust_env=False).json()
    assert statistics["megaservice"]["requests"] == REQUESTS and statistics["megaservice"]["failures"] == 0
    assert statistics["nodes"]["second"]["requests"] == REQUESTS
    assert megaservice.alive()
