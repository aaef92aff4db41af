"""routing.py and statistics.py of the runtime library, without servers (fast).

They are plain Python (no comps, no aiohttp; statistics uses prometheus_client),
loaded here from the library's source as the generator loads conditions.py: the
rules tested are the rules that run.
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "runtime" / "src" / "opea_new_runtime"


def load_megaservice_modules() -> tuple[ModuleType, ModuleType, ModuleType]:
    """opea_new_runtime.conditions, .routing and .statistics as a private package (routing imports .conditions)."""
    name = "_runtime_source"
    package = ModuleType(name)
    package.__path__ = [str(PACKAGE)]
    sys.modules[name] = package
    modules = []
    for module in ("conditions", "routing", "statistics"):
        spec = importlib.util.spec_from_file_location(f"{name}.{module}", PACKAGE / f"{module}.py")
        loaded = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = loaded
        spec.loader.exec_module(loaded)
        modules.append(loaded)
    return tuple(modules)


conditions, routing, statistics = load_megaservice_modules()


def flow(*edges: tuple[str, str] | tuple[str, str, str], nodes: tuple[str, ...] = ()) -> routing.Flow:
    names = list(dict.fromkeys([*nodes, *(name for edge in edges for name in edge[:2])]))
    return routing.Flow(names, [(source, target, conditions.parse(rest[0] if rest else None))
                                for source, target, *rest in edges])


# ---------------------------------------------------------------- routing


def test_entry_nodes_run_with_the_request():
    run = flow(("a", "b")).start()
    assert run.inputs_of("a", {"text": "x"}) == (True, {"text": "x"})


def test_conditions_decide_each_edge():
    run = flow(("guard", "answer", "!blocked"), ("guard", "refusal", "blocked == true"),
               ("guard", "log")).start()
    output = run.finish("guard", {"blocked": True, "downstream_black_list": ["^log$"]})
    assert output == {"blocked": True}  # the black list is consumed, never passed on
    assert run.taken == {("guard", "refusal")}
    assert run.not_taken == {("guard", "answer"), ("guard", "log")}  # success edges obey the black list


def test_black_lists_use_comps_rule_and_ignore_bad_patterns():
    run = flow(("a", "llm/MicroService"), ("a", "tts/MicroService")).start()
    run.finish("a", {"downstream_black_list": ["[", "llm"]})  # re.findall on the node name, as comps
    assert run.not_taken == {("a", "llm/MicroService")} and run.taken == {("a", "tts/MicroService")}


def test_a_failure_takes_only_error_edges():
    run = flow(("worker", "next"), ("worker", "handler", "error"), ("worker", "odd", "!ok")).start()
    error = {"error": {"node": "worker", "status": 500, "detail": "boom"}}
    run.finish("worker", error, failed=True)
    assert run.taken == {("worker", "handler")}
    assert run.inputs_of("handler", {"merged": "by the runtime"}) == (True, {"merged": "by the runtime"})
    assert run.inputs_of("next", {}) == (False, None)
    assert flow(("worker", "handler", "error")).routes_errors("worker")
    assert not flow(("worker", "next")).routes_errors("worker")


def test_skips_propagate_and_fan_in_merges_only_the_edges_taken():
    run = flow(("r", "left", 'route == "left"'), ("r", "right", 'route == "right"'), ("left", "join"),
               ("right", "join"), ("join", "final")).start()
    run.finish("r", {"route": "right", "x": 1})
    assert run.inputs_of("left", {}) == (False, None)
    run.skip("left")
    run.finish("right", {"route": "right", "from": "right"})
    runs, inputs = run.inputs_of("join", {"from": "left and right, as the runtime merged them"})
    assert runs and inputs == {"route": "right", "from": "right"}
    neither = flow(("r", "left", "go"), ("left", "join"), ("join", "final")).start()
    neither.finish("r", {"go": False})
    for node in ("left", "join", "final"):
        assert neither.inputs_of(node, {})[0] is False
        neither.skip(node)


def test_fan_in_merge_order_is_the_flow_order():
    run = flow(("b", "z"), ("a", "z"), ("c", "z", "keep"), nodes=("a", "b", "c", "z")).start()
    assert run.flow.predecessors["z"] == ["a", "b", "c"]  # the order nodes were added, as comps' DAG
    run.finish("a", {"v": "a", "a": 1})
    run.finish("b", {"v": "b", "b": 1})
    run.finish("c", {"v": "c", "keep": False})
    assert run.inputs_of("z", {}) == (True, {"v": "b", "a": 1, "b": 1})


class Graph:
    """The part of comps' DAG that Run.results uses."""

    def __init__(self, edges: dict[str, set[str]]) -> None:
        self.graph = edges

    def delete_node_if_exists(self, node: str) -> None:
        self.graph.pop(node, None)
        for targets in self.graph.values():
            targets.discard(node)

    def delete_edge(self, source: str, target: str) -> None:
        self.graph[source].remove(target)


