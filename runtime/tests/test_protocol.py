"""protocol.py and align.py without servers: requests, answers, streams, errors, shapes between nodes."""

from __future__ import annotations

import json

import aiohttp
import pytest

from opea_new_runtime import align
from opea_new_runtime.protocol import (
    ChatAnswer,
    NodeError,
    RequestError,
    StreamDecoder,
    StreamError,
    counted_usage,
    finish_reason_of,
    openai_error_body,
    parse_chat_request,
    parse_raw_request,
    spec_name,
    text_of,
    usage_of,
    words,
)

# ---------------------------------------------------------------- requests


def test_chat_prompt_is_the_last_user_message():
    request = parse_chat_request({"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "What is"}, {"type": "text", "text": "OPEA?"}]},
    ]})
    assert request.prompt() == "What is OPEA?"
    assert request.stream is False


def test_chat_prompt_as_a_string_and_parameters():
    request = parse_chat_request({"messages": "hello", "stream": True, "max_tokens": 17, "temperature": 0.5,
                                  "user": "someone"})
    assert request.prompt() == "hello"
    assert request.llm_parameters() == {"max_tokens": 17, "temperature": 0.5, "stream": True}


@pytest.mark.parametrize("body", [{}, {"messages": []}, {"messages": ""}, {"messages": [{"role": "system",
                                  "content": "x"}]}, {"messages": "x", "max_tokens": 0}, [], "text"])
def test_bad_chat_requests(body):
    with pytest.raises(RequestError) as caught:
        parse_chat_request(body)
    assert caught.value.status == 422
    assert caught.value.body()["error"]["detail"]


def test_raw_requests_are_objects():
    assert parse_raw_request({"a": 1}) == {"a": 1}
    for body in ([], "x", None, 3):
        with pytest.raises(RequestError):
            parse_raw_request(body)


# ---------------------------------------------------------------- answers


@pytest.mark.parametrize(("output", "text"), [
    ({"text": "GeneratedDoc", "prompt": "q"}, "GeneratedDoc"),
    ({"choices": [{"message": {"role": "assistant", "content": "ChatCompletion"}}]}, "ChatCompletion"),
    ({"choices": [{"text": "Completion"}]}, "Completion"),
    ({"text": ["a", "b"]}, "a\nb"),
    ({"trace": ["x"]}, ""),
    ("plain", "plain"),
    ([1], ""),
])
def test_text_of(output, text):
    assert text_of(output) == text


def test_chat_answer_documents():
    answer = ChatAnswer("model-x")
    completion = answer.completion("hi")
    assert completion["choices"][0]["message"] == {"role": "assistant", "content": "hi"}
    assert completion["model"] == "model-x" and completion["object"] == "chat.completion"
    chunk = json.loads(answer.chunk("tok", first=True).removeprefix("data: "))
    assert chunk["choices"][0]["delta"] == {"role": "assistant", "content": "tok"}
    last = json.loads(answer.chunk(finish=True).removeprefix("data: "))
    assert last["choices"][0]["finish_reason"] == "stop" and last["id"] == chunk["id"]


def test_opea_stream_events_read_back():
    answer = ChatAnswer("m", "opea")
    events = [answer.chunk("Héllo", first=True), answer.chunk(" it's"), answer.chunk(finish=True)]
    assert events == ["data: b'H\\xc3\\xa9llo'\n\n", 'data: b" it\'s"\n\n', ""]
    assert decode([*events, "data: [DONE]\n\n"])[0] == "Héllo it's"


@pytest.mark.parametrize("text", ["", "one", "two words", "  spaced   out  ", "line\nbreak"])
def test_words_join_back(text):
    assert "".join(words(text)) == text


def test_spec_names():
    assert spec_name("llm/MicroService") == "llm"
    assert spec_name("echo_service") == "echo_service"


# ---------------------------------------------------------------- streams


def decode(chunks: list[bytes | str]) -> tuple[str, StreamDecoder]:
    decoder = StreamDecoder()
    pieces = [piece for chunk in chunks for piece in decoder.feed(chunk)] + decoder.close()
    return "".join(pieces), decoder


