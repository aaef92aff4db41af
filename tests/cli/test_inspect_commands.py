"""`validate`, `graph`, `schema`, `--help`, `--version`, and bad specs through the CLI."""

from __future__ import annotations

import json

import pytest

from opea_new import __version__
from tests.conftest import SHARED_SPECS
from tests.unit.test_invalid_specs import CASES, expected_message


def test_help_lists_every_command(cli):
    result = cli("--help")
    assert result.returncode == 0
    for command in ("megaservice", "add-service", "remove-service", "update", "validate", "graph", "schema"):
        assert command in result.stdout


def test_version(cli):
    result = cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"opea-new {__version__}"


def test_unknown_flag_is_a_usage_error(cli):
    result = cli("megaservice", "--nope")
    assert result.returncode == 2
    assert "No such option" in result.stderr


@pytest.mark.parametrize("spec", sorted(SHARED_SPECS.glob("*.yaml")), ids=lambda p: p.name)
def test_shared_specs_validate(cli, spec):
    result = cli("validate", "--spec", spec)
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout


@pytest.mark.parametrize("path", CASES, ids=[path.name for path in CASES])
def test_invalid_specs_exit_2_with_the_problem_and_write_nothing(cli, path, tmp_path):
    result = cli("megaservice", "--spec", path, "--output", tmp_path / "out")
    assert result.returncode == 2
    assert expected_message(path) in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert list(tmp_path.iterdir()) == []


def test_every_problem_is_reported_at_once_with_file_and_line(cli, tmp_path):
    spec = tmp_path / "many.yaml"
    spec.write_text("name: Many\nservices:\n  - {name: a, type: nope, port: 0}\n  - {name: a, type: llm}\n"
                    "flow:\n  - {service: a, next: [zz]}\n")
    result = cli("validate", "--spec", spec)
    assert result.returncode == 2
    lines = [line.strip() for line in result.stderr.splitlines()]
    assert "error: " + str(spec) + ": 5 problems" in lines
    assert f"{spec}:3: services[0].type: unknown service type 'nope'; known types:" in "\n".join(lines)
    for expected in ("name: 'Many' is not a valid name", "services[0].port: port 0 is out of range",
                     "services[1].name: 'a' is already the name of services[0]",
                     "flow[0].next[0]: unknown service 'zz'"):
        assert any(expected in line for line in lines), expected


def test_missing_spec_file(cli, tmp_path):
    result = cli("validate", "--spec", tmp_path / "nope.yaml")
    assert result.returncode == 2
    assert "nope.yaml" in result.stderr


def test_graph_of_a_spec_is_mermaid(cli):
    result = cli("graph", "--spec", SHARED_SPECS / "fan-in.yaml")
    assert result.returncode == 0
    assert result.stdout.startswith("flowchart LR")
    assert "svc_data_processor --> svc_data_analyzer" in result.stdout


def test_graph_of_a_directory_that_is_not_a_project(cli, tmp_path):
    result = cli("graph", "--project", tmp_path)
    assert result.returncode == 2
    assert "not an opea-new project" in result.stderr


def test_schema_is_json_schema_that_accepts_the_shared_specs_and_refuses_typos(cli):
    jsonschema = pytest.importorskip("jsonschema")
    import yaml

    result = cli("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    validator = jsonschema.Draft202012Validator(schema)
    for spec in sorted(SHARED_SPECS.glob("*.yaml")):
        assert not list(validator.iter_errors(yaml.safe_load(spec.read_text()))), spec.name
    assert list(validator.iter_errors({"name": "x", "sevices": []}))


def test_graph_reads_a_generated_project(cli, tmp_path):
    rendered = cli("megaservice", "--spec", SHARED_SPECS / "conditional.yaml", "--output", tmp_path / "p")
    assert rendered.returncode == 0, rendered.stderr
    result = cli("graph", "--project", tmp_path / "p")
    assert result.returncode == 0
    assert 'svc_guard -->|"blocked == true"| svc_refusal' in result.stdout
    readme = (tmp_path / "p" / "README.md").read_text()
    assert result.stdout.strip() in readme


    inside = cli("graph", cwd=tmp_path / "p" / "services" / "data-processor")  # found from a subfolder, like git
    assert inside.returncode == 0, inside.stderr
    assert inside.stdout == result.stdout
