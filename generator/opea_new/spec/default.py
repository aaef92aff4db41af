"""The default pipeline: ChatQnA-shaped, embedding → retriever → rerank → llm."""

DEFAULT_SPEC = """\
name: chatqna
description: Answers questions over a small document set.
megaservice:
  port: 8888
  endpoint: /v1/chatqna
services:
  - {name: embedding, type: embedding, port: 6000}
  - {name: retriever, type: retriever, port: 7000}
  - {name: rerank, type: rerank, port: 8000}
  - {name: llm, type: llm, port: 9000}
flow:
  - {service: embedding, next: [retriever]}
  - {service: retriever, next: [rerank]}
  - {service: rerank, next: [llm]}
"""
