"""The flow as a graph: nodes in spec order, edges with conditions, and the questions asked of it."""

from __future__ import annotations

from dataclasses import dataclass


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
        return [edge.target for edge in self.edges if edge.source == node]

    def predecessors(self, node: str) -> list[str]:
        return [edge.source for edge in self.edges if edge.target == node]

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
        return len(self.edges) == len(self.nodes) - 1 and all(
            Edge(a, b) in self.edges for a, b in zip(order, order[1:], strict=False))

    def find_cycle(self) -> list[str] | None:
        """A cycle as a list of nodes (first node repeated at the end), or None."""
        state: dict[str, str] = {}
        stack: list[str] = []

        def visit(node: str) -> list[str] | None:
            state[node] = "active"
            stack.append(node)
            for successor in self.successors(node):
                if state.get(successor) == "active":
                    return [*stack[stack.index(successor):], successor]
                if successor not in state and (cycle := visit(successor)):
                    return cycle
            stack.pop()
            state[node] = "done"
            return None

        for node in self.nodes:
            if node not in state and (cycle := visit(node)):
                return cycle
        return None

    def topological_order(self) -> list[str]:
        """Nodes so that every edge points forward; ties keep spec order."""
        remaining = {node: len(self.predecessors(node)) for node in self.nodes}
        order: list[str] = []
        ready = [node for node in self.nodes if remaining[node] == 0]
        while ready:
            node = ready.pop(0)
            order.append(node)
            for successor in self.successors(node):
                remaining[successor] -= 1
                if remaining[successor] == 0:
                    ready.append(successor)
        if len(order) != len(self.nodes):
            raise GraphError(f"the flow has a cycle: {' → '.join(self.find_cycle() or [])}")
        return order

    # ------------------------------------------------------------ editing

    def insert(self, node: str, after: list[str], before: list[str]) -> Graph:
        """The graph with `node` added downstream of `after` and upstream of `before`.

        An edge a → b with a in `after` and b in `before` is replaced by a → node → b.
        With neither, `node` is appended to the end of a single chain.
        """
        for name in [*after, *before]:
            if name not in self.nodes:
                raise GraphError(f"there is no service {name!r} in the flow")
        if not after and not before:
            if not self.is_chain():
                raise GraphError("the flow is not a single chain, so where to put the new service is ambiguous; "
                                 "say where with --after and/or --before")
            after = self.topological_order()[-1:]
        edges = [edge for edge in self.edges if not (edge.source in after and edge.target in before)]
        edges += [Edge(source, node) for source in after] + [Edge(node, target) for target in before]
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
        kept = [edge for edge in self.edges if node not in (edge.source, edge.target)]
        for before in incoming:
            for after in outgoing:
                if not any(e.source == before.source and e.target == after.target for e in kept):
                    kept.append(Edge(before.source, after.target))
        nodes = tuple(name for name in self.nodes if name != node)
        if nodes and not Graph(nodes, tuple(kept)).entry_nodes:
            raise GraphError(f"removing {node!r} would leave the flow without an entry node")
        return Graph(nodes, tuple(kept))
