"""Hostile specs: whatever the input, a located refusal (exit 2) — never a traceback, a hang or a memory blow-up.

One class of finding per section (issue 9, "Spec validation"): keys with `[`, `]`, `.`;
integers past Python's int-string limit; deep nesting (YAML, JSON, condition literals);
recursive aliases; alias bombs; long chains; lone surrogates; duplicate JSON keys; the
file size and problem-count bounds. Each class has table cases and a property test
through the functions, and a few cases go through the real CLI as a subprocess.
Wall-clock bounds here are guards against hangs, not benchmarks.
"""

from __future__ import annotations

import itertools
import json
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opea_new import conditions
from opea_new.spec import Graph, SpecError, load_pipeline, pipeline_from_data
from opea_new.spec.load import (
    MAX_ALIASES,
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_INT_DIGITS,
    MAX_NODES,
    MAX_PROBLEMS,
    MAX_SERVICES,
)
from opea_new.spec.problems import format_location

GUARD_SECONDS = 10  # a refusal that takes longer than this is a hang, whatever the machine
FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

BASE = {"name": "p", "services": [{"name": "a", "type": "llm"}, {"name": "b", "type": "rerank"}],
        "flow": [{"service": "a", "next": [{"service": "b", "condition": "success"}]}],
        "megaservice": {"port": 8888}}

# Every mapping of a spec, as (path to it in BASE) — where a hostile key or value can go.
MAPPINGS = [(), ("megaservice",), ("services", 0), ("flow", 0), ("flow", 0, "next", 0)]
# Every string field, as (path to its mapping, key).
STRING_FIELDS = [((), "name"), ((), "description"), ((), "runtime"), (("megaservice",), "endpoint"),
                 (("megaservice",), "protocol"), (("services", 0), "name"), (("services", 0), "type"),
                 (("services", 0), "endpoint"), (("services", 0), "image"), (("flow", 0), "service"),
                 (("flow", 0, "next", 0), "service"), (("flow", 0, "next", 0), "condition")]
# Every integer field (ports), and other places an integer may be written by mistake.
INTEGER_FIELDS = [(("megaservice",), "port"), (("services", 0), "port"), (("services", 1), "port"),
                  ((), "name"), ((), "description"), (("services", 0), "type"), (("flow", 0, "next", 0), "service")]


def spec(**changes) -> dict:
    data = json.loads(json.dumps(BASE))
    data.update(changes)
    return data


def at(data: dict, path: tuple) -> dict:
    for part in path:
        data = data[part]
    return data


def refused(source: str | Path | dict, *, within: float = GUARD_SECONDS) -> SpecError:
    """The SpecError for `source` (YAML text, a file, or data), checked to be printable, located and quick."""
    start = time.monotonic()
    with pytest.raises(SpecError) as caught:
        if isinstance(source, dict):
            pipeline_from_data(source)
        else:
            load_pipeline(source)
    assert time.monotonic() - start < within, "a refusal must not take this long"
    error = caught.value
    assert error.problems and all(problem.message for problem in error.problems)
    str(error).encode("utf-8")  # every message can be printed, whatever the spec held
    return error


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def messages(error: SpecError) -> str:
    return "\n".join(str(problem) for problem in error.problems)


# ---------------------------------------------------------------- keys with [ ] . and the like

ODD_KEYS = ["[", "]", "x[", "[0]", "a.b", ".", "services[0]", "x]y[", "'", '"', "\\", "a b", "", "-", "0", "é",
            "{{ x }}", "\n"]


@pytest.mark.parametrize("path", MAPPINGS, ids=format_location)
@pytest.mark.parametrize("key", ODD_KEYS)
def test_an_odd_key_is_an_unknown_key_located_where_it_is(tmp_path, path, key):
    data = spec()
    at(data, path)[key] = 1
    for source in (write(tmp_path, "s.json", json.dumps(data, indent=1)), data):
        error = refused(source)
        expected = format_location((*path, key))
        assert any(problem.location == expected and "unknown key" in problem.message for problem in error.problems), \
            messages(error)
    error = refused(write(tmp_path, "s.json", json.dumps(data, indent=1)))
    assert all(problem.line for problem in error.problems)


@FAST
@given(st.sampled_from(MAPPINGS), st.text(st.sampled_from("[].'\"\\ x0_-é\t"), min_size=1, max_size=8))
def test_any_key_is_refused_with_its_location(path, key):
    data = spec()
    target = at(data, path)
    if key in target:
        return
    target[key] = [1]
    error = refused(data)
    assert format_location((*path, key)) in [problem.location for problem in error.problems]


