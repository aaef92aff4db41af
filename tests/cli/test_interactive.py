"""`opea-new megaservice` at a terminal: questions, defaults, refusals at the prompt, summary, result."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import opea_new_command

pexpect = pytest.importorskip("pexpect")


def spawn(args: list[str], cwd) -> pexpect.spawn:
    command = opea_new_command()
    child = pexpect.spawn(command[0], [*command[1:], *args], cwd=str(cwd), encoding="utf-8", timeout=60,
                          env={**os.environ, "COLUMNS": "120", "TERM": "dumb"}, dimensions=(50, 120))
    child.logfile_read = sys.stdout if os.environ.get("OPEA_NEW_TEST_VERBOSE") else None
    return child


def answer(child: pexpect.spawn, prompt: str, reply: str) -> None:
    child.expect(prompt)
    child.sendline(reply)


def generate_with_the_megaservice_defaults(child: pexpect.spawn, *, ui: bool = True) -> None:
    """The megaservice's questions at their defaults (`ui=False`: no web UI), then yes at the summary, to the end
    of the session."""
    answer(child, "Port", "")
    answer(child, "Endpoint", "")
    answer(child, "Protocol", "")
    answer(child, "Web UI", "" if ui else "n")
    if ui:
        answer(child, "UI port", "")
    child.expect("flowchart LR")
    answer(child, "Generate", "y")
    child.expect("Generated")
    child.expect(pexpect.EOF)
    child.close()


def test_interactive_session_builds_a_fan_out_pipeline(tmp_path):
    child = spawn(["megaservice", "--output", str(tmp_path / "asked")], tmp_path)
    answer(child, "Pipeline name", "asked")
    answer(child, "Description", "Built at the prompt")
    answer(child, "Runtime", "lite")
    answer(child, "Service 1 name", "")  # the default: embedding
    answer(child, "Type of embedding", "")  # the default: its own type
    answer(child, "embedding runs as", "")  # the default: generated
    answer(child, "Port of embedding", "")
    answer(child, "Endpoint of embedding", "")
    answer(child, "Service 2 name", "guard_in")
    answer(child, "Type of guard_in", "8")  # by number: guardrail
    answer(child, "Port of guard_in", "6000")  # taken: refused at the prompt
    child.expect("already used by embedding")
    answer(child, "Port of guard_in", "")
    answer(child, "Endpoint of guard_in", "")
    answer(child, "Service 3 name", "Bad Name")
    child.expect("not a valid name")
    answer(child, "Service 3 name", "llm")
    answer(child, "Type of llm", "")
    answer(child, "llm runs as", "")  # the default: generated
    answer(child, "Port of llm", "")
    answer(child, "Endpoint of llm", "")
    answer(child, r"Service 4 name \(empty finishes\)", "")  # off the suggested chain: Enter finishes
    answer(child, "a chain in the order above", "n")
    answer(child, "after embedding", "guard_in, llm")
    answer(child, "after guard_in", "")
    answer(child, "after llm", "")
    generate_with_the_megaservice_defaults(child)

    assert child.exitstatus == 0
    answers = yaml.safe_load((tmp_path / "asked" / ".copier-answers.yml").read_text())
    assert answers["runtime"] == "lite"
    assert answers["description"] == "Built at the prompt"
    assert [(s["name"], s["type"], s["port"]) for s in answers["services"]] == [
        ("embedding", "embedding", 6000), ("guard_in", "guardrail", 9090), ("llm", "llm", 9000)]
    assert answers["flow"] == [{"service": "embedding", "next": [{"service": "guard_in", "condition": "success"},
                                                                  {"service": "llm", "condition": "success"}]}]
    assert answers["megaservice"]["protocol"] == "chat"
    # the web UI at its default port: the answers keep only what differs from the templates' defaults
    assert not {"ui", "ui_port", "control"} & set(answers["megaservice"])
    assert "ui_port=5173," in (tmp_path / "asked" / "megaservice" / "pipeline.py").read_text()


def test_declining_at_the_summary_writes_nothing(tmp_path):
    child = spawn(["megaservice", "--output", str(tmp_path / "declined")], tmp_path)
    answer(child, "Pipeline name", "declined")
    answer(child, "Description", "")
    answer(child, "Runtime", "")
    answer(child, "Service 1 name", "")
    answer(child, "Type of embedding", "")
    answer(child, "embedding runs as", "")  # the default: generated
    answer(child, "Port of embedding", "")
    answer(child, "Endpoint of embedding", "")
    answer(child, r"Service 2 name \('\.' finishes\)", ".")  # the suggestion (retriever) is declined
    answer(child, "Port", "")
    answer(child, "Endpoint", "")
    answer(child, "Protocol", "")
    answer(child, "Web UI", "")
    answer(child, "UI port", "")
    answer(child, "Generate", "n")
    child.expect(pexpect.EOF)
    child.close()

    assert child.exitstatus == 2
    assert not (tmp_path / "declined").exists()


def test_a_pipeline_without_a_web_ui(tmp_path):
    child = spawn(["megaservice", "--output", str(tmp_path / "asked")], tmp_path)
    _services(child)
    answer(child, r"Service 3 name \(empty finishes\)", "")
    answer(child, "a chain in the order above", "")
    generate_with_the_megaservice_defaults(child, ui=False)

    assert child.exitstatus == 0
    answers = yaml.safe_load((tmp_path / "asked" / ".copier-answers.yml").read_text())
    assert answers["megaservice"]["ui"] is False and "ui_port" not in answers["megaservice"]
    assert "\n  ui:" not in (tmp_path / "asked" / "compose.yaml").read_text()
    assert "ui_port" not in (tmp_path / "asked" / "megaservice" / "pipeline.py").read_text()


def test_ctrl_c_at_a_prompt_writes_nothing(tmp_path):
    child = spawn(["megaservice", "--output", str(tmp_path / "abandoned")], tmp_path)
    child.expect("Pipeline name")
    child.sendintr()
    child.expect("Interrupted; nothing was changed")
    child.expect(pexpect.EOF)
    child.close()

    assert child.exitstatus == 130
    assert not (tmp_path / "abandoned").exists()


def _services(child: pexpect.spawn, endpoint_of_llm: str = "") -> None:
    answer(child, "Pipeline name", "asked")
    answer(child, "Description", "")
    answer(child, "Runtime", "lite")
    answer(child, "Service 1 name", "embedding")
    answer(child, "Type of embedding", "")
    answer(child, "embedding runs as", "")  # the default: generated
    answer(child, "Port of embedding", "")
    answer(child, "Endpoint of embedding", "")
    answer(child, "Service 2 name", "llm")
    answer(child, "Type of llm", "")
    answer(child, "llm runs as", "")  # the default: generated
    answer(child, "Port of llm", "")
    answer(child, "Endpoint of llm", endpoint_of_llm)


def test_each_answer_is_checked_where_it_is_asked(tmp_path):
    """An endpoint without its '/' and a flow target that does not exist are re-asked at their own prompt,
    with the spec layer's message and its "did you mean"."""
    child = spawn(["megaservice", "--output", str(tmp_path / "asked")], tmp_path)
    _services(child, endpoint_of_llm="v1/chat")
    child.expect("is not an endpoint path: start with '/'")
    answer(child, "Endpoint of llm", "/v1/chat/completions")
    answer(child, r"Service 3 name \(empty finishes\)", "")
    answer(child, "a chain in the order above", "n")
    answer(child, "after embedding", "lm")
    child.expect(r"did you mean 'llm'\?")
    answer(child, "after embedding", "embedding")
    child.expect("flows to itself")
    answer(child, "after embedding", "llm")
    answer(child, "after llm", "")
    answer(child, "Port", "")
    answer(child, "Endpoint", "no-slash")
    child.expect("is not an endpoint path")
    answer(child, "Endpoint", "")
    answer(child, "Protocol", "")
    answer(child, "Web UI", "")
    answer(child, "UI port", "8888")
    child.expect("already used by the megaservice")
    answer(child, "UI port", "6000")
    child.expect("already used by embedding")
    answer(child, "UI port", "")
    answer(child, "Generate", "y")
    child.expect("Generated")
    child.expect(pexpect.EOF)
    child.close()

    assert child.exitstatus == 0
    answers = yaml.safe_load((tmp_path / "asked" / ".copier-answers.yml").read_text())
    assert answers["services"][1]["endpoint"] == "/v1/chat/completions"
    assert answers["flow"] == [{"service": "embedding", "next": [{"service": "llm", "condition": "success"}]}]


