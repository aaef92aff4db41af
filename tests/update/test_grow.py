"""`add-service` and `remove-service` on real projects: every artifact rewired, the user's files kept."""

from __future__ import annotations

import yaml

from opea_new import __version__
from tests.conftest import read_pipeline
from tests.update.helpers import append, commit_all, files_with_markers, git, head, porcelain, statuses


def edges_in_pipeline(project) -> set[tuple[str, str, str]]:
    """The megaservice's flow: every orchestrator.flow_to() that megaservice/pipeline.py makes."""
    return set(read_pipeline(project).edges)


def flow_in_answers(project) -> set[tuple[str, str, str]]:
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    return {(entry["service"], target["service"], target["condition"])
            for entry in answers["flow"] for target in entry["next"]}


def compose_services(project) -> dict:
    return yaml.safe_load((project / "compose.yaml").read_text())["services"]


def test_add_service_into_the_middle_of_a_dag_rewires_every_artifact(tier, dag):
    before = head(dag)

    result = tier.cli("add-service", "audit", "--type", "undefined", "--port", "18805", "--after", "source",
                      "--before", "left", "--project", dag)

    assert result.returncode == 0, result.stdout + result.stderr
    expected = {("source", "audit", "success"), ("audit", "left", "success"), ("source", "right", "success"),
                ("left", "sink", "success")}
    assert flow_in_answers(dag) == expected
    assert edges_in_pipeline(dag) == expected  # the megaservice's flow
    pipeline = read_pipeline(dag)
    audit = next(node for node in pipeline.nodes if node.name == "audit")
    assert (audit.type, audit.port, audit.image) == ("undefined", 18805, None)
    assert pipeline.added == ["source", "left", "right", "sink", "audit"]
    compose = compose_services(dag)
    assert compose["audit"]["build"] | {"args": None} == {"context": ".", "target": "service", "args": None}
    assert (compose["audit"]["build"]["args"]["SERVICE"], compose["audit"]["build"]["args"]["PORT"]) == ("audit",
                                                                                                       "18805")
    assert not (dag / "services" / "audit" / "Dockerfile").exists()  # the root Dockerfile's `service` stage
    assert "AUDIT_SERVICE_HOST_IP" in str(compose["megaservice"]["environment"])
    assert "AUDIT_SERVICE_HOST_IP" in str(compose["ui"]["environment"])  # the UI shows every node
    assert "audit" in str(compose["megaservice"]["depends_on"])
    readme = (dag / "README.md").read_text()
    assert "svc_source --> svc_audit" in readme and "svc_audit --> svc_left" in readme
    assert "svc_source --> svc_left" not in readme
    assert "| audit | undefined | 18805 |" in readme
    assert "audit" in (dag / "tests" / "test_compose.sh").read_text()
    service = yaml.safe_load((dag / "services" / "audit" / ".copier-answers.yml").read_text())
    assert (service["service_name"], service["port"], service["_commit"]) == ("audit", 18805, f"v{__version__}")
    assert (dag / "services" / "audit" / "app" / "backend.py").is_file()
    # Left for review, with a summary.
    assert head(dag) == before
    assert "?? services/audit/" in git(dag, "status", "--porcelain")
    assert "upstream: source; downstream: left" in result.stdout
    assert "review with `git diff`" in result.stdout


def test_env_example_gets_the_settings_of_an_added_llm(tier, chain):
    result = tier.cli("add-service", "summarizer", "--type", "llm", "--project", chain)

    assert result.returncode == 0, result.stdout + result.stderr
    env = (chain / ".env.example").read_text()
    assert "SUMMARIZER_ENDPOINT=" in env and "SUMMARIZER_MODEL_ID=" in env
    assert flow_in_answers(chain) >= {("llm", "summarizer", "success")}  # appended to the chain


