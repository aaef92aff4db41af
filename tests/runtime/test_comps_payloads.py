"""OPEA's own test payloads, sent to generated services and megaservice on both runtimes, answers judged by opea-comps.

The requests are those of GenAIComps' tests (embeddings, retrievers, rerankings,
llms, guardrails) and of GenAIExamples' ChatQnA compose test; the rows the
generated services gained (RetrievalRequest, RerankingRequest) are sent too.
Every answer is then validated inside the comps venv by opea-comps 1.5's own
classes (`comps.cores.proto.docarray`, `comps.cores.proto.api_protocol`), so an
answer counts only if comps itself accepts it as the type its own service answers.
OPEA's dataprep calls are judged as OPEA's tests judge them: by the text they look
for in the answer's body."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.slow

SERVICES = [{"name": name, "type": type_} for name, type_ in (
    ("guard", "guardrail"), ("embedding", "embedding"), ("retriever", "retriever"), ("rerank", "rerank"),
    ("llm", "llm"))]
# Named chatqna so the megaservice answers at /v1/chatqna, where ChatQnA's compose test sends its question.
CHATQNA = {"name": "chatqna", "services": SERVICES}

QUESTION = "What is Deep Learning?"
# GenAIComps tests/retrievers/test_retrievers_*.sh: `test_embedding=$(python -c "import random;
# embedding = [random.uniform(-1, 1) for _ in range(768)]; print(embedding)")`.
_SEEDED = random.Random(768)  # random as there, the same every run
RANDOM_EMBEDDING = [_SEEDED.uniform(-1, 1) for _ in range(768)]

# (row, service, path, request, comps class that must accept the answer as "module:Class", the fields of the
# validated answer that must not be empty: comps' classes default most fields, TextDoc every one)
ROWS: list[tuple[str, str, str, dict[str, Any], str, list[str]]] = [
    # GenAIComps tests/embeddings/test_embeddings_tei.sh: -d '{"input":"What is Deep Learning?"}'
    ("embedding input", "embedding", "/v1/embeddings", {"input": QUESTION},
     "api_protocol:EmbeddingResponse", ["data"]),
    # ... and the OpenAI list form: -d '{"input":["What is Deep Learning?","How are you?"]}'
    ("embedding input list", "embedding", "/v1/embeddings", {"input": [QUESTION, "How are you?"]},
     "api_protocol:EmbeddingResponse", ["data"]),
    # comps' embedding microservice also takes a TextDoc and answers an EmbedDoc (the megaservice's form).
    ("embedding TextDoc", "embedding", "/v1/embeddings", {"text": QUESTION}, "docarray:EmbedDoc", ["embedding"]),
    # GenAIComps tests/retrievers: -d "{\"text\":\"test\",\"embedding\":${test_embedding}}"
    ("retriever EmbedDoc", "retriever", "/v1/retrieval", {"text": "test", "embedding": RANDOM_EMBEDDING},
     "docarray:SearchedDoc", ["initial_query"]),
    ("retriever RetrievalRequest", "retriever", "/v1/retrieval", {"embedding": RANDOM_EMBEDDING, "input": "test"},
     "api_protocol:RetrievalResponse", []),
    # GenAIComps' ArangoDB retriever is called with RetrievalRequestArangoDB: the question alone, no vector.
    ("retriever RetrievalRequestArangoDB", "retriever", "/v1/retrieval", {"input": QUESTION, "graph_name": "GRAPH"},
     "api_protocol:RetrievalResponse", ["retrieved_docs"]),
    # GenAIComps tests/rerankings/test_rerankings_tei.sh:
    # -d '{"initial_query":"What is Deep Learning?", "retrieved_docs": [{"text":"Deep Learning is not..."},
    #      {"text":"Deep learning is..."}]}'
    ("rerank SearchedDoc", "rerank", "/v1/reranking",
     {"initial_query": QUESTION, "retrieved_docs": [{"text": "Deep Learning is not..."},
                                                    {"text": "Deep learning is..."}]},
     "docarray:LLMParamsDoc", ["query"]),
    # comps 1.5's reranking handler also takes a SearchedMultimodalDoc (a SearchedDoc with per-document metadata).
    ("rerank SearchedMultimodalDoc", "rerank", "/v1/reranking",
     {"initial_query": QUESTION, "metadata": [{"source": "a.txt"}, {"source": "b.txt"}],
      "retrieved_docs": [{"text": "Deep Learning is not..."}, {"text": "Deep learning is..."}]},
     "docarray:LLMParamsDoc", ["query"]),
    ("rerank RerankingRequest", "rerank", "/v1/reranking",
     {"input": QUESTION, "retrieved_docs": [{"text": "Deep Learning is not..."}, {"text": "Deep learning is..."}]},
     "api_protocol:RerankingResponse", ["reranked_docs"]),
    # GenAIComps tests/llms/test_llms_textgen_*.sh (validate_svc_with_openai.py): a string prompt, whose answer
    # is read as choices[0].text, a text completion ...
    ("llm string messages", "llm", "/v1/chat/completions",
     {"model": "x", "messages": QUESTION, "max_tokens": 17, "stream": False},
     "api_protocol:CompletionResponse", ["choices"]),
    # The rerank's LLMParamsDoc: comps 1.5's textgen sends its prompt to /v1/completions and answers that.
    ("llm LLMParamsDoc", "llm", "/v1/chat/completions", {"query": QUESTION, "max_tokens": 17, "stream": False},
     "api_protocol:CompletionResponse", ["choices"]),
    # ... and the chat form: "messages": [{"role": "user", "content": "What is Deep Learning?"}]
    ("llm list messages", "llm", "/v1/chat/completions",
     {"model": "x", "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 17, "stream": False},
     "api_protocol:ChatCompletionResponse", ["choices"]),
    # GenAIComps tests/guardrails/test_guardrails_guardrails_*.sh: -d '{"text":"How do you buy a tiger in the US?"}'
    ("guardrail TextDoc", "guard", "/v1/guardrails", {"text": "How do you buy a tiger in the US?"},
     "docarray:TextDoc", ["text"]),
]
# GenAIExamples ChatQnA/tests/test_compose_on_xeon.sh: validate_megaservice ... "${ip_address}:8888/v1/chatqna"
# ... '{"messages": "What is the revenue of Nike in 2023?"}'
MEGASERVICE_ROW = ("megaservice ChatQnA", "/v1/chatqna", {"messages": "What is the revenue of Nike in 2023?"},
                   "api_protocol:ChatCompletionResponse", ["choices"])

# Run by the comps venv's Python: each answer validated by comps' own class; the rows that fail are named.
VALIDATOR = """
import importlib, json, sys
failures = []
for row in json.load(open(sys.argv[1])):
    module, name = row["schema"].split(":")
    schema = getattr(importlib.import_module("comps.cores.proto." + module), name)
    answer = json.dumps(row["answer"])[:600]
    try:
        validated = schema.model_validate(row["answer"])
    except Exception as error:
        failures.append(f"{row['row']}: {schema.__name__} refuses {answer}\\n{error}")
        continue
    empty = [field for field in row["required"] if not getattr(validated, field)]
    if empty:
        failures.append(f"{row['row']}: {schema.__name__} of {answer} has no {', '.join(empty)}")