@pytest.mark.parametrize(("location", "text"), [
    (("services", 0, "port"), "services[0].port"), (("x[",), "['x[']"), (("a.b", 1), "['a.b'][1]"),
    (("services", 0, "]"), "services[0][']']"), ((None,), "[None]"), (("\ud800",), "['\\ud800']"),
])
def test_locations_quote_keys_that_are_not_plain_words(location, text):
    assert format_location(location) == text


# ---------------------------------------------------------------- huge integers

DIGITS = [MAX_INT_DIGITS + 1, 4300, 4301, 5000, 50_000]


@pytest.mark.parametrize("path,key", INTEGER_FIELDS, ids=lambda x: str(x))
@pytest.mark.parametrize("digits", DIGITS)
def test_a_huge_integer_is_refused_where_it_is(tmp_path, path, key, digits):
    data = spec()
    data["services"][1]["port"] = 7000
    at(data, path)[key] = 123  # a placeholder, replaced by the digits in the text
    text = json.dumps(data).replace("123", "9" * digits)
    error = refused(write(tmp_path, "s.json", text))
    assert f"the limit for a spec is {MAX_INT_DIGITS}" in messages(error) and "s.json:1:" in messages(error)
    error = refused(write(tmp_path, "s.yaml", text))  # JSON is YAML
    assert any(problem.location == format_location((*path, key)) and problem.line for problem in error.problems)
    at(data, path)[key] = 10 ** digits  # and from code (prompts), where no text limits it
    assert any(problem.location == format_location((*path, key)) for problem in refused(data).problems)


@pytest.mark.parametrize("text", ["0x" + "f" * 5000, "0o" + "7" * 5000, "1_" * 3000 + "1", "-" + "9" * 5000,
                                  "!!int '" + "9" * 5000 + "'", "1:" * 3000 + "1"])
def test_a_huge_yaml_integer_in_any_notation_is_refused(text):
    error = refused(f"name: p\nservices:\n  - {{name: a, type: llm, port: {text}}}\n")
    assert error.problems[0].location == "services[0].port" and error.problems[0].line == 3


@pytest.mark.parametrize("literal", ["9" * 5000, "-" + "9" * 101, "[" + "9" * 200 + "]", '{"a": 1' + "0" * 200 + "}"])
def test_a_huge_integer_in_a_condition_literal_is_refused(literal):
    data = spec()
    data["flow"][0]["next"][0]["condition"] = f"x == {literal}"
    error = refused(data)
    assert error.problems[0].location == "flow[0].next[0].condition"
    assert "cannot parse the condition" in error.problems[0].message


@FAST
@given(st.sampled_from(INTEGER_FIELDS), st.integers(MAX_INT_DIGITS + 1, 20_000), st.booleans())
def test_any_huge_integer_anywhere_is_refused(field, digits, as_yaml):
    (path, key) = field
    data = spec()
    at(data, path)[key] = 123
    text = json.dumps(data).replace("123", "7" * digits)
    if as_yaml:
        error = refused(text)
        assert error.problems[0].location == format_location((*path, key))
    else:
        error = refused(write_tmp(text, ".json"))
    assert f"{MAX_INT_DIGITS}" in messages(error)


_SCRATCH = Path(tempfile.mkdtemp(prefix="opea-new-hostile-"))  # property tests cannot take tmp_path
_written = itertools.count()


def write_tmp(text: str, suffix: str) -> Path:
    path = _SCRATCH / f"{next(_written)}{suffix}"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(autouse=True, scope="module")
def _clean_scratch():
    yield
    shutil.rmtree(_SCRATCH, ignore_errors=True)


# ---------------------------------------------------------------- deep nesting

def nested_yaml(depth: int, kind: str) -> str:
    inner = {"[": "[" * depth + "]" * depth, "{": "{a: " * depth + "1" + "}" * depth}[kind]
    return f"name: p\nservices: {inner}\n"


def nested_json(depth: int, kind: str) -> str:
    inner = {"[": "[" * depth + "]" * depth, "{": '{"a": ' * depth + "1" + "}" * depth}[kind]
    return '{"name": "p", "services": ' + inner + "}"


def block_yaml(depth: int) -> str:
    return "name: p\nservices:\n" + "".join("  " * level + "- \n" for level in range(1, depth)) + "  " * depth + "- 1\n"