def test_embedding_rerank_and_llm_may_be_model_servers_with_their_models(tmp_path):
    """ChatQnA's Xeon topology at the prompt: TEI embedding and rerank, vLLM; the endpoints default to the
    servers' routes, the models to ChatQnA's; a type no server serves is not asked."""
    child = spawn(["megaservice", "--output", str(tmp_path / "served")], tmp_path)
    answer(child, "Pipeline name", "served")
    answer(child, "Description", "")
    answer(child, "Runtime", "lite")
    answer(child, "Service 1 name", "")
    answer(child, "Type of embedding", "")
    answer(child, "embedding runs as: a generated service or a model server: tei", "tei")
    answer(child, "Model of embedding", "")  # the default: BAAI/bge-base-en-v1.5
    answer(child, "Port of embedding", "")
    answer(child, "Endpoint of embedding", "")
    answer(child, "Service 2 name", "")
    answer(child, "Type of retriever", "")
    answer(child, "Port of retriever", "")  # no "runs as": no model server is a retriever
    answer(child, "Endpoint of retriever", "")
    answer(child, "Service 3 name", "")
    answer(child, "Type of rerank", "")
    answer(child, "rerank runs as", "vllm")  # vLLM serves llm nodes only: refused by the choices
    child.expect("Please select one of the available options")
    answer(child, "rerank runs as", "tei")
    answer(child, "Model of rerank", "BAAI/bge-reranker-large")
    answer(child, "Port of rerank", "")
    answer(child, "Endpoint of rerank", "")
    answer(child, "Service 4 name", "")
    answer(child, "Type of llm", "")
    answer(child, "llm runs as: a generated service or a model server: vllm, tgi", "vllm")
    answer(child, "Model of llm", "Intel/neural-chat-7b-v3-3")
    answer(child, "Port of llm", "")
    answer(child, "Endpoint of llm", "")
    answer(child, r"Service 5 name \('\.' finishes\)", ".")  # the suggestion is dataprep: '.' declines it
    answer(child, "a chain in the order above", "")
    generate_with_the_megaservice_defaults(child)

    assert child.exitstatus == 0
    answers = yaml.safe_load((tmp_path / "served" / ".copier-answers.yml").read_text())
    assert [(s["name"], s.get("server"), s.get("model"), s["endpoint"]) for s in answers["services"]] == [
        ("embedding", "tei", "BAAI/bge-base-en-v1.5", "/embed"),
        ("retriever", None, None, "/v1/retrieval"),
        ("rerank", "tei", "BAAI/bge-reranker-large", "/rerank"),
        ("llm", "vllm", "Intel/neural-chat-7b-v3-3", "/v1/chat/completions")]


