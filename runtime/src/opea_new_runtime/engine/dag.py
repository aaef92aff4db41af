"""A directed acyclic graph of node names, with the methods of comps' `DAG`.

`graph` maps every node to the set of its downstream nodes, in insertion order.
"""

from __future__ import annotations

from collections import OrderedDict


class DAG:
    def __init__(self) -> None:
        self.reset_graph()

    def reset_graph(self) -> None:
        self.graph: OrderedDict[str, set[str]] = OrderedDict()

    def size(self) -> int:
        return len(self.graph)

    # ------------------------------------------------------------ nodes

    def add_node(self, node_name: str) -> None:
        if node_name in self.graph:
            raise KeyError(f"node {node_name} already exists")
        self.graph[node_name] = set()

    def add_node_if_not_exists(self, node_name: str) -> None:
        if node_name not in self.graph:
            self.graph[node_name] = set()

    def delete_node(self, node_name: str) -> None:
        if node_name not in self.graph:
            raise KeyError(f"node {node_name} does not exist")
        self.graph.pop(node_name)
        for edges in self.graph.values():
            edges.discard(node_name)

    def delete_node_if_exists(self, node_name: str) -> None:
        if node_name in self.graph:
            self.delete_node(node_name)

    # ------------------------------------------------------------ edges

    def add_edge(self, ind_node: str, dep_node: str) -> None:
        """Add ind_node → dep_node; KeyError for an unknown node, ValueError if it would close a cycle."""
        if ind_node not in self.graph or dep_node not in self.graph:
            raise KeyError(f"one or more nodes do not exist in graph: {ind_node}, {dep_node}")
        if ind_node == dep_node or ind_node in self._reachable_from(dep_node):
            raise ValueError(f"the edge {ind_node} -> {dep_node} would close a cycle")
        self.graph[ind_node].add(dep_node)

    def delete_edge(self, ind_node: str, dep_node: str) -> None:
        if dep_node not in self.graph.get(ind_node, ()):
            raise KeyError(f"the edge {ind_node} -> {dep_node} does not exist in graph")
        self.graph[ind_node].remove(dep_node)

    # ------------------------------------------------------------ questions

    def predecessors(self, node: str) -> list[str]:
        return [key for key, edges in self.graph.items() if node in edges]

    def downstream(self, node: str) -> list[str]:
        if node not in self.graph:
            raise KeyError(f"node {node} is not in graph")
        return list(self.graph[node])

    def all_downstreams(self, node: str) -> list[str]:
        """Every node reachable from `node`, in topological order."""
        seen = self._reachable_from(node)
        return [candidate for candidate in self.topological_sort() if candidate in seen]

    def all_leaves(self) -> list[str]:
        return [key for key, edges in self.graph.items() if not edges]

    def ind_nodes(self, graph: dict[str, set[str]] | None = None) -> list[str]:
        """Nodes without predecessors: where a request enters."""
        graph = self.graph if graph is None else graph
        dependent = {node for edges in graph.values() for node in edges}
        return [node for node in graph if node not in dependent]

    def validate(self, graph: dict[str, set[str]] | None = None) -> bool:
        graph = self.graph if graph is None else graph
        if not self.ind_nodes(graph):
            return False
        try:
            self.topological_sort(graph)
        except ValueError:
            return False
        return True

    def topological_sort(self, graph: dict[str, set[str]] | None = None) -> list[str]:
        graph = self.graph if graph is None else graph
        in_degree = dict.fromkeys(graph, 0)
        for edges in graph.values():
            for node in edges:
                in_degree[node] += 1
        ready = [node for node, degree in in_degree.items() if degree == 0]
        result = []
        while ready:
            node = ready.pop()
            result.append(node)
            for downstream in graph[node]:
                in_degree[downstream] -= 1
                if in_degree[downstream] == 0:
                    ready.append(downstream)
        if len(result) != len(graph):
            raise ValueError("graph is not acyclic")
        return result

    def from_dict(self, graph_dict: dict[str, list[str]]) -> None:
        self.reset_graph()
        for node in graph_dict:
            self.add_node(node)
        for ind_node, dep_nodes in graph_dict.items():
            if not isinstance(dep_nodes, list):
                raise TypeError("dict values must be lists")
            for dep_node in dep_nodes:
                self.add_edge(ind_node, dep_node)

    def _reachable_from(self, node: str) -> set[str]:
        seen: set[str] = set()
        stack = [node]
        while stack:
            for downstream in self.graph[stack.pop()]:
                if downstream not in seen:
                    seen.add(downstream)
                    stack.append(downstream)
        return seen