DEPTHS = [MAX_DEPTH, MAX_DEPTH + 1, 500, 1000, 5000, 100_000]


@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("kind", ["[", "{"])
def test_deep_nesting_is_refused_naming_the_bound(tmp_path, depth, kind):
    for path in (write(tmp_path, "s.yaml", nested_yaml(depth, kind)),
                 write(tmp_path, "s.json", nested_json(depth, kind))):
        error = refused(path)
        if depth >= MAX_DEPTH:
            assert f"nested more than {MAX_DEPTH} levels deep" in messages(error), messages(error)
            assert f"{path}:" in messages(error)  # file:line:column


@pytest.mark.parametrize("depth", [MAX_DEPTH - 2, MAX_DEPTH, 300, 700])
def test_deep_block_yaml_is_refused_or_merely_invalid(depth):
    error = refused(block_yaml(depth))
    assert ("nested more than" in messages(error)) == (depth >= MAX_DEPTH)


def test_nesting_just_within_the_bound_is_read_and_then_refused_by_shape():
    error = refused(nested_yaml(MAX_DEPTH - 2, "["))
    assert "nested more than" not in messages(error) and "must be a mapping" in messages(error)


@pytest.mark.parametrize("depth", [conditions.language().MAX_DEPTH + 1, 499, 1000, 100_000])
def test_a_deep_condition_literal_is_refused(depth):
    data = spec()
    data["flow"][0]["next"][0]["condition"] = "x == " + "[" * depth + "]" * depth
    error = refused(data)
    assert error.problems[0].location == "flow[0].next[0].condition"


@FAST
@given(st.integers(MAX_DEPTH, 3000), st.sampled_from(["[", "{"]), st.sampled_from(["yaml", "json", "condition"]))
def test_any_deep_nesting_is_refused(depth, kind, form):
    if form == "yaml":
        assert "nested more than" in messages(refused(nested_yaml(depth, kind)))
    elif form == "json":
        assert "nested more than" in messages(refused(write_tmp(nested_json(depth, kind), ".json")))
    else:
        data = spec()
        literal = "[" * depth + "]" * depth if kind == "[" else '{"a": ' * depth + "1" + "}" * depth
        data["flow"][0]["next"][0]["condition"] = "x == " + literal
        assert "cannot parse the condition" in messages(refused(data))


def test_nested_data_from_code_is_refused_without_recursion():
    data = spec()
    deep: list = []
    data["services"].append(deep)
    for _ in range(10_000):
        deep.append([])
        deep = deep[0]
    assert "nested more than" in messages(refused(data))
    looped = spec()
    looped["services"].append(looped["services"])
    assert "contains itself" in messages(refused(looped))


# ---------------------------------------------------------------- recursive aliases and alias bombs

RECURSIVE = [
    "name: p\nservices: &x [*x]\n",
    "name: p\nservices: &x [[[*x]]]\n",
    "name: p\nservices: &x [{name: a, type: llm, port: *x}]\n",
    "name: p\nmegaservice: &m {port: *m}\nservices: [{name: a, type: llm}]\n",
    "name: p\nservices: [&m {<<: *m, name: a, type: llm}]\n",
    "name: p\nservices: [{name: a, type: llm}]\n? &k [*k]\n: 1\n",
    "&top {name: p, services: [*top]}\n",
]


@pytest.mark.parametrize("text", RECURSIVE)
def test_a_recursive_alias_is_refused_as_such(text):
    error = refused(text)
    assert "recursive alias" in messages(error) and "<spec>:" in messages(error)


def bomb(levels: int, width: int = 9, *, flow: bool = True) -> str:
    lines = ['a0: &a0 ["lol"' + ', "lol"' * (width - 1) + "]"]
    for level in range(1, levels + 1):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * width) + "]")
    return "name: p\nservices: [{name: a, type: llm}]\n" + "\n".join(lines) + f"\nflow: *a{levels}\n"


@pytest.mark.parametrize(("levels", "width"), [(6, 9), (7, 9), (8, 9), (9, 9), (20, 2), (40, 2), (3, 60)])
def test_an_alias_bomb_is_refused_quickly_naming_the_bound(levels, width):
    text = bomb(levels, width)
    assert len(text) < 3000
    error = refused(text)
    assert f"more than {MAX_NODES:,} values once aliases are expanded" in messages(error) or \
        f"more than {MAX_ALIASES:,} aliases" in messages(error), messages(error)


