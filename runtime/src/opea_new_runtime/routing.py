"""Which nodes of the flow run for one request, and what each of them receives.

The rules (the same on both runtimes):

* an entry node always runs, with the request's inputs;
* when a node has finished, each of its outgoing edges is taken or not:
    - the node failed (and has `error` edges, else the request fails): only its
      `error` edges are taken, and the error document is its output;
    - a `success` edge is taken unless the node's output black-lists its target
      (`downstream_black_list`: regular expressions, the way comps lets a
      guardrail stop a flow);
    - any other condition is taken when it holds on the node's output;
* once every predecessor of a node has finished (or been skipped), the node runs
  if at least one of its incoming edges was taken, with the outputs of those
  predecessors merged in flow order (`dict.update`: the last one wins, as in
  comps); otherwise it is skipped, and so are its own outgoing edges.

`Flow` is built once from the edges; `Run` holds the state of one request. The
rules are plain Python without I/O, so they are tested without any server.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from typing import Any

from .conditions import Condition

BLACK_LIST = "downstream_black_list"


class Flow:
    """The edges of the flow with their conditions, and each node's predecessors in flow order."""

    def __init__(self, nodes: Iterable[str], edges: Iterable[tuple[str, str, Condition]]) -> None:
        self.nodes = list(nodes)
        self.edges: dict[str, list[tuple[str, Condition]]] = {node: [] for node in self.nodes}
        self.predecessors: dict[str, list[str]] = {node: [] for node in self.nodes}
        for source, target, condition in edges:
            self.edges[source].append((target, condition))
        for source in self.nodes:  # flow order: the order nodes were added, as comps' DAG lists them
            for target, _ in self.edges[source]:
                if source not in self.predecessors[target]:
                    self.predecessors[target].append(source)

    def ancestors(self, node: str) -> set[str]:
        """Every node upstream of `node`."""
        found: set[str] = set()
        stack = list(self.predecessors[node])
        while stack:
            source = stack.pop()
            if source not in found:
                found.add(source)
                stack.extend(self.predecessors[source])
        return found

    def routes_errors(self, node: str) -> bool:
        """Whether a failure of `node` flows on (it has an `error` edge) instead of failing the request."""
        return any(condition.kind == "error" for _, condition in self.edges[node])

    def start(self, request: Any = None) -> Run:
        return Run(self, request)


class Run:
    """One request's way through the flow."""

    def __init__(self, flow: Flow, request: Any = None) -> None:
        self.flow = flow
        self.request = request
        self.outputs: dict[str, Any] = {}
        self.skipped: set[str] = set()
        self.taken: set[tuple[str, str]] = set()
        self.not_taken: set[tuple[str, str]] = set()
        self.running: dict[str, asyncio.Task | None] = {}

    def inputs_of(self, node: str, merged: Any) -> tuple[bool, Any]:
        """(runs, inputs): whether `node` runs and, if so, its inputs.

        `merged` is what the runtime merged from every predecessor; it is kept
        when every incoming edge was taken, rebuilt from the taken ones otherwise.
        """
        predecessors = self.flow.predecessors[node]
        if not predecessors:
            return True, merged
        taken = [source for source in predecessors if (source, node) in self.taken]
        if not taken:
            return False, None
        if len(taken) == len(predecessors):
            return True, merged
        inputs: dict[str, Any] = {}
        for source in taken:
            inputs.update(self.outputs[source])
        return True, inputs

    def carried(self, node: str) -> dict[str, Any]:
        """The request merged with what every upstream node of `node` answered, in flow order (the last wins).

        align.py takes from here the fields a node's own inputs lack: data flows through nodes that do not own it.
        """
        carried = dict(self.request) if isinstance(self.request, dict) else {}
        ancestors = self.flow.ancestors(node)
        for name in self.flow.nodes:
            output = self.outputs.get(name)
            if name in ancestors and isinstance(output, dict):
                carried.update(output)
        return carried

    def started(self, node: str) -> None:
        self.running[node] = asyncio.current_task()

    def finish(self, node: str, output: Any, *, failed: bool = False) -> Any:
        """Record what `node` answered, decide its outgoing edges; return the output without its black list."""
        self.running.pop(node, None)
        black_list = output.get(BLACK_LIST) if isinstance(output, dict) else None
        if black_list is not None:
            output = {key: value for key, value in output.items() if key != BLACK_LIST}
        self.outputs[node] = output
        for target, condition in self.flow.edges[node]:
            if condition.kind == "success" and not failed:
                holds = not _black_listed(target, black_list)
            else:
                holds = condition.holds(output, failed=failed)
            (self.taken if holds else self.not_taken).add((node, target))
        return output

    def skip(self, node: str) -> None:
        self.skipped.add(node)
        self.not_taken.update((node, target) for target, _ in self.flow.edges[node])

    def ran(self, node: str) -> bool:
        return node in self.outputs

    def waiting_for(self) -> str | None:
        """The first node, in flow order, that was called and has not answered."""
        return next((node for node in self.flow.nodes if node in self.running), None)

    def results(self, result_dict: dict[str, Any], runtime_graph: Any) -> tuple[dict[str, Any], Any]:
        """The runtime's results without the skipped nodes, its graph without them and the edges not taken."""
        for node in self.skipped:
            result_dict.pop(node, None)
            runtime_graph.delete_node_if_exists(node)
        for source, target in self.not_taken:
            if target in runtime_graph.graph.get(source, ()):
                runtime_graph.delete_edge(source, target)
        return result_dict, runtime_graph

    async def cancel(self) -> None:
        """Cancel the calls still running (the request failed) and wait until they stopped.

        Calls that already failed on their own are collected too, so their errors are not reported as
        never retrieved.
        """
        current = asyncio.current_task()
        tasks = [task for task in self.running.values() if task is not None and task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _black_listed(target: str, patterns: Any) -> bool:
    """comps' rule: a target is black-listed when any pattern is found in its name (`re.findall`)."""
    if not patterns:
        return False
    if isinstance(patterns, str):
        patterns = [patterns]
    for pattern in patterns:
        try:
            if re.search(str(pattern), target):
                return True
        except re.error:
            continue  # comps logs and ignores an invalid pattern
    return False
