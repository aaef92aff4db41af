"""python -m opea_new_runtime.model_servers {tei-embedding,tei-rerank,openai} --port P [--host H] [--model-id M]"""

from __future__ import annotations

import argparse
import sys

KINDS = ("tei-embedding", "tei-rerank", "openai")
DEFAULT_MODELS = {"tei-embedding": "BAAI/bge-base-en-v1.5", "tei-rerank": "BAAI/bge-reranker-base",
                  "openai": "meta-llama/Meta-Llama-3-8B-Instruct"}


def port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1-65535)")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m opea_new_runtime.model_servers",
                                     description="A stand-in for a model server: its real API, a fake model.")
    parser.add_argument("kind", choices=KINDS, help="which server to stand in for")
    parser.add_argument("--port", type=port, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--model-id", default=None, help="the model it claims to serve")
    options = parser.parse_args(argv)
    model_id = options.model_id or DEFAULT_MODELS[options.kind]

    import uvicorn

    from . import openai_server, tei

    apps = {"tei-embedding": lambda: tei.embedding_app(model_id), "tei-rerank": lambda: tei.rerank_app(model_id),
            "openai": lambda: openai_server.app(model_id)}
    print(f"{options.kind} stand-in serving {model_id} on http://{options.host}:{options.port}", flush=True)
    uvicorn.run(apps[options.kind](), host=options.host, port=options.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