def openai_chunk(content: str) -> str:
    return "data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": content}}]}) + "\n\n"


def test_openai_chunks_cut_anywhere():
    stream = (openai_chunk("Héllo") + openai_chunk(" wörld") + "data: [DONE]\n\n").encode()
    for size in (1, 2, 7, len(stream)):
        text, decoder = decode([stream[i:i + size] for i in range(0, len(stream), size)])
        assert text == "Héllo wörld"
        assert decoder.done


@pytest.mark.parametrize(("stream", "expected"), [
    ("data: b'OPEA'\n\ndata: b' is'\n\ndata: [DONE]\n\n", "OPEA is"),  # OPEA's repr(bytes)
    ("data: b'I can't'\n\ndata: [DONE]\n\n", "I can't"),  # comps' refusal stream, unescaped
    ("data: {\"token\": {\"text\": \"TGI\", \"special\": false}}\n\n", "TGI"),
    ("data: {\"choices\": [{\"text\": \"completion\"}]}\n\n", "completion"),
    ("data: plain text\r\n\r\ndata: [DONE]\r\n\r\n", "plain text"),
    ("{\"text\": \"a whole JSON answer\", \"prompt\": \"q\"}", "a whole JSON answer"),
    (": comment\n\nevent: message\ndata: hi\n\n", "hi"),
    ("not an event stream at all", "not an event stream at all"),
])
def test_stream_formats(stream, expected):
    assert decode([stream])[0] == expected
    data = stream.encode()
    assert decode([data[i:i + 1] for i in range(len(data))])[0] == expected  # cut anywhere


def test_a_stream_reporting_an_error_raises():
    with pytest.raises(StreamError, match="overloaded"):
        decode(['data: {"error": {"message": "overloaded"}}\n\n'])


def test_an_empty_stream_is_noticed():
    text, decoder = decode([])
    assert text == "" and not decoder.seen_data and not decoder.done


# ---------------------------------------------------------------- errors


def test_node_errors_from_exceptions():
    timeout = NodeError.from_exception("llm", TimeoutError())
    assert (timeout.http_status, timeout.node, timeout.status) == (504, "llm", None)
    refused = NodeError.from_exception("embedding", aiohttp.ClientConnectionError("refused"))
    assert refused.http_status == 502 and "refused" in refused.detail
    answered = NodeError.from_exception("rerank", aiohttp.ClientResponseError(None, (), status=422, message="bad"))
    assert answered.body() == {"error": {"node": "rerank", "status": 422, "detail": "bad"}}


# ---------------------------------------------------------------- shapes between nodes


def test_embedding_gets_an_embedding_request():
    # {"input"}: what opea/embedding:1.5 accepts (it refuses a TextDoc), and what the generated service takes too
    assert align.node_inputs("embedding", {"messages": "x", "text": "q"}) == {"input": "q"}
    assert align.node_inputs("embedding", {"initial_query": "q", "x": 1}) == {"input": "q"}


def test_retriever_gets_an_embed_doc():
    embed_doc = {"text": "q", "embedding": [0.1, 0.2], "k": 3, "search_type": "similarity", "extra": 1}
    assert align.node_inputs("retriever", embed_doc) == {"text": "q", "embedding": [0.1, 0.2], "k": 3,
                                                         "search_type": "similarity"}
    openai = {"text": "q", "data": [{"embedding": [0.3], "index": 0}]}
    assert align.node_inputs("retriever", openai) == {"text": "q", "embedding": [0.3]}


def test_rerank_gets_a_searched_doc():
    searched = {"initial_query": "q", "retrieved_docs": [{"text": "a", "id": "1"}, {"text": "b"}], "top_n": 1}
    assert align.node_inputs("rerank", searched) == {"initial_query": "q", "retrieved_docs": [{"text": "a"},
                                                     {"text": "b"}], "top_n": 1}