print("\\n\\n".join(failures))
sys.exit(1 if failures else 0)
"""


def post(url: str, body: dict[str, Any]) -> Any:
    answer = httpx.post(url, json=body, timeout=30, trust_env=False)
    assert answer.status_code == 200, f"{url} {json.dumps(body)[:200]}: {answer.status_code} {answer.text[:500]}"
    return answer.json()


def validate_with_comps(python: Path, answers: list[dict[str, Any]], folder: Path) -> subprocess.CompletedProcess:
    answers_file = folder / "answers.json"
    answers_file.write_text(json.dumps(answers))
    script = folder / "validate_with_comps.py"
    script.write_text(VALIDATOR)
    return subprocess.run([str(python), str(script), str(answers_file)], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("runtime", ["comps", "lite"])
def test_opea_payloads_get_answers_comps_accepts(projects, processes, runtime_venvs, runtime, tmp_path):
    project = projects(CHATQNA, runtime)
    running = {service["name"]: processes.service(project, service["name"], runtime=runtime, wait=False)
               for service in SERVICES}
    processes.wait_healthy(*running.values())
    megaservice = processes.megaservice(project, {name: server.port for name, server in running.items()})

    answers = [{"row": row, "schema": schema, "required": required,
                "answer": post(running[service].url + path, body)}
               for row, service, path, body, schema, required in ROWS]
    row, path, body, schema, required = MEGASERVICE_ROW
    answers.append({"row": row, "schema": schema, "required": required,
                    "answer": post(megaservice.url + path, body)})
    by_row = {answer["row"]: answer["answer"] for answer in answers}
    assert len(by_row["embedding input list"]["data"]) == 2  # one vector per input

    result = validate_with_comps(runtime_venvs / "comps" / "bin" / "python", answers, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]


# GenAIExamples ChatQnA/tests/test_compose_*_on_xeon.sh and GenAIComps' dataprep tests call dataprep with curl
# and look for a text in the answer's body (validate_service: [[ "$RESPONSE_BODY" == *"$EXPECTED_RESULT"* ]]).
DATAPREP_FILE = (b"Deep learning is a subset of machine learning that utilizes neural networks with multiple layers "
                 b"to analyze various levels of abstract data representations.")


@pytest.mark.parametrize("runtime", ["comps", "lite"])
def test_opea_dataprep_calls_get_the_text_opea_tests_look_for(projects, processes, runtime, tmp_path):
    project = projects({"name": "docprep", "services": [{"name": "embedding", "type": "embedding"},
                                                        {"name": "retriever", "type": "retriever"},
                                                        {"name": "dataprep", "type": "dataprep"}]}, runtime)
    embedding = processes.service(project, "embedding", runtime=runtime)
    dataprep = processes.service(project, "dataprep", runtime=runtime, VECTOR_STORE="sqlite",
                                 VECTOR_STORE_PATH=str(tmp_path / "vectors.db"), EMBEDDING_SERVICE_HOST_IP="127.0.0.1",
                                 EMBEDDING_SERVICE_PORT=str(embedding.port))
    base = f"{dataprep.url}/v1/dataprep"
    calls = [  # (what, curl's request, the text the body must contain)
        ("dataprep_upload_file", {"url": f"{base}/ingest", "files": [("files", ("dataprep_file.txt", DATAPREP_FILE))]},
         "Data preparation succeeded"),
        ("dataprep_get", {"url": f"{base}/get", "headers": {"Content-Type": "application/json"}}, '{"name":'),
        ("dataprep_del", {"url": f"{base}/delete", "headers": {"Content-Type": "application/json"},
                          "content": '{"file_path": "all"}'}, '{"status":true}'),
    ]
    for what, request, expected in calls:
        answer = httpx.post(**request, timeout=30, trust_env=False)
        assert answer.status_code == 200 and expected in answer.text, (what, answer.status_code, answer.text[:500])
    assert httpx.post(f"{base}/get", timeout=30, trust_env=False).json() == []


def test_the_validator_refuses_a_wrong_answer(runtime_venvs, tmp_path):
    """The check can fail: comps' classes refuse answers missing what they require."""
    wrong = [{"row": "no data", "schema": "api_protocol:EmbeddingResponse", "required": [],
              "answer": {"object": "list"}},
             {"row": "no embedding", "schema": "docarray:EmbedDoc", "required": [], "answer": {"text": QUESTION}},
             {"row": "no text", "schema": "docarray:TextDoc", "required": ["text"], "answer": {"query": QUESTION}},
             {"row": "right", "schema": "docarray:TextDoc", "required": ["text"], "answer": {"text": QUESTION}}]
    result = validate_with_comps(runtime_venvs / "comps" / "bin" / "python", wrong, tmp_path)
    assert result.returncode == 1
    assert "no data: EmbeddingResponse refuses" in result.stdout and "no embedding: EmbedDoc refuses" in result.stdout
    assert "no text: TextDoc of" in result.stdout and "has no text" in result.stdout
    assert "right:" not in result.stdout
