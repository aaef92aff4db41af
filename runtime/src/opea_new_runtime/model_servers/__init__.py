"""Stand-ins for the model servers a spec may name (TEI, vLLM, TGI): their real HTTP APIs, working fake models.

    python -m opea_new_runtime.model_servers tei-embedding --port 6006   TEI: /embed, /v1/embeddings, /info, /health
    python -m opea_new_runtime.model_servers tei-rerank --port 8808      TEI: /rerank, /info, /health
    python -m opea_new_runtime.model_servers openai --port 9009          vLLM/TGI: /v1/chat/completions,
                                                                         /v1/completions, /v1/models, /health

With no GPU, model or Docker, the local runner (`make run`) and a project's tests
start these for the nodes that are model servers. The models are the stubs'
(opea_new_runtime.text): hashed bag-of-words vectors, BM25 scores, and an
extractive answer read from ChatQnA's RAG prompt — so a pipeline answers the
same whether its nodes are generated services or model servers.

    tei          the TEI apps (embedding, rerank)
    openai_server  the OpenAI-compatible chat and completions app
    extractive   the fake LLM: the question and documents of a prompt, and its answer
    errors       TEI's and OpenAI's error bodies
"""