def test_the_412_byte_bomb_of_the_report_is_refused_quickly():
    text = "\n".join(["name: p", "services: [{name: a, type: llm}]",
                      'x: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
                      *(f"x{n}: &{b} [{','.join([f'*{a}'] * 9)}]"
                        for n, (a, b) in enumerate(zip("abcdefgh", "bcdefghi", strict=True)))])
    assert len(text.encode()) < 500
    assert "once aliases are expanded" in messages(refused(text))


def test_too_many_aliases_are_refused():
    text = "name: p\nx: &s {name: a, type: llm}\nservices: [" + ", ".join(["*s"] * (MAX_ALIASES + 1)) + "]\n"
    assert f"more than {MAX_ALIASES:,} aliases" in messages(refused(text))


@FAST
@given(st.integers(2, 12), st.integers(2, 12))
def test_any_bomb_is_answered_within_the_bound(levels, width):
    try:
        load_pipeline(bomb(levels, width))
    except SpecError as error:
        assert error.problems
    else:  # pragma: no cover - a flow made of strings is never valid
        raise AssertionError("a bomb validated")


def test_aliases_within_the_bounds_still_work():
    text = ("name: p\nservices:\n  - &llm {name: a, type: llm, endpoint: /v1/x}\n  - {<<: *llm, name: b}\n"
            "  - {name: c, type: llm}\nflow:\n  - {service: a, next: &next [c]}\n  - {service: b, next: *next}\n")
    pipeline = load_pipeline(text)
    assert [service.endpoint for service in pipeline.services[:2]] == ["/v1/x", "/v1/x"]
    assert len(pipeline.graph.edges) == 2


# ---------------------------------------------------------------- long chains, many services, many problems

def chain(count: int, *, explicit_flow: bool = True, cycle: bool = False) -> dict:
    names = [f"s{index}" for index in range(count)]
    data = {"name": "p", "services": [{"name": name, "type": "undefined"} for name in names]}
    if explicit_flow:
        data["flow"] = [{"service": a, "next": [b]} for a, b in zip(names, names[1:], strict=False)]
        if cycle:
            data["flow"].append({"service": names[-1], "next": [names[1]]})
    return data


@pytest.mark.parametrize("explicit_flow", [True, False])
def test_a_chain_of_the_most_services_validates(tmp_path, explicit_flow):
    data = chain(MAX_SERVICES, explicit_flow=explicit_flow)
    start = time.monotonic()
    pipeline = load_pipeline(write(tmp_path, "s.json", json.dumps(data)))
    assert time.monotonic() - start < GUARD_SECONDS
    assert len(pipeline.services) == MAX_SERVICES and len(pipeline.graph.edges) == MAX_SERVICES - 1
    assert pipeline.graph.is_chain() and pipeline.graph.topological_order()[-1] == f"s{MAX_SERVICES - 1}"
    assert len({service.port for service in pipeline.services}) == MAX_SERVICES


def test_one_service_more_is_refused_naming_the_bound():
    error = refused(chain(MAX_SERVICES + 1))
    assert [str(problem) for problem in error.problems] == [
        f"services: {MAX_SERVICES + 1:,} services; the limit for a pipeline is {MAX_SERVICES:,}"]


def test_a_long_cycle_is_named_not_a_recursion_error():
    error = refused(chain(MAX_SERVICES, cycle=True))
    assert "the flow has a cycle: s1 → s2 → s3" in messages(error)


@pytest.mark.parametrize("count", [1000, 100_000])
def test_the_graph_questions_do_not_recurse(count):
    names = [f"n{index}" for index in range(count)]
    graph = Graph.chain(names)
    assert graph.find_cycle() is None and graph.topological_order() == names and graph.is_chain()
    looped = Graph(graph.nodes, (*graph.edges, type(graph.edges[0])(names[-1], names[0])))
    assert looped.find_cycle()[:2] == ["n0", "n1"] and len(looped.find_cycle()) == count + 1


def test_tens_of_thousands_of_problems_are_counted_not_all_listed():
    data = {"name": "p", "services": [{"name": "a", "type": "llm"}], "flow": [1] * 50_000}
    error = refused(data)
    assert len(error.problems) == MAX_PROBLEMS + 1 and error.total == 50_000
    assert f"and {50_000 - MAX_PROBLEMS:,} more problems" in error.problems[-1].message


def test_a_file_past_the_size_bound_is_refused_unread(tmp_path):
    path = write(tmp_path, "big.yaml", "name: p\nservices: [{name: a, type: llm}]\n#" + "x" * MAX_FILE_BYTES)
    assert "larger than the limit of 1 MiB" in messages(refused(path))
    assert "larger than the limit of 1 MiB" in messages(refused(path.read_text()))