def test_only_after_adds_a_branch_and_only_before_a_new_entry(tier, dag):
    after = tier.cli("add-service", "tap", "--type", "undefined", "--after", "right", "--project", dag)
    assert after.returncode == 0, after.stderr
    assert ("right", "tap", "success") in flow_in_answers(dag)
    assert not any(edge[0] == "tap" for edge in flow_in_answers(dag))
    commit_all(dag, "tap")

    before = tier.cli("add-service", "feed", "--type", "undefined", "--before", "sink", "--project", dag)
    assert before.returncode == 0, before.stderr
    flow = flow_in_answers(dag)
    assert ("feed", "sink", "success") in flow and ("left", "sink", "success") in flow
    assert not any(edge[1] == "feed" for edge in flow)


def test_dry_run_of_add_service_lists_the_plan_and_writes_nothing(tier, dag):
    result = tier.cli("add-service", "audit", "--type", "undefined", "--after", "source", "--before", "left",
                      "--dry-run", "--project", dag)

    assert result.returncode == 0, result.stderr
    plan = statuses(result.stdout)
    assert plan["services/audit/app/main.py"] == "new"
    assert plan["megaservice/pipeline.py"] == "updated"
    assert plan["services/left/app/main.py"] == "unchanged"
    assert porcelain(dag) == "" and not (dag / "services" / "audit").exists()


def test_add_then_remove_is_a_round_trip(tier, dag):
    original = head(dag)
    added = tier.cli("add-service", "audit", "--type", "undefined", "--after", "source", "--before", "left",
                     "--project", dag)
    assert added.returncode == 0, added.stderr
    commit_all(dag, "add audit")

    removed = tier.cli("remove-service", "audit", "--project", dag)

    assert removed.returncode == 0, removed.stdout + removed.stderr
    # Everything is back as generated, except the service's user-owned file.
    assert _changes_since(dag, original) == "A\tservices/audit/app/backend.py"
    assert flow_in_answers(dag) == {("source", "left", "success"), ("source", "right", "success"),
                                    ("left", "sink", "success")}
    assert "audit" not in compose_services(dag)
    assert [p.relative_to(dag).as_posix() for p in (dag / "services" / "audit").rglob("*") if p.is_file()] == \
        ["services/audit/app/backend.py"]
    assert "kept  services/audit/app/backend.py" in removed.stdout



def _changes_since(project, commit) -> str:
    """The working tree (untracked files included) against `commit`, as `git diff --name-status`."""
    git(project, "add", "--all")
    diff = git(project, "diff", "--cached", "--name-status", commit)
    git(project, "reset", "--quiet")
    return diff.strip()


def test_round_trip_with_force_restores_the_project_exactly(tier, dag):
    original = head(dag)
    assert tier.cli("add-service", "audit", "--type", "undefined", "--after", "left", "--before", "sink",
                    "--project", dag).returncode == 0
    commit_all(dag, "add audit")

    removed = tier.cli("remove-service", "audit", "--force", "--project", dag)

    assert removed.returncode == 0, removed.stderr
    assert _changes_since(dag, original) == ""
    assert not (dag / "services" / "audit").exists()


def test_remove_keeps_what_the_user_owns_edited_or_added(tier, dag):
    left = dag / "services" / "left"
    append(left / "app" / "backend.py", "\n# mine\n")
    append(left / "app" / "main.py", "\n# mine too\n")
    (left / "app" / "extra.py").write_text("MINE = 1\n")
    commit_all(dag, "my edits to left")
    untouched = (left / "app" / "routes.py")
    assert untouched.is_file()

    result = tier.cli("remove-service", "left", "--project", dag)

    assert result.returncode == 0, result.stdout + result.stderr
    kept = sorted(p.relative_to(dag).as_posix() for p in left.rglob("*") if p.is_file())
    assert kept == ["services/left/app/backend.py", "services/left/app/extra.py", "services/left/app/main.py"]
    assert not untouched.exists() and not (left / ".copier-answers.yml").exists()
    assert flow_in_answers(dag) == {("source", "right", "success"), ("source", "sink", "success")}
    assert "left" not in compose_services(dag)
    assert files_with_markers(dag) == []
    for path in kept:
        assert f"kept  {path}" in result.stdout


