"""Your hooks into the data that flows between the nodes of the pipeline.

This file is yours: opea-new writes it once and `copier update` never touches it
again. Each hook receives what the generated code computed and returns what is
used instead; as written here they change nothing.

`context` holds, by keyword (more may be added later, so keep the `**context`):
    node          the node's name in the spec, e.g. "llm"
    service_type  its type, lower-case: "embedding", "llm", "undefined", ...
    runtime_graph the graph of this request (`downstream(name)`, `all_leaves()`, ...;
                  its nodes are named "<node>/MicroService")
    llm_parameters the request's LLM parameters, as a dict
    inputs        (align_outputs only) what the node was sent
"""

from __future__ import annotations

from typing import Any


def align_inputs(inputs: Any, **context: Any) -> Any:
    """What `context["node"]` is sent (already shaped for its type by the runtime, opea_new_runtime.align)."""
    return inputs


def align_outputs(outputs: Any, **context: Any) -> Any:
    """What `context["node"]` answered, before it flows on (and before edge conditions are checked)."""
    return outputs


def align_generator(chunks: Any, **context: Any) -> Any:
    """The raw stream of a streaming llm/lvm node: an async iterator of the bytes it sends (SSE), on both runtimes.

    The megaservice reads whatever you yield (bytes or str, in any of the formats that the runtime's
    opea_new_runtime.protocol.StreamDecoder knows) and re-emits its text as chat stream events.
    """
    return chunks