# ---------------------------------------------------------------- strings that cannot be written

SURROGATES = ["\ud800", "\udfff", "\udc80", "x\ud83d", "\ude00y"]


@pytest.mark.parametrize("field", STRING_FIELDS, ids=lambda field: format_location((*field[0], field[1])))
@pytest.mark.parametrize("surrogate", SURROGATES, ids=ascii)
def test_a_lone_surrogate_in_any_string_is_refused_where_it_is(tmp_path, field, surrogate):
    path, key = field
    data = spec()
    at(data, path)[key] = surrogate
    location = format_location((*path, key))
    for source in (data, write(tmp_path, "s.json", json.dumps(data, indent=1))):  # json.dumps writes "\ud800"
        error = refused(source)
        assert any(problem.location == location and "lone surrogate" in problem.message
                   for problem in error.problems), messages(error)


@pytest.mark.parametrize("path", MAPPINGS, ids=format_location)
def test_a_lone_surrogate_in_a_key_is_refused(tmp_path, path):
    data = spec()
    at(data, path)["k\ud800"] = 1
    error = refused(write(tmp_path, "s.json", json.dumps(data, indent=1)))
    assert any("lone surrogate" in problem.message and problem.line for problem in error.problems)


def test_a_surrogate_pair_is_one_character_and_fine(tmp_path):
    data = spec(description="smile \ud83d\ude00")
    text = json.dumps(data)  # ensure_ascii: "\ud83d\ude00", which JSON reads as one character
    assert "\\ud83d\\ude00" in text
    assert load_pipeline(write(tmp_path, "s.json", text)).description == "smile \U0001F600"


def test_yaml_surrogate_escapes_are_refused():
    error = refused('name: p\ndescription: "\\ud800"\nservices: [{name: a, type: llm}]\n')
    assert "<spec>:2:" in messages(error)


def test_text_with_a_lone_surrogate_is_refused_with_its_place():
    assert "<spec>:2:14: '\\ud800' is a lone surrogate" in messages(refused("name: p\ndescription: \ud800\n"))


@FAST
@given(st.sampled_from(STRING_FIELDS), st.integers(0xD800, 0xDFFF), st.text(max_size=5), st.text(max_size=5))
def test_any_lone_surrogate_anywhere_is_refused(field, code, before, after):
    path, key = field
    data = spec()
    value = before + chr(code) + after
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        pass
    else:  # pragma: no cover - a lone surrogate never encodes
        raise AssertionError
    at(data, path)[key] = value
    text = json.dumps(data)
    if json.loads(text) != data:  # the surrogate joined a neighbour into a pair: not lone after all
        return
    error = refused(write_tmp(text, ".json"))
    assert format_location((*path, key)) in [problem.location for problem in error.problems]


# ---------------------------------------------------------------- duplicate keys in JSON

@pytest.mark.parametrize("path", MAPPINGS, ids=format_location)
def test_a_duplicate_json_key_is_refused_with_its_line(tmp_path, path):
    data = spec()
    key = sorted(at(data, path))[0]
    at(data, path)["@@dup@@"] = "x"
    text = json.dumps(data, indent=1).replace('"@@dup@@"', json.dumps(key))
    error = refused(write(tmp_path, "s.json", text))
    duplicate_line = next(number for number, line in enumerate(text.splitlines(), 1) if '"x"' in line)
    assert f"s.json:{duplicate_line}:" in messages(error)
    assert f"invalid JSON: duplicate key {key!r}" in messages(error)


@FAST
@given(st.sampled_from(MAPPINGS), st.text(min_size=1, max_size=6), st.integers(0, 3))
def test_any_duplicate_json_key_is_refused(path, key, spaces):
    data = spec()
    target = at(data, path)
    target[key] = 1
    text = json.dumps(data, indent=spaces or None)
    pair = f"{json.dumps(key)}: 1"
    assert pair in text
    text = text.replace(pair, f"{pair}, {pair}", 1)
    error = refused(write_tmp(text, ".json"))
    assert "duplicate key" in messages(error)


# ---------------------------------------------------------------- conditions past their bounds

