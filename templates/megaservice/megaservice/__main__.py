"""`python -m megaservice`: serve the pipeline with uvicorn until Ctrl-C or SIGTERM.

uvicorn stops gracefully on either signal: it stops accepting connections,
lets requests in flight finish (at most MEGA_SERVICE_GRACEFUL_TIMEOUT seconds,
default 10), closes the orchestrator's connections and exits 0.
"""

from __future__ import annotations

import uvicorn

from . import settings


def main() -> None:
    from .app import app  # builds the FastAPI app (imports the runtime: comps takes ~1 s)

    uvicorn.run(
        app,
        host=settings.host(),
        port=settings.port(),
        log_level=settings.log_level(),
        timeout_graceful_shutdown=settings.graceful_timeout(),
    )


if __name__ == "__main__":
    main()