def test_llm_gets_query_documents_and_parameters():
    inputs = {"query": "q", "documents": ["d"], "id": "x", "index_name": None, "max_tokens": 5, "stream": True,
              "downstream_black_list": [".*"]}
    assert align.node_inputs("llm", inputs, stream=False) == {"query": "q", "documents": ["d"], "max_tokens": 5,
                                                              "stream": False}
    reranked = {"initial_query": "q", "reranked_docs": [{"text": "d"}]}
    assert align.node_inputs("llm", reranked, stream=True) == {"query": "q", "documents": ["d"], "stream": True}
    assert align.node_inputs("llm", {"text": "answer of another llm", "prompt": "q"})["query"] == (
        "answer of another llm")


def test_guardrail_gets_text():
    assert align.node_inputs("guardrail", {"query": "q", "documents": []}) == {"text": "q"}


def test_other_types_get_everything_but_the_black_list():
    inputs = {"text": "x", "trace": ["a"], "downstream_black_list": ["^b$"]}
    assert align.node_inputs("undefined", inputs) == {"text": "x", "trace": ["a"]}


def test_missing_fields_go_as_they_are():
    assert align.node_inputs("retriever", {"text": "no embedding"}) == {"text": "no embedding"}
    assert align.node_inputs("llm", {"nothing": 1}) == {"nothing": 1}


def test_openai_answers_get_opea_fields():
    embedding = align.node_outputs("embedding", {"data": [{"embedding": [1.0]}]}, {"text": "q"})
    assert embedding == {"text": "q", "embedding": [1.0]}
    completion = {"choices": [{"message": {"content": "hi"}}]}
    assert align.node_outputs("llm", completion, {})["text"] == "hi"
    assert align.node_outputs("undefined", {"x": 1}, {}) == {"x": 1}


# ---------------------------------------------------------------- model-server nodes


def test_a_tei_embedding_node_gets_inputs_and_its_vectors_become_an_embed_doc():
    sent = align.node_inputs("embedding", {"text": "what is opea"}, server="tei")
    assert sent == {"inputs": "what is opea"}
    assert align.node_outputs("embedding", [[0.5, 0.25]], sent, server="tei") == {
        "text": "what is opea", "embedding": [0.5, 0.25]}


def test_a_tei_rerank_node_gets_query_and_texts_and_answers_the_best_documents():
    searched = {"initial_query": "q", "retrieved_docs": [{"text": "a"}, {"text": "b"}, {"text": "c"}]}
    sent = align.node_inputs("rerank", searched, server="tei")
    assert sent == {"query": "q", "texts": ["a", "b", "c"]}
    scores = [{"index": 2, "score": 0.1}, {"index": 1, "score": 0.9}, {"index": 0, "score": 0.5}]
    assert align.node_outputs("rerank", scores, sent, server="tei") == {"query": "q", "documents": ["b"]}
    two = align.node_outputs("rerank", scores, sent, server="tei", carried=lambda: {"top_n": 2})
    assert two == {"query": "q", "documents": ["b", "a"]}
    # indexes TEI cannot have answered are not documents
    assert align.node_outputs("rerank", [{"index": 7, "score": 1.0}], sent, server="tei")["documents"] == []


@pytest.mark.parametrize("server", ["vllm", "tgi"])
def test_an_openai_server_llm_node_gets_a_chat_with_the_rag_prompt_and_its_model(server):
    inputs = {"query": "what is opea", "documents": ["OPEA is open."], "max_new_tokens": 7, "top_k": 3,
              "temperature": 0.5}
    sent = align.node_inputs("llm", inputs, stream=True, server=server, model="m/x")
    assert sent["model"] == "m/x" and sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["max_tokens"] == 7 and sent["temperature"] == 0.5 and "top_k" not in sent
    content = sent["messages"][0]["content"]
    assert "### Search results: OPEA is open." in content and "### Question: what is opea" in content
    plain = align.node_inputs("llm", {"query": "hi"}, stream=False, server=server, model="m/x")
    assert plain == {"messages": [{"role": "user", "content": "hi"}], "stream": False, "model": "m/x"}