def test_remove_a_service_in_the_middle_reconnects_its_neighbours(tier, chain):
    result = tier.cli("remove-service", "retriever", "--project", chain)

    assert result.returncode == 0, result.stderr
    assert flow_in_answers(chain) == {("embedding", "llm", "success")}
    assert "svc_embedding --> svc_llm" in (chain / "README.md").read_text()
    pipeline = read_pipeline(chain)
    assert [node.name for node in pipeline.nodes] == pipeline.added == ["embedding", "llm"]
    assert pipeline.edges == [("embedding", "llm", "success")]
    assert "retriever" not in (chain / "megaservice" / "pipeline.py").read_text().lower()


def test_dataprep_added_beside_the_flow_gets_the_front_door_and_the_ui_and_loses_them_when_removed(tier, chain):
    front_door = chain / "deploy" / "nginx" / "default.conf"
    assert "/v1/dataprep/" not in front_door.read_text()

    result = tier.cli("add-service", "docs", "--type", "dataprep", "--port", "18806", "--project", chain)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "location /v1/dataprep/ {" in front_door.read_text()
    assert "docs:18806" in front_door.read_text()
    compose = compose_services(chain)
    assert compose["ui"]["environment"]["DOCS_SERVICE_HOST_IP"] == "docs"
    assert "docs" not in compose["megaservice"]["depends_on"]  # beside the flow: the megaservice never calls it
    commit_all(chain, "add docs")  # remove-service, like add-service, starts from a clean work tree

    result = tier.cli("remove-service", "docs", "--project", chain)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "/v1/dataprep/" not in front_door.read_text()
    assert "DOCS_SERVICE_HOST_IP" not in compose_services(chain)["ui"]["environment"]


def test_an_added_image_service_gets_wiring_but_no_code(tier, chain):
    result = tier.cli("add-service", "guard", "--type", "guardrail", "--image", "opea/guardrails:1.5", "--after",
                      "retriever", "--before", "llm", "--project", chain)

    assert result.returncode == 0, result.stderr
    assert not (chain / "services" / "guard").exists()
    assert compose_services(chain)["guard"]["image"] == "opea/guardrails:1.5"
    assert ("retriever", "guard", "success") in flow_in_answers(chain)


def test_an_added_model_server_runs_its_image_and_is_wired_with_its_model(tier, chain):
    result = tier.cli("add-service", "tei-rerank", "--type", "rerank", "--server", "tei", "--after", "retriever",
                      "--before", "llm", "--project", chain)

    assert result.returncode == 0, result.stderr
    assert "tei server (BAAI/bge-reranker-base)" in result.stdout
    assert not (chain / "services" / "tei-rerank").exists()
    node = next(node for node in read_pipeline(chain).nodes if node.name == "tei-rerank")
    assert (node.server, node.model, node.endpoint) == ("tei", "BAAI/bge-reranker-base", "/rerank")
    server = compose_services(chain)["tei-rerank"]
    assert server["image"].startswith("ghcr.io/huggingface/text-embeddings-inference:")
    assert "--model-id" in server["command"]


def test_a_server_that_cannot_serve_the_type_is_refused_and_changes_nothing(tier, chain):
    before = (head(chain), porcelain(chain))
    result = tier.cli("add-service", "guard", "--type", "guardrail", "--server", "tei", "--project", chain)

    assert result.returncode == 2
    assert "tei serves embedding and rerank nodes, not guardrail" in result.stderr and "Traceback" not in result.stderr
    assert (head(chain), porcelain(chain)) == before


def test_a_failure_while_working_exits_1_and_changes_nothing(tier, dag):
    (dag / "services" / "audit").write_text("a file where the new service's folder goes\n")
    commit_all(dag, "in the way")
    before = (head(dag), porcelain(dag))

    result = tier.cli("add-service", "audit", "--type", "undefined", "--after", "source", "--project", dag)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "services/audit" in result.stderr and "nothing was changed" in result.stderr
    assert "Traceback" not in result.stderr
    assert (head(dag), porcelain(dag)) == before


def test_commands_find_the_project_from_inside_it_like_git(tier, dag):
    result = tier.cli("add-service", "audit", "--type", "undefined", "--after", "right", cwd=dag / "services" / "left")

    assert result.returncode == 0, result.stdout + result.stderr
    assert (dag / "services" / "audit" / ".copier-answers.yml").is_file()
    assert not (dag / "services" / "left" / "services").exists()
