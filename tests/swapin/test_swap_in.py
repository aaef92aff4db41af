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


CHATQNA = tuple((name, name) for name in TYPES)  # (name, type): every node named after its type
# A private spec: names of its own, a generated guardrail mid-chain (the documents pass it), its own endpoint.
PRIVATE = (("ask_vectors", "embedding"), ("library", "retriever"), ("screen", "guardrail"), ("ranker", "rerank"),
           ("writer", "llm"))


def spec(swapped: tuple[str, ...], nodes: tuple[tuple[str, str], ...] = CHATQNA, endpoint: str = "/v1/chatqna",
         label: str = "swap") -> dict:
    """A chain of `nodes`; those whose type is in `swapped` run that type's published image."""
    services = [{"name": name, "type": type_, **({"image": IMAGES[type_]} if type_ in swapped else {})}
                for name, type_ in nodes]
    names = [name for name, _ in nodes]
    flow = [{"service": a, "next": [b]} for a, b in zip(names, names[1:], strict=False)]
    return {"name": f"{label}-" + ("-".join(swapped) or "none"), "megaservice": {"endpoint": endpoint},
            "services": services, "flow": flow}


def start_pipeline(processes, project: Path, runtime: str, swapped: tuple[str, ...], corpus: Path,
                   nodes: tuple[tuple[str, str], ...] = CHATQNA, **standin_env: str):
    ports = {}
    for name, type_ in nodes:
        ports[name] = free_port()
        if type_ in swapped:
            processes._start(f"standin-{name}", [processes.python("comps"), str(STANDINS / f"{type_}.py")], STANDINS,
                             {"PORT": str(ports[name]), "SWAPIN_CORPUS": str(corpus), **standin_env},
                             ports[name], wait=True)
        else:
            processes.service(project, name, port=ports[name], runtime=runtime, RETRIEVER_CORPUS=str(corpus))
    return processes.megaservice(project, ports)


def answer(url: str, stream: bool, endpoint: str = "/v1/chatqna") -> tuple[int, str]:
    """(status, the answer's text: the message, or the stream's deltas joined)."""
    body = {"messages": [{"role": "user", "content": QUESTION}], "stream": stream}
    response = httpx.post(f"{url}{endpoint}", json=body, timeout=60, trust_env=False)
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
def test_published_images_swap_into_a_private_spec(runtime, projects, processes, tmp_path):
    """Names of its own, a generated guardrail between the retriever and the rerank, an endpoint of its own: with
    all four published-image stand-ins in, the pipeline answers as its all-generated self (align goes by type)."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS)
    endpoint = "/v1/ask"
    generated = start_pipeline(processes, projects(spec((), PRIVATE, endpoint, "private"), runtime), runtime, (),
                               corpus, PRIVATE)
    expected = {stream: answer(generated.url, stream, endpoint) for stream in (False, True)}
    assert expected[False] == expected[True] and expected[False][0] == 200, expected
    assert "OPEA is the Open Platform for Enterprise AI" in expected[False][1], expected  # the documents got through

    project = projects(spec(TYPES, PRIVATE, endpoint, "private"), runtime)
    assert sorted(folder.name for folder in (project / "services").iterdir() if folder.is_dir()) == ["screen"]
    swapped_in = start_pipeline(processes, project, runtime, TYPES, corpus, PRIVATE)
    for stream in (False, True):
        assert answer(swapped_in.url, stream, endpoint) == expected[stream], f"stream={stream}"


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
