"""Property-based tests of the spec layer: whatever the input, a clear verdict and never a crash."""

from __future__ import annotations

import string

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opea_new import catalog, conditions
from opea_new.spec import Pipeline, SpecError, load_pipeline, pipeline_from_data
from opea_new.spec.names import NAME_PATTERN, dns_name, python_name

names = st.from_regex(r"[a-z][a-z0-9]{0,6}([_-][a-z0-9]{1,4}){0,2}", fullmatch=True).filter(
    lambda name: name != "megaservice")
types = st.sampled_from(catalog.names()).map(lambda name: st.sampled_from([name, name.upper()])).flatmap(lambda s: s)


@st.composite
def valid_specs(draw):
    chosen = draw(st.lists(names, min_size=1, max_size=8, unique_by=lambda name: dns_name(name)))
    chosen = list(dict.fromkeys(chosen))
    services = []
    for name in chosen:
        service = {"name": name, "type": draw(types)}
        if draw(st.booleans()):
            service["port"] = draw(st.integers(20000, 30000))
        services.append(service)
    if all(service["type"].lower() == "dataprep" for service in services):
        services[0]["type"] = "llm"  # dataprep services only, beside the flow: nothing to call (refused)
    ports = [s["port"] for s in services if "port" in s]
    if len(set(ports)) != len(ports):
        for service in services:
            service.pop("port", None)
    spec = {"name": draw(names), "services": services}
    if draw(st.booleans()) and len(chosen) > 1:
        # a random DAG: edges only go forward in the listed order
        flow = []
        for index, source in enumerate(chosen[:-1]):
            targets = draw(st.lists(st.sampled_from(chosen[index + 1:]), unique=True, max_size=3))
            if targets:
                flow.append({"service": source, "next": targets})
        spec["flow"] = flow
    return spec


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(valid_specs())
def test_valid_specs_resolve_without_port_collisions_and_round_trip(spec):
    pipeline = pipeline_from_data(spec)
    ports = [service.port for service in pipeline.services] + [pipeline.megaservice.port]
    assert len(ports) == len(set(ports))
    assert Pipeline.from_answers(pipeline.answers()) == pipeline
    assert pipeline.graph.entry_nodes
    assert pipeline.graph.find_cycle() is None


@settings(max_examples=300)
@given(st.text(string.printable, min_size=1, max_size=20))
def test_any_name_is_either_valid_or_refused_with_a_problem(name):
    spec = {"name": name, "services": [{"name": "a", "type": "llm"}]}
    try:
        pipeline = pipeline_from_data(spec)
    except SpecError as error:
        assert any(problem.location == "name" for problem in error.problems)
    else:
        assert NAME_PATTERN.fullmatch(pipeline.name)
        assert "/" not in pipeline.name and "{" not in pipeline.name and "." not in pipeline.name
        assert python_name(pipeline.name).isidentifier()


@settings(max_examples=300)
@given(st.text(max_size=40))
def test_the_condition_parser_only_ever_raises_condition_error(text):
    try:
        parsed = conditions.parse(text)
    except conditions.condition_error():
        return
    assert conditions.parse(str(parsed)) == parsed


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda children: st.lists(children, max_size=3)
                    | st.dictionaries(st.sampled_from(["name", "services", "flow", "type", "port", "next",
                                                       "service", "megaservice", "x"]), children, max_size=4),
                    max_leaves=12))
def test_arbitrary_documents_never_crash_the_validator(document):
    try:
        load_pipeline(yaml.safe_dump(document))
    except SpecError as error:
        assert error.problems and all(problem.message for problem in error.problems)
