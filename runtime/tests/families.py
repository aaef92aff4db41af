"""The six stub families' apps (templates/microservice/families), in-process, for the hostile-request tests.

Each family's routes, schemas, stub and backend are rendered from the repository's templates
(only `{{ name }}` / `{{ name | lower }}` placeholders occur in them, in docstrings) into a
package of its own, `opea_family_<family>`, next to an `__init__.py` like a generated one, so
every family is the code a generated service runs, on this runtime's service app.
"""

from __future__ import annotations

import importlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI

TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "microservice"
MODULES = ("routes", "schemas", "stub", "backend", "remote", "prompts")


@dataclass(frozen=True)
class Family:
    name: str
    type: str
    port: int
    endpoint: str
    good: dict  # a request it answers with 200


FAMILIES = (
    Family("embedding", "embedding", 6000, "/v1/embeddings", {"text": "What is OPEA?"}),
    Family("retriever", "retriever", 7000, "/v1/retrieval", {"text": "What is OPEA?", "embedding": [0.5, 0.25]}),
    Family("rerank", "rerank", 8000, "/v1/reranking",
           {"initial_query": "What is OPEA?", "retrieved_docs": [{"text": "OPEA is a platform."}]}),
    Family("llm", "llm", 9000, "/v1/chat/completions", {"query": "What is OPEA?", "stream": False}),
    Family("guardrail", "guardrail", 9400, "/v1/guardrails", {"text": "What is OPEA?"}),
    Family("passthrough", "undefined", 9500, "/v1/echo", {"text": "What is OPEA?", "trace": []}),
)


def render(text: str, values: dict[str, str]) -> str:
    def value(match: re.Match) -> str:
        name, _, wanted = (part.strip() for part in match.group(1).partition("|"))
        result = values[name]
        return result.lower() if wanted == "lower" else result

    return re.sub(r"\{\{\s*([^}]*?)\s*\}\}", value, text)


def build(family: Family, root: Path) -> str:
    """Write the family's package under `root`; its name."""
    package = f"opea_family_{family.name}"
    folder = root / package
    folder.mkdir(parents=True, exist_ok=True)
    values = {"endpoint": family.endpoint, "service_name": f"{family.name}_svc", "service_type": family.type,
              "project_name": "hostile", "port": str(family.port)}
    for module in MODULES:
        source = TEMPLATES / "families" / family.name / f"{module}.py.jinja"
        if source.is_file():
            (folder / f"{module}.py").write_text(render(source.read_text(), values))
    (folder / "__init__.py").write_text(
        "from opea_new_runtime.service import Service\n\n"
        f"SERVICE = Service(name={family.name + '_svc'!r}, project='hostile', type={family.type!r}, "
        f"port={family.port}, endpoint={family.endpoint!r})\n")
    return package


def create_app(family: Family, root: Path) -> FastAPI:
    """The family's app with its stub model, as `app.main.create_app(create_stub)` makes it."""
    package = build(family, root)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    routes = importlib.import_module(f"{package}.routes")
    stub = importlib.import_module(f"{package}.stub")
    service = importlib.import_module(f"{package}").SERVICE
    from opea_new_runtime.service import create_app as service_app

    return service_app(service, routes.router, stub.create_stub)