def test_results_hold_only_what_ran():
    run = flow(("g", "a", "ok"), ("g", "b", "!ok"), ("a", "c")).start()
    run.finish("g", {"ok": True})
    run.finish("a", {"x": 1})
    run.skip("b")
    run.finish("c", {"y": 2})
    result_dict = {"g": {}, "a": {}, "b": {}, "c": {}}
    graph = Graph({"g": {"a", "b"}, "a": {"c"}, "b": set(), "c": set()})
    result_dict, graph = run.results(result_dict, graph)
    assert set(result_dict) == {"g", "a", "c"}
    assert graph.graph == {"g": {"a"}, "a": {"c"}, "c": set()}


def test_cancel_stops_calls_in_flight_and_collects_failed_ones():
    async def scenario():
        run = flow(("a", "b"), nodes=("a", "b", "c")).start()
        gate = asyncio.Event()

        async def call(node: str, fail: bool) -> None:
            run.started(node)
            if fail:
                raise RuntimeError(node)
            await gate.wait()

        slow = asyncio.create_task(call("a", False))
        failed = asyncio.create_task(call("c", True))
        await asyncio.sleep(0)
        assert run.waiting_for() == "a"
        await asyncio.gather(failed, return_exceptions=True)
        await run.cancel()
        assert slow.cancelled()

    asyncio.run(scenario())


# ---------------------------------------------------------------- statistics


def test_counters_keep_totals_and_a_bounded_window():
    counter = statistics.Counter()
    for index in range(statistics.WINDOW * 3):
        counter.record(0.001 * (index % 10), failed=index % 4 == 0)
    assert counter.calls == statistics.WINDOW * 3 and counter.failures == statistics.WINDOW * 3 // 4
    assert len(counter.latencies) == statistics.WINDOW  # memory does not grow with traffic
    snapshot = counter.snapshot()
    assert snapshot["latency_ms"]["p50"] == 4.0 and snapshot["latency_ms"]["max"] == 9.0


def test_prometheus_text_format():
    stats = statistics.Statistics(["embedding", 'odd"name'])
    stats.megaservice.record(0.02)
    stats.megaservice.record(0.3, failed=True)
    stats.megaservice.record(0.001, rejected=True)
    stats.node("embedding").record(0.004)
    text = stats.prometheus()
    lines = text.splitlines()
    sample = re.compile(r'^[a-z_]+(\{([a-z_]+="([^"\\]|\\.)*",?)+\})? [0-9.e+-]+$')
    for line in lines:
        assert line.startswith("# HELP ") or line.startswith("# TYPE ") or sample.match(line), line
    assert 'opea_megaservice_requests_total{outcome="ok"} 1.0' in lines
    assert 'opea_megaservice_requests_total{outcome="failed"} 1.0' in lines
    assert 'opea_megaservice_requests_total{outcome="rejected"} 1.0' in lines
    assert 'opea_megaservice_request_duration_seconds_bucket{le="0.025"} 2.0' in lines  # cumulative
    assert 'opea_megaservice_request_duration_seconds_bucket{le="+Inf"} 3.0' in lines
    assert 'opea_megaservice_request_duration_seconds_count 3.0' in lines
    assert 'opea_megaservice_node_duration_seconds_bucket{le="0.005",node="embedding"} 1.0' in lines
    assert 'opea_megaservice_node_requests_total{node="odd\\"name",outcome="ok"} 0.0' in lines
    assert text.endswith("\n")


@pytest.mark.parametrize("seconds", [0.0, 0.001, 0.0011, 299.0, 300.0, 1e6])
def test_every_latency_lands_in_one_bucket(seconds):
    counter = statistics.Counter()
    counter.record(seconds)
    assert sum(counter.buckets) == 1
    bounds = (*statistics.BUCKETS, float("inf"))
    index = counter.buckets.index(1)
    assert seconds <= bounds[index] and (index == 0 or seconds > bounds[index - 1])
