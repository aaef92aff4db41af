"""The default pipeline: ChatQnA-shaped, embedding → retriever → rerank → llm, with dataprep beside the flow
(no edge names it: it stores your documents, and the retriever searches them)."""

DEFAULT_SPEC = """\
name: chatqna
description: Answers questions over your documents.
megaservice:
  port: 8888
  endpoint: /v1/chatqna
services:
  - {name: embedding, type: embedding, port: 6000}
  - {name: retriever, type: retriever, port: 7000}
  - {name: rerank, type: rerank, port: 8000}
  - {name: llm, type: llm, port: 9000}
  - {name: dataprep, type: dataprep, port: 6007}
flow:
  - {service: embedding, next: [retriever]}
  - {service: retriever, next: [rerank]}
  - {service: rerank, next: [llm]}
"""
