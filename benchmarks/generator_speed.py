"""How fast opea-new is where users wait for it, next to the tool it builds on.

    python benchmarks/generator_speed.py [--runs N]

Runs the installed `opea-new` and `copier` (the same environment as this
Python) in a private HOME and prints one table. Figures are medians of N runs
on this machine; the issue's goals are printed beside them, never asserted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

BIN = Path(sys.executable).parent
OPEA_NEW = [str(BIN / "opea-new")] if (BIN / "opea-new").exists() else [sys.executable, "-m", "opea_new"]
COPIER = [str(BIN / "copier")]

TYPES = ["embedding", "retriever", "rerank", "llm", "guardrail", "undefined", "ragas", "dataprep", "tts", "asr"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="runs per measurement (median reported)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="opea-new-bench-"))
    os.environ["HOME"] = str(work / "home")
    (work / "home").mkdir()
    for key, value in {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
                       "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"}.items():
        os.environ.setdefault(key, value)
    try:
        rows = measure(work, args.runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nopea-new speed, median of {args.runs} runs ({os.cpu_count()} CPUs)\n")
    print(f"{'measurement':<44}{'seconds':>9}   {'compared with':<38}{'seconds':>9}   goal")
    for name, value, other_name, other, goal in rows:
        value_text = f"{value:9.3f}" if value is not None else " " * 9
        other_text = f"{other:9.3f}" if other is not None else " " * 9
        print(f"{name:<44}{value_text}   {other_name:<38}{other_text}   {goal}")


def measure(work: Path, runs: int) -> list[tuple]:
    specs = work / "specs"
    specs.mkdir()
    chain4 = write_spec(specs / "four.yaml", "four", 4)
    chain6 = write_spec(specs / "six.yaml", "six", 6)
    chain40 = write_spec(specs / "forty.yaml", "forty", 40)
    run(OPEA_NEW + ["megaservice", "--spec", chain4, "-o", work / "warmup"])  # materialise template bundles

    help_new = median(runs * 2, lambda i: run(OPEA_NEW + ["--help"]))
    help_copier = median(runs * 2, lambda i: run(COPIER + ["--help"]))
    render4 = median(runs, lambda i: run(OPEA_NEW + ["megaservice", "--spec", chain4, "-o", work / f"r4-{i}"]))
    render40 = median(max(2, runs // 2),
                      lambda i: run(OPEA_NEW + ["megaservice", "--spec", chain40, "-o", work / f"r40-{i}"]))

    base = work / "six"
    run(OPEA_NEW + ["megaservice", "--spec", chain6, "-o", base])

    def fresh_clone(i: int, label: str) -> Path:
        clone = work / f"{label}-{i}"
        subprocess.run(["git", "clone", "-q", str(base), str(clone)], check=True)
        return clone

    add = median(runs, lambda i: run(OPEA_NEW + ["add-service", "audit", "--type", "undefined", "--project",
                                                 fresh_clone(i, "add")]))
    noop = median(runs, lambda i: run(OPEA_NEW + ["update", "--project", fresh_clone(i, "noop")]))
    copier_root = median(runs, lambda i: run(COPIER + ["update", "--defaults", "--trust", "--quiet"],
                                             cwd=fresh_clone(i, "copier")))
    copier_all = median(runs, lambda i: copier_every_part(fresh_clone(i, "copier-all")))

    # A real update: the next release changes a file in every template.
    newer = work / "templates-next"
    shutil.copytree(templates_root(), newer, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for template in ("megaservice/README.md.jinja", "compose/template/compose.yaml.jinja",
                     "microservice/README.md.jinja"):
        with (newer / template).open("a") as handle:
            handle.write("\n<!-- next release -->\n")
    next_release = {"OPEA_NEW_TEMPLATES_DIR": str(newer), "OPEA_NEW_TEMPLATE_VERSION": next_version()}
    run(OPEA_NEW + ["update", "--dry-run", "--project", base], env=next_release)  # materialise the bundles
    real = median(runs, lambda i: run(OPEA_NEW + ["update", "--project", fresh_clone(i, "real")], env=next_release))
    copier_real = median(runs, lambda i: copier_every_part(fresh_clone(i, "copier-real"), commit=True))
    return [
        ("opea-new --help", help_new, "copier --help", help_copier,
         f"≤ 0.35× copier: {help_new / help_copier:.2f}×"),
        ("render a 4-service spec", render4, "", None, "≤ 3 s"),
        ("render a 40-service spec", render40, "", None, f"≤ 4× the 4-service render: {render40 / render4:.1f}×"),
        ("add-service on a 6-service project", add, "", None, "≤ 5 s"),
        ("no-op opea-new update (6 services, 8 parts)", noop, "plain copier update, root part only",
         copier_root, "≤ 8 s"),
        ("", None, "plain copier update, all 8 parts", copier_all, ""),
        ("opea-new update to a new release (8 parts)", real, "plain copier update, all 8 parts", copier_real, ""),
    ]


def copier_every_part(project: Path, commit: bool = False) -> float:
    """Plain `copier update` of every part, the way a user without opea-new would run it (seconds, copier only).

    copier refuses a dirty tree, so with `commit` each part's changes are committed between runs
    (not timed)."""
    parts = [(project, ".copier-answers.yml"), (project, ".copier-answers.compose.yml")]
    parts += [(answers.parent, answers.name) for answers in sorted(project.glob("services/*/.copier-answers.yml"))]
    total = 0.0
    for folder, answers in parts:
        total += run(COPIER + ["update", "--defaults", "--trust", "--quiet", "--answers-file", answers], cwd=folder)
        if commit:
            subprocess.run(["git", "add", "--all"], cwd=project, check=True)
            subprocess.run(["git", "commit", "--quiet", "--allow-empty", "-m", f"update {folder.name}"], cwd=project,
                           check=True)
    return total


def next_version() -> str:
    from opea_new import __version__

    major, minor = (int(part) for part in __version__.split(".")[:2])
    return f"{major}.{minor + 1}.0"


def templates_root() -> Path:
    from opea_new.paths import templates_root as root

    return root()


def write_spec(path: Path, name: str, count: int) -> Path:
    lines = [f"name: {name}", "runtime: lite", "services:"]
    for index in range(count):
        kind = TYPES[index % len(TYPES)]
        lines.append(f"  - {{name: s{index:02d}-{kind}, type: {kind}, port: {20000 + index}}}")
    path.write_text("\n".join(lines) + "\n")
    return path


def run(command: list, cwd: Path | None = None, env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    result = subprocess.run([str(part) for part in command], cwd=cwd, capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, command))} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return elapsed


def median(runs: int, once: Callable[[int], float]) -> float:
    return statistics.median(once(i) for i in range(runs))


if __name__ == "__main__":
    main()