def test_enter_at_every_question_builds_the_default_pipeline(tmp_path):
    """Following every suggestion gives what `--defaults` gives: the ChatQnA chain, and dataprep beside it
    (no edge names it, so the megaservice does not call it; it stores the documents the retriever searches)."""
    from tests.conftest import run_cli

    child = spawn(["megaservice", "--output", str(tmp_path / "chatqna")], tmp_path)
    answer(child, "Pipeline name", "")
    answer(child, "Description", "")
    answer(child, "Runtime", "lite")
    for number, name in enumerate(("embedding", "retriever", "rerank", "llm", "dataprep"), start=1):
        answer(child, f"Service {number} name", "")
        answer(child, f"Type of {name}", "")
        if name in ("embedding", "rerank", "llm"):
            answer(child, f"{name} runs as", "")
        answer(child, f"Port of {name}", "")
        answer(child, f"Endpoint of {name}", "")
    answer(child, r"Service 6 name \(empty finishes\)", "")
    answer(child, "a chain in the order above, with dataprep beside it", "")
    generate_with_the_megaservice_defaults(child)
    assert child.exitstatus == 0

    defaults = run_cli("megaservice", "--defaults", "--runtime", "lite", "--output", tmp_path / "defaults",
                       cwd=tmp_path)
    assert defaults.returncode == 0, defaults.stdout + defaults.stderr
    asked, default = (yaml.safe_load((tmp_path / folder / ".copier-answers.yml").read_text())
                      for folder in ("chatqna", "defaults"))
    for key in ("services", "flow", "megaservice"):
        assert asked[key] == default[key], key
    assert [service["name"] for service in asked["services"]][-1] == "dataprep"
    assert all("dataprep" not in (edge["service"], *[target["service"] for target in edge["next"]])
               for edge in asked["flow"])


def _saved_spec(text: str) -> str:
    import re

    found = re.search(r"Your answers are saved in (\S+?\.yaml)", " ".join(text.split()))
    assert found, text
    return found.group(1)


@pytest.mark.parametrize("end", ["declined", "ctrl-c", "output-refused"])
def test_the_answers_are_never_lost(tmp_path, end):
    from tests.conftest import run_cli

    output = tmp_path / "asked"
    if end == "output-refused":
        output.mkdir()
        (output / "mine.txt").write_text("mine\n")
    child = spawn(["megaservice", "--output", str(output)], tmp_path)
    _services(child)
    if end == "ctrl-c":
        child.expect(r"Service 3 name")
        child.sendintr()
    else:
        answer(child, r"Service 3 name \(empty finishes\)", "")
        answer(child, "a chain in the order above", "")
        answer(child, "Port", "")
        answer(child, "Endpoint", "")
        answer(child, "Protocol", "")
        answer(child, "Web UI", "")
        answer(child, "UI port", "")
        answer(child, "Generate", "n" if end == "declined" else "y")
    child.expect(pexpect.EOF)
    transcript = child.before
    child.close()

    assert child.exitstatus == (130 if end == "ctrl-c" else 2), transcript
    assert "Traceback" not in transcript
    saved = _saved_spec(transcript)
    spec = yaml.safe_load(Path(saved).read_text())
    assert [service["name"] for service in spec["services"]] == ["embedding", "llm"]
    if end != "ctrl-c":
        assert run_cli("validate", "--spec", saved, timeout=60).returncode == 0
    if end == "output-refused":
        assert sorted(path.name for path in output.iterdir()) == ["mine.txt"]
    else:
        assert not output.exists()
    os.unlink(saved)