@pytest.mark.parametrize(("condition", "reason"), [
    ("x" * 1001, "at most 1,000 characters"),
    ("x == NaN", "NaN is not JSON"), ("x == Infinity", "Infinity is not JSON"), ("x != -Infinity", "is not JSON"),
    ("x == 1e999", "too large for a number"), ("x.1" + "0" * 100 + " == 1", "list index has at most"),
    ("x == " + "[" * 33 + "]" * 33, "at most 32 deep"),
])
def test_conditions_past_their_bounds_are_refused(condition, reason):
    with pytest.raises(conditions.condition_error()) as caught:
        conditions.parse(condition)
    assert reason in str(caught.value) and len(str(caught.value)) < 300


@FAST
@given(st.text(st.sampled_from('[]{}"\\:,0123456789.eE-+ntrufalse!= x'), max_size=200))
def test_the_condition_parser_only_ever_raises_condition_error_on_structured_text(text):
    try:
        parsed = conditions.parse("x == " + text)
    except conditions.condition_error():
        return
    assert conditions.parse(str(parsed)) == parsed


# ---------------------------------------------------------------- raw text fuzz

@settings(max_examples=150, deadline=None)
@given(st.text(st.sampled_from('[]{}:,&*!"\'\\ -\n\t#|>?<@%01239abnx\ud800'), max_size=80), st.booleans())
def test_any_text_is_a_pipeline_or_a_spec_error(text, as_json):
    try:
        if as_json:
            load_pipeline(write_tmp(text.encode("utf-8", "replace").decode(), ".json"))
        else:
            load_pipeline(text)
    except SpecError as error:
        assert error.problems
        str(error).encode("utf-8")


# ---------------------------------------------------------------- through the CLI

CLI_CASES = {
    "bracket-key.yaml": ("name: p\nservices:\n  - {name: a, type: llm, '[': 1}\n", ":3: services[0]['[']: unknown key"),
    "huge-port.json": ('{"name": "p", "services": [{"name": "a", "type": "llm", "port": ' + "9" * 5000 + "}]}",
                       "huge-port.json:1:"),
    "deep.json": (nested_json(1000, "["), "nested more than 64 levels deep"),
    "deep.yaml": (nested_yaml(600, "{"), "nested more than 64 levels deep"),
    "recursive.yaml": ("name: p\nservices: &x [*x]\n", "recursive.yaml:2:11: a recursive alias"),
    "bomb.yaml": (bomb(9), "once aliases are expanded, the limit for a spec"),
    "surrogate.json": ('{"name": "p", "description": "\\ud800", "services": [{"name": "a", "type": "llm"}]}',
                       "surrogate.json:1: description: contains '\\ud800'"),
    "duplicate.json": ('{"name": "p",\n "name": "q", "services": []}',
                       "duplicate.json:2:2: invalid JSON: duplicate key"),
    "condition.yaml": ("name: p\nservices: [{name: a, type: llm}, {name: b, type: llm}]\nflow:\n"
                       "  - {service: a, next: [{service: b, condition: 'x == " + "[" * 1000 + "'}]}\n",
                       ":4: flow[0].next[0].condition: cannot parse the condition"),
}


@pytest.mark.parametrize("name", sorted(CLI_CASES))
def test_the_cli_refuses_hostile_specs_with_exit_2_and_the_location(cli, tmp_path, name):
    text, expected = CLI_CASES[name]
    path = write(tmp_path, name, text)
    start = time.monotonic()
    result = cli("validate", "--spec", path, timeout=60)
    assert time.monotonic() - start < GUARD_SECONDS + 5  # the interpreter's start-up included
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize("name", ["surrogate.json", "bomb.yaml", "duplicate.json"])
def test_megaservice_refuses_them_too_and_writes_nothing(cli, tmp_path, name):
    text, expected = CLI_CASES[name]
    path = write(tmp_path, name, text)
    result = cli("megaservice", "--spec", path, "--output", tmp_path / "out", timeout=60)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "out").exists()


def test_the_cli_validates_a_chain_of_the_most_services(cli, tmp_path):
    path = write(tmp_path, "chain.json", json.dumps(chain(MAX_SERVICES)))
    result = cli("validate", "--spec", path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"{MAX_SERVICES} services" in result.stdout


def test_the_cli_counts_every_problem_when_it_lists_only_the_first(cli, tmp_path):
    path = tmp_path / "many.json"
    path.write_text(json.dumps({"name": "p", "services": [{"name": "a", "type": "llm"}], "flow": [1] * 5_000}))
    result = cli("validate", "--spec", path, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "5,000 problems" in result.stderr
    assert f"and {5_000 - MAX_PROBLEMS:,} more problems" in result.stderr
