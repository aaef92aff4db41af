"""What a generated project costs in Docker: image sizes and `up --wait` times.

    sudo .venv/bin/python benchmarks/container_figures.py [--runs N]

Starts the docker tier's private engine (tests/docker/engine.py: root, its own
dockerd, the stand-in python:3.11-slim), renders the ChatQnA-shaped chain
(embedding → retriever → rerank → llm) with the installed `opea-new` for each
runtime on free ports of 127.0.0.1, and prints one table:

* image sizes: the base image, what each generated microservice image adds to
  it, what the megaservice image adds on each runtime;
* cold: `docker compose build --no-cache` (every layer rebuilt, every package
  downloaded) then `up --wait`, as on a fresh machine that has the base image;
* warm: `down`, then `up --build --wait` again with the layer cache, as on the
  second `make up` (median of N runs).

Figures are printed, never asserted. Everything it starts is brought down; the
images stay in the engine's data root (the tier's layer cache).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "docker"))

from engine import BASE_IMAGE, ComposeProject, Engine, EngineUnavailable, running_engine  # noqa: E402

BIN = Path(sys.executable).parent
OPEA_NEW = [str(BIN / "opea-new")] if (BIN / "opea-new").exists() else [sys.executable, "-m", "opea_new"]
SERVICES = [("embedding", "embedding"), ("retriever", "retriever"), ("rerank", "rerank"), ("llm", "llm")]
MB = 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="warm `up --build --wait` runs (median reported)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="opea-new-containers-"))
    os.environ["HOME"] = str(work / "home")
    (work / "home").mkdir()
    for key, value in {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
                       "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"}.items():
        os.environ.setdefault(key, value)
    try:
        with running_engine() as engine:
            print(f"engine ready: {', '.join(f'{k} {v:.1f}s' for k, v in engine.timings.items())}", flush=True)
            rows = {runtime: measure(engine, work, runtime, args.runs) for runtime in ("lite", "comps")}
            base = engine.image_size(BASE_IMAGE)
            engine.prune_dangling_images()
    except EngineUnavailable as reason:
        sys.exit(f"no Docker engine: {reason}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(base, rows, args.runs)


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for probe in sockets:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()


def render(work: Path, runtime: str) -> tuple[Path, str]:
    name = f"figures-{runtime}"
    *ports, mega = free_ports(len(SERVICES) + 1)
    lines = [f"name: {name}", f"runtime: {runtime}", f"megaservice: {{port: {mega}, endpoint: /v1/chatqna}}",
             "services:"]
    lines += [f"  - {{name: {service}, type: {kind}, port: {port}}}"
              for (service, kind), port in zip(SERVICES, ports, strict=True)]
    spec = work / f"{name}.yaml"
    spec.write_text("\n".join(lines) + "\n")
    project = work / name
    subprocess.run([*OPEA_NEW, "megaservice", "--spec", str(spec), "--output", str(project)], check=True,
                   capture_output=True, text=True, timeout=300)
    return project, name


def timed(action) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


def measure(engine: Engine, work: Path, runtime: str, runs: int) -> dict:
    directory, name = render(work, runtime)
    project = ComposeProject(engine, directory, f"figures-{runtime}")
    try:
        print(f"{runtime}: cold build (--no-cache) ...", flush=True)
        build = timed(lambda: project.compose("build", "--no-cache"))
        start = timed(lambda: project.up(wait_timeout=300))
        warm = []
        for run in range(runs):
            project.down()
            warm.append(timed(lambda: project.up(wait_timeout=300, build=True)))
            print(f"{runtime}: warm run {run + 1}: {warm[-1]:.1f}s", flush=True)
        project.down()
        fresh = timed(lambda: project.up(wait_timeout=300))  # containers created from built images, no build step
    finally:
        project.down()
    return {
        "cold build": build,
        "cold up --wait": start,
        "warm up --build --wait": statistics.median(warm),
        "up --wait (built images)": fresh,
        "microservices": {service: engine.image_size(f"{name}/{name}-{service}:latest") for service, _ in SERVICES},
        "megaservice": engine.image_size(f"{name}/{name}:latest"),
    }


def report(base: int, rows: dict[str, dict], runs: int) -> None:
    print(f"\nContainers of a generated ChatQnA-shaped project ({os.cpu_count()} CPUs; "
          f"base {BASE_IMAGE} {base / MB:.1f} MB)\n")
    print(f"{'image':<44}{'size MB':>10}{'adds MB':>10}")
    for service in rows["lite"]["microservices"]:
        size = rows["lite"]["microservices"][service]
        print(f"{'microservice ' + service:<44}{size / MB:10.1f}{(size - base) / MB:10.1f}   (goal: adds ≤ 50 MB)")
    for runtime, row in rows.items():
        size = row["megaservice"]
        print(f"{'megaservice, runtime ' + runtime:<44}{size / MB:10.1f}{(size - base) / MB:10.1f}")
    print(f"\n{'time (s)':<44}{'lite':>10}{'comps':>10}")
    for key in ("cold build", "cold up --wait", "up --wait (built images)", "warm up --build --wait"):
        note = f"   median of {runs}" if key.startswith("warm") else ""
        print(f"{key:<44}{rows['lite'][key]:10.1f}{rows['comps'][key]:10.1f}{note}")
    cold = {runtime: row["cold build"] + row["cold up --wait"] for runtime, row in rows.items()}
    print(f"{'cold total (build + up --wait)':<44}{cold['lite']:10.1f}{cold['comps']:10.1f}")


if __name__ == "__main__":
    main()
