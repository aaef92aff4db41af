"""`opea-new megaservice --from-studio workflow-info.json`: a GenAIStudio export becomes a spec, then a project.

The fixtures under tests/specs/studio/ have the shape GenAIStudio's studio-backend writes
(workflow_info_service.py; app-backend/config/workflow-info.json is its own example).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from opea_new.spec import SpecError
from opea_new.studio import load_studio_pipeline, studio_spec

STUDIO = Path(__file__).parents[1] / "specs" / "studio"


def workflow(name: str) -> dict:
    return json.loads((STUDIO / f"{name}-workflow-info.json").read_text())


def problems_of(data) -> list[str]:
    with pytest.raises(SpecError) as raised:
        studio_spec(data)
    return [str(problem) for problem in raised.value.problems]


# ---------------------------------------------------------------- the mapping


def test_chatqna_maps_to_model_servers_with_the_studio_models_and_skips_the_ui_and_ingestion_nodes():
    spec = studio_spec(workflow("chatqna"))

    assert spec["name"] == "chatqna"
    assert spec["megaservice"] == {"port": 8888, "protocol": "chat"}
    assert spec["services"] == [
        {"name": "embedding", "type": "embedding", "server": "tei", "model": "BAAI/bge-large-en-v1.5", "port": 6000},
        {"name": "retriever", "type": "retriever", "port": 7000},
        {"name": "rerank", "type": "rerank", "server": "tei", "model": "BAAI/bge-reranker-base", "port": 8000},
        {"name": "llm", "type": "llm", "server": "tgi", "model": "Intel/neural-chat-7b-v3-3", "port": 9000},
    ]
    assert spec["flow"] == [{"service": "embedding", "next": ["retriever"]},
                            {"service": "retriever", "next": ["rerank"]},
                            {"service": "rerank", "next": ["llm"]}]


def test_several_nodes_of_one_type_get_numbered_names_and_the_next_free_ports():
    spec = studio_spec(workflow("multi-retriever"))

    assert [(s["name"], s["port"]) for s in spec["services"]] == [
        ("retriever", 7000), ("retriever-2", 7001), ("retriever-3", 7002)]
    assert spec["flow"] == [{"service": "retriever", "next": ["retriever-3"]},
                            {"service": "retriever-2", "next": ["retriever-3"]}]


def test_an_llm_node_on_vllm_becomes_a_vllm_server_and_an_empty_model_takes_the_default():
    data = workflow("chatqna")
    llm = data["nodes"]["opea_service@llm_tgi_0"]
    llm["params"]["llmEngine"] = "vllm"
    llm["dependent_services"] = {"vllm": {"modelName": ""}}

    services = {s["name"]: s for s in studio_spec(data)["services"]}

    assert services["llm"] == {"name": "llm", "type": "llm", "server": "vllm", "port": 9000}
    pipeline_llm = next(s for s in load_pipeline_of(data).services if s.name == "llm")
    assert pipeline_llm.model == "meta-llama/Meta-Llama-3-8B-Instruct"


def load_pipeline_of(data: dict):
    from opea_new.spec import pipeline_from_data

    return pipeline_from_data(studio_spec(data))


def test_the_spec_goes_through_the_same_validation_as_a_spec_file(tmp_path):
    data = workflow("chatqna")
    data["nodes"]["opea_service@llm_tgi_0"]["dependent_services"]["tgi"]["modelName"] = "not a model id"
    path = tmp_path / "workflow-info.json"
    path.write_text(json.dumps(data))

    with pytest.raises(SpecError) as raised:
        load_studio_pipeline(path)

    assert any("services[3].model" in str(p) and "not a model id" in str(p) for p in raised.value.problems)


@pytest.mark.parametrize("data, expected", [
    ([], "needs `nodes`"),
    ({"nodes": []}, "needs `nodes`"),
    ({"nodes": {}}, "needs `nodes`"),
    ({"nodes": {"a": "text"}}, "nodes.a: a node needs `name`"),
    ({"nodes": {"a": {"name": 7}}}, "nodes.a: a node needs `name`"),
    ({"nodes": {"a": {"name": "chat_input", "connected_to": ["nowhere"]}}}, "nodes.a.connected_to: must be a list"),
    ({"nodes": {"a": {"name": "chat_input", "connected_to": "b"}}}, "nodes.a.connected_to: must be a list"),
    ({"nodes": {"a": {"name": "opea_service@llm_tgi"}}}, "no chat_input or file_input node"),
])
def test_wrong_shapes_are_located_problems(data, expected):
    assert any(expected in problem for problem in problems_of(data))


def test_unknown_and_agent_kinds_are_refused_by_node_with_the_reason():
    unknown = problems_of(workflow("unknown-kind"))
    assert unknown == [problem for problem in unknown if "nodes['opea_service@retriever_redis_1'].name" in problem]
    assert "unknown GenAIStudio node kind 'opea_service@web_search_duckduckgo'" in unknown[0]
    assert "opea_service@llm_tgi" in unknown[0]  # says what it does map

    data = workflow("multi-retriever")
    data["nodes"]["opea_service@retriever_redis_0"]["name"] = "opea_service@supervisor_agent"
    (agent,) = problems_of(data)
    assert "nodes['opea_service@retriever_redis_0'].name" in agent and "no agent type" in agent


def test_a_cycle_ends_the_walk_and_is_refused_by_validation():
    data = workflow("cycle")
    spec = studio_spec(data)  # the walk terminates: each node once
    assert len(spec["services"]) == 3
    with pytest.raises(SpecError) as raised:
        load_pipeline_of(data)
    assert "cycle" in str(raised.value)


# ---------------------------------------------------------------- the command


def test_print_spec_prints_the_converted_spec_and_writes_nothing(cli, tmp_path):
    result = cli("megaservice", "--from-studio", STUDIO / "chatqna-workflow-info.json", "--print-spec",
                 "--output", tmp_path / "p")

    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout) == studio_spec(workflow("chatqna"))
    assert not (tmp_path / "p").exists()


def test_a_workflow_renders_a_project_with_its_nodes_and_edges(cli, tmp_path):
    result = cli("megaservice", "--from-studio", STUDIO / "multi-retriever-workflow-info.json",
                 "--runtime", "lite", "--output", tmp_path / "p")

    assert result.returncode == 0, result.stderr
    pipeline = (tmp_path / "p" / "megaservice" / "pipeline.py").read_text()
    for name, variable, port in (("retriever", "retriever", 7000), ("retriever-2", "retriever_2", 7001),
                                 ("retriever-3", "retriever_3", 7002)):
        assert f'{variable} = remote_service("{name}", ServiceType.RETRIEVER, port={port}' in pipeline
        assert (tmp_path / "p" / "services" / name).is_dir()
    assert "orchestrator.flow_to(retriever, retriever_3)" in pipeline
    assert "orchestrator.flow_to(retriever_2, retriever_3)" in pipeline
    assert pipeline.count("flow_to(") == 2


def test_server_nodes_render_as_servers_without_generated_folders(cli, tmp_path):
    result = cli("megaservice", "--from-studio", STUDIO / "chatqna-workflow-info.json", "--output", tmp_path / "p")

    assert result.returncode == 0, result.stderr
    project = tmp_path / "p"
    pipeline = (project / "megaservice" / "pipeline.py").read_text()
    for edge in ("flow_to(embedding, retriever)", "flow_to(retriever, rerank)", "flow_to(rerank, llm)"):
        assert edge in pipeline
    assert sorted(p.name for p in (project / "services").iterdir()) == ["retriever"]
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    servers = {s["name"]: (s.get("server"), s.get("model")) for s in answers["services"]}
    assert servers == {"embedding": ("tei", "BAAI/bge-large-en-v1.5"), "retriever": (None, None),
                       "rerank": ("tei", "BAAI/bge-reranker-base"), "llm": ("tgi", "Intel/neural-chat-7b-v3-3")}


@pytest.mark.parametrize("fixture, expected", [
    ("unknown-kind", "nodes['opea_service@retriever_redis_1'].name: unknown GenAIStudio node kind"),
    ("cycle", "the flow has a cycle"),
    ("not-json", "invalid JSON"),
])
def test_broken_workflows_exit_2_naming_the_file_and_write_nothing(cli, tmp_path, fixture, expected):
    path = STUDIO / f"{fixture}-workflow-info.json"
    result = cli("megaservice", "--from-studio", path, "--output", tmp_path / "p")

    assert result.returncode == 2
    assert str(path) in result.stderr and expected in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "p").exists()


def test_a_huge_file_is_refused_by_the_spec_bound(cli, tmp_path):
    data = workflow("multi-retriever")
    data["padding"] = "x" * (1024 * 1024)
    path = tmp_path / "workflow-info.json"
    path.write_text(json.dumps(data))

    result = cli("megaservice", "--from-studio", path, "--output", tmp_path / "p")

    assert result.returncode == 2
    assert "larger than the limit of 1 MiB" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("other", [["--spec", "x.yaml"], ["--defaults"]])
def test_from_studio_excludes_spec_and_defaults(cli, tmp_path, other):
    result = cli("megaservice", "--from-studio", STUDIO / "chatqna-workflow-info.json", *other,
                 "--output", tmp_path / "p")

    assert result.returncode == 2 and "alternatives" in result.stderr
    assert not (tmp_path / "p").exists()


def test_print_spec_needs_from_studio(cli, tmp_path):
    result = cli("megaservice", "--print-spec", "--defaults", "--output", tmp_path / "p")

    assert result.returncode == 2 and "--from-studio" in result.stderr


def test_a_missing_file_is_a_usage_error(cli, tmp_path):
    result = cli("megaservice", "--from-studio", tmp_path / "absent.json", "--output", tmp_path / "p")

    assert result.returncode == 2 and "no such GenAIStudio workflow file" in result.stderr

