"""The flow as a graph: nodes in spec order, edges with conditions, and the questions asked of it.

Every question is answered in time linear in the graph and without recursion, so a
chain of thousands of services costs milliseconds, not Python's stack.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from functools import cached_property


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    condition: str = "success"


class GraphError(ValueError):
    """An operation would make the flow invalid."""


@dataclass(frozen=True)
class Graph:
    nodes: tuple[str, ...]
    edges: tuple[Edge, ...]

    @classmethod
    def chain(cls, nodes: list[str] | tuple[str, ...]) -> Graph:
        return cls(tuple(nodes), tuple(Edge(a, b) for a, b in zip(nodes, nodes[1:], strict=False)))

    def successors(self, node: str) -> list[str]:
        return list(self._successors.get(node, ()))

    def predecessors(self, node: str) -> list[str]:
        return list(self._predecessors.get(node, ()))

    @cached_property
    def _successors(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for edge in self.edges:
            found.setdefault(edge.source, []).append(edge.target)
        return found

    @cached_property
    def _predecessors(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for edge in self.edges:
            found.setdefault(edge.target, []).append(edge.source)
        return found

    @property
    def entry_nodes(self) -> list[str]:
        targets = {edge.target for edge in self.edges}
        return [node for node in self.nodes if node not in targets]

    @property
    def terminal_nodes(self) -> list[str]:
        sources = {edge.source for edge in self.edges}
        return [node for node in self.nodes if node not in sources]

    def is_chain(self) -> bool:
        """One path through every node, unconditional edges only."""
        if len(self.nodes) <= 1:
            return not self.edges
        order = self.topological_order()
        edges = set(self.edges)
        return len(self.edges) == len(self.nodes) - 1 and all(
            Edge(a, b) in edges for a, b in zip(order, order[1:], strict=False))

    def find_cycle(self) -> list[str] | None:
        """A cycle as a list of nodes (first node repeated at the end), or None.

        A depth-first search in spec order, with an explicit stack (a chain may be long).
        """
        active, done = 1, 2
        state: dict[str, int] = {}
        for root in self.nodes:
            if root in state:
                continue
            state[root] = active
            path = [root]
            pending = [iter(self._successors.get(root, ()))]
            while pending:
                for successor in pending[-1]:
                    if state.get(successor) == active:
                        return [*path[path.index(successor):], successor]
                    if successor not in state:
                        state[successor] = active
                        path.append(successor)
                        pending.append(iter(self._successors.get(successor, ())))
                        break
                else:
                    state[path.pop()] = done
                    pending.pop()
        return None

    def topological_order(self) -> list[str]:
        """Nodes so that every edge points forward; ties keep spec order."""
        remaining = {node: len(self._predecessors.get(node, ())) for node in self.nodes}
        order: list[str] = []
        ready = deque(node for node in self.nodes if remaining[node] == 0)
        while ready:
            node = ready.popleft()
            order.append(node)
            for successor in self._successors.get(node, ()):
                if successor not in remaining:
                    continue
                remaining[successor] -= 1
                if remaining[successor] == 0:
                    ready.append(successor)
        if len(order) != len(self.nodes):
            raise GraphError(f"the flow has a cycle: {' → '.join(self.find_cycle() or [])}")
        return order

    # ------------------------------------------------------------ editing

    def insert(self, node: str, after: list[str], before: list[str]) -> Graph:
        """The graph with `node` added downstream of `after` and upstream of `before`.

        An edge a → b with a in `after` and b in `before` is replaced by a → node → b; a
        condition on it moves to a → node (the new node runs when the old target would
        have). With neither, `node` is appended to the end of a single chain.
        """
        for name in [*after, *before]:
            if name not in self.nodes:
                raise GraphError(f"there is no service {name!r} in the flow")
        if not after and not before:
            if not self.is_chain():
                raise GraphError("the flow is not a single chain, so where to put the new service is ambiguous; "
                                 "say where with --after and/or --before")
            after = self.topological_order()[-1:]
        if node in self.nodes:
            raise GraphError(f"there is already a service {node!r} in the flow")
        if set(after) & set(before):
            both = ", ".join(sorted(set(after) & set(before)))
            raise GraphError(f"{both} cannot be both before and after {node!r} (that is a cycle)")
        replaced = [edge for edge in self.edges if edge.source in after and edge.target in before]
        conditions = {}
        for edge in replaced:  # a → b [c] becomes a → node [c] → b; differing conditions cannot be kept
            conditions.setdefault(edge.source, set()).add(edge.condition)
        incoming = [Edge(source, node, _only(conditions.get(source), node, source)) for source in after]
        edges: list[Edge] = []
        for edge in self.edges:  # a replaced edge's place goes to a → node, so a round trip keeps the order
            if edge not in replaced:
                edges.append(edge)
            elif (new := next(e for e in incoming if e.source == edge.source)) not in edges:
                edges.append(new)
        edges += [edge for edge in incoming if edge not in edges]
        edges += [Edge(node, target) for target in before]
        grown = Graph((*self.nodes, node), tuple(edges))
        cycle = grown.find_cycle()
        if cycle:
            raise GraphError(f"inserting {node!r} there would create a cycle: {' → '.join(cycle)}")
        return grown

    def remove(self, node: str) -> Graph:
        """The graph without `node`; its predecessors are connected to its successors."""
        if node not in self.nodes:
            raise GraphError(f"there is no service {node!r} in the flow")
        incoming = [edge for edge in self.edges if edge.target == node]
        outgoing = [edge for edge in self.edges if edge.source == node]
        if any(edge.condition != "success" for edge in incoming + outgoing) and incoming and outgoing:
            conditional = [f"{e.source} → {e.target} ({e.condition})" for e in incoming + outgoing
                           if e.condition != "success"]
            raise GraphError(f"{node!r} sits on conditional edges ({', '.join(conditional)}); reconnecting its "
                             "neighbours would change what those conditions mean — edit the flow by hand instead")
        existing = {(e.source, e.target) for e in self.edges if node not in (e.source, e.target)}
        kept: list[Edge] = []
        for edge in self.edges:  # p → node → s becomes p → s, in the place of p → node
            if edge.target == node:
                for after in outgoing:
                    if (edge.source, after.target) not in existing:
                        existing.add((edge.source, after.target))
                        kept.append(Edge(edge.source, after.target))
            elif edge.source != node:
                kept.append(edge)
        nodes = tuple(name for name in self.nodes if name != node)
        if nodes and not Graph(nodes, tuple(kept)).entry_nodes:
            raise GraphError(f"removing {node!r} would leave the flow without an entry node")
        return Graph(nodes, tuple(kept))


def _only(conditions: set[str] | None, node: str, source: str) -> str:
    if not conditions:
        return "success"
    if len(conditions) > 1:
        raise GraphError(f"the edges from {source!r} that {node!r} would replace have different conditions "
                         f"({', '.join(sorted(conditions))}); insert it with one --before at a time")
    return next(iter(conditions))
