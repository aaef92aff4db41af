"""Published-image stand-ins swapped into a ChatQnA-shaped project answer as the generated services do.

For each main type (and the whole chain at once) the node gets `image: opea/<x>:1.5`, so
no code is generated for it; a stand-in (standins/<type>.py: opea-comps' own
register_microservice, the published handler's signature) runs on its port, the generated
services run for the others, and the megaservice on both runtimes must answer the chat
request, whole and streamed, exactly as the all-generated pipeline does. A stand-in that
refuses is a 502 naming its node.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.slow

STANDINS = Path(__file__).parent / "standins"
TYPES = ("embedding", "retriever", "rerank", "llm")
IMAGES = {"embedding": "opea/embedding:1.5", "retriever": "opea/retriever:1.5", "rerank": "opea/reranking:1.5",
          "llm": "opea/llm-textgen:1.5"}
CORPUS = ("OPEA is the Open Platform for Enterprise AI. It builds AI applications from microservices.\n\n"
          "The retriever finds the documents closest to the query.\n\n"
          "Bananas are yellow when ripe.\n\n"
          "The Eiffel Tower in Paris is about 330 metres tall.\n")
QUESTION = "What is OPEA?"


def spec(swapped: tuple[str, ...]) -> dict:
    services = [{"name": name, "type": name, **({"image": IMAGES[name]} if name in swapped else {})}
                for name in TYPES]
    flow = [{"service": a, "next": [b]} for a, b in zip(TYPES, TYPES[1:], strict=False)]
    return {"name": "swap-" + ("-".join(swapped) or "none"), "megaservice": {"endpoint": "/v1/chatqna"},
            "services": services, "flow": flow}


def start_pipeline(processes, project: Path, runtime: str, swapped: tuple[str, ...], corpus: Path,
                   **standin_env: str):
    ports = {}
    for name in TYPES:
        ports[name] = free_port()
        if name in swapped:
            processes._start(f"standin-{name}", [processes.python("comps"), str(STANDINS / f"{name}.py")], STANDINS,
                             {"PORT": str(ports[name]), "SWAPIN_CORPUS": str(corpus), **standin_env},
                             ports[name], wait=True)
        else:
            processes.service(project, name, port=ports[name], runtime=runtime, RETRIEVER_CORPUS=str(corpus))
    return processes.megaservice(project, ports)


def answer(url: str, stream: bool) -> tuple[int, str]:
    """(status, the answer's text: the message, or the stream's deltas joined)."""
    body = {"messages": [{"role": "user", "content": QUESTION}], "stream": stream}
    response = httpx.post(f"{url}/v1/chatqna", json=body, timeout=60, trust_env=False)
    if response.status_code != 200:
        return response.status_code, response.text
    if not stream:
        return 200, response.json()["choices"][0]["message"]["content"]
    pieces = []
    for line in response.text.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            delta = json.loads(line[len("data: "):])["choices"][0].get("delta", {})
            pieces.append(delta.get("content") or "")
    return 200, "".join(pieces)


@pytest.mark.parametrize("runtime", ["comps", "lite"])
@pytest.mark.parametrize("swapped", [(name,) for name in TYPES] + [TYPES], ids=[*TYPES, "chain"])
def test_a_published_image_stand_in_answers_as_the_generated_service(swapped, runtime, projects, processes,
                                                                     tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS)
    generated = start_pipeline(processes, projects(spec(()), runtime), runtime, (), corpus)
    expected = {stream: answer(generated.url, stream) for stream in (False, True)}
    assert expected[False][0] == 200 and "OPEA" in expected[False][1], expected
    assert expected[True] == expected[False]

    project = projects(spec(swapped), runtime)
    for name in swapped:
        assert not (project / "services" / name).exists(), f"{name} has an image: no code is generated"
    swapped_in = start_pipeline(processes, project, runtime, swapped, corpus)
    for stream in (False, True):
        assert answer(swapped_in.url, stream) == expected[stream], f"stream={stream}"


@pytest.mark.parametrize("runtime", ["comps", "lite"])
def test_a_refusing_stand_in_is_a_502_naming_its_node(runtime, projects, processes, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS)
    megaservice = start_pipeline(processes, projects(spec(("rerank",)), runtime), runtime, ("rerank",), corpus,
                                 SWAPIN_REFUSE="1")
    body = {"messages": [{"role": "user", "content": QUESTION}]}
    response = httpx.post(f"{megaservice.url}/v1/chatqna", json=body, timeout=60, trust_env=False)
    assert response.status_code == 502, response.text
    assert response.json()["error"]["node"] == "rerank", response.text
