"""The graph edits behind add-service and remove-service, on random DAGs."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from opea_new.spec import Edge, Graph, GraphError


@st.composite
def dags(draw, min_nodes: int = 2) -> Graph:
    count = draw(st.integers(min_nodes, 7))
    nodes = tuple(f"n{i}" for i in range(count))
    pairs = [(a, b) for i, a in enumerate(nodes) for b in nodes[i + 1:]]
    chosen = draw(st.lists(st.sampled_from(pairs), unique=True, max_size=12)) if pairs else []
    order = draw(st.permutations(nodes))  # spec order need not be topological
    return Graph(tuple(order), tuple(Edge(a, b) for a, b in chosen))


@given(dags(), st.data())
def test_insert_puts_the_node_exactly_between_after_and_before(graph, data):
    after = data.draw(st.lists(st.sampled_from(graph.nodes), unique=True, max_size=2))
    before = data.draw(st.lists(st.sampled_from(graph.nodes), unique=True, max_size=2))
    assume(after or before)
    try:
        grown = graph.insert("new", after, before)
    except GraphError as error:
        assert "cycle" in str(error)
        return
    assert grown.find_cycle() is None
    assert grown.nodes == (*graph.nodes, "new")
    replaced = {(a, b) for a in after for b in before}
    # an edge into the new node takes the place of the first edge it replaces (so a round trip keeps the
    # flow's order, which is fan-in's merge order); the others follow in the order --after gave them
    taking_a_place = list(dict.fromkeys(e.source for e in graph.edges if (e.source, e.target) in replaced))
    assert grown.predecessors("new") == taking_a_place + [a for a in after if a not in taking_a_place]
    assert grown.successors("new") == before
    assert {(e.source, e.target) for e in grown.edges if "new" not in (e.source, e.target)} == \
        {(e.source, e.target) for e in graph.edges} - replaced


@given(dags(), st.data())
def test_inserting_into_an_edge_then_removing_is_the_identity(graph, data):
    assume(graph.edges)
    edge = data.draw(st.sampled_from(graph.edges))
    grown = graph.insert("new", [edge.source], [edge.target])
    assert (edge.source, edge.target) not in {(e.source, e.target) for e in grown.edges}
    assert grown.remove("new") == graph


@given(dags(min_nodes=3), st.data())
def test_remove_connects_every_predecessor_to_every_successor(graph, data):
    node = data.draw(st.sampled_from(graph.nodes))
    shrunk = graph.remove(node)
    assert node not in shrunk.nodes and shrunk.find_cycle() is None
    edges = {(e.source, e.target) for e in shrunk.edges}
    for p in graph.predecessors(node):
        for s in graph.successors(node):
            assert (p, s) in edges
    assert {(e.source, e.target) for e in graph.edges if node not in (e.source, e.target)} <= edges


def test_a_replaced_edge_gives_its_condition_to_the_new_node():
    graph = Graph(("guard", "refusal", "answer"),
                  (Edge("guard", "refusal", "blocked == true"), Edge("guard", "answer", "!blocked")))
    grown = graph.insert("audit", ["guard"], ["refusal"])
    assert Edge("guard", "audit", "blocked == true") in grown.edges
    assert Edge("audit", "refusal", "success") in grown.edges
    assert grown.edges[0] == Edge("guard", "audit", "blocked == true")  # in the replaced edge's place


def test_replacing_edges_with_different_conditions_is_refused():
    graph = Graph(("g", "a", "b"), (Edge("g", "a", "error"), Edge("g", "b", "success")))
    with pytest.raises(GraphError, match="different conditions"):
        graph.insert("x", ["g"], ["a", "b"])


def test_a_node_both_after_and_before_is_a_cycle():
    with pytest.raises(GraphError, match="both before and after"):
        Graph.chain(["a", "b"]).insert("x", ["a"], ["a"])