def test_fields_a_node_lacks_come_from_upstream_answers():
    upstream = {"initial_query": "q", "retrieved_docs": [{"text": "d1"}], "top_n": 1}
    # an llm behind a guardrail: the guardrail's TextDoc has no documents, the retriever's answer has
    after_guardrail = align.node_inputs("llm", {"text": "q", "blocked": False}, carried=lambda: upstream)
    assert after_guardrail["query"] == "q" and after_guardrail["documents"] == ["d1"]
    # its own inputs come first
    own = align.node_inputs("llm", {"query": "mine", "documents": ["own"]}, carried=lambda: upstream)
    assert own["query"] == "mine" and own["documents"] == ["own"]
    # a rerank behind a guardrail gets the query from its input and the documents from upstream
    assert align.node_inputs("rerank", {"text": "q2"}, carried=lambda: upstream)["retrieved_docs"] == [
        {"text": "d1"}]


def test_carried_fields_are_asked_for_only_when_needed():
    def never():
        raise AssertionError("not needed")

    assert align.node_inputs("llm", {"query": "q", "documents": []}, carried=never)["documents"] == []
    assert align.node_inputs("embedding", {"text": "q"}, carried=never) == {"input": "q"}


# ---------------------------------------------------------------- the OpenAI front door's pieces


def test_a_stream_decoder_keeps_the_last_finish_reason_and_the_usage_an_event_reports():
    decoder = StreamDecoder()
    events = [{"choices": [{"delta": {"content": "Hi"}, "finish_reason": None}]},
              {"choices": [{"delta": {}, "finish_reason": "length"}]},
              {"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 1, "total_tokens": 99}}]
    pieces = decoder.feed("".join(f"data: {json.dumps(event)}\n\n" for event in events) + "data: [DONE]\n\n")
    assert pieces == ["Hi"] and decoder.done
    assert decoder.finish_reason == "length"
    assert decoder.usage == {"prompt_tokens": 4, "completion_tokens": 1, "total_tokens": 5}  # summed, not trusted


@pytest.mark.parametrize("usage", [None, {}, {"prompt_tokens": 3}, {"prompt_tokens": -1, "completion_tokens": 2},
                                   {"prompt_tokens": 1.5, "completion_tokens": 2}, {"prompt_tokens": True,
                                   "completion_tokens": 2}, "12"])
def test_usage_a_node_reports_only_counts_when_whole(usage):
    assert usage_of({"usage": usage}) is None


def test_usage_is_counted_in_words_when_no_node_reports_it():
    assert counted_usage("What is OPEA?", "It is a platform.") == {"prompt_tokens": 3, "completion_tokens": 4,
                                                                   "total_tokens": 7}


def test_finish_reasons_are_only_the_known_ones():
    assert finish_reason_of({"choices": [{"finish_reason": "length"}]}) == "length"
    for output in ({"choices": [{"finish_reason": "exploded"}]}, {"choices": []}, {"text": "x"}, "x"):
        assert finish_reason_of(output) is None


def test_openai_error_bodies_keep_the_node_and_say_what_kind_of_failure():
    failed = openai_error_body(NodeError("llm", 500, "boom"))["error"]
    assert (failed["message"], failed["type"], failed["code"], failed["node"], failed["status"]) == (
        "llm: boom", "upstream_error", "node_failed", "llm", 500)
    slow = openai_error_body(NodeError("llm", None, "silent", timeout=True))["error"]
    assert (slow["type"], slow["code"]) == ("timeout", "node_timeout")
    refused = openai_error_body(RequestError("messages: missing"))["error"]
    assert (refused["message"], refused["type"], refused["node"], refused["param"]) == (
        "messages: missing", "invalid_request_error", None, None)


def test_the_opea_stream_format_has_no_usage_event():
    assert ChatAnswer("m", "opea").usage_chunk({"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}) == ""
    event = json.loads(ChatAnswer("m").usage_chunk({"prompt_tokens": 1, "completion_tokens": 1,
                                                     "total_tokens": 2}).removeprefix("data: "))
    assert event["choices"] == [] and event["usage"]["total_tokens"] == 2
