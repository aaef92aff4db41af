"""`python -m app`: serve this microservice with uvicorn until Ctrl-C or SIGTERM.

uvicorn stops gracefully on either signal: it stops accepting connections,
lets requests in flight finish (at most GRACEFUL_TIMEOUT seconds, default 10),
closes the model's connections and exits 0.
"""

from __future__ import annotations

import signal
from types import FrameType

import uvicorn

from . import settings


def main() -> None:
    from .main import app

    # Once it has shut down, uvicorn raises the signal that stopped it again, under the handlers it found:
    # with these, a graceful stop exits 0 instead of dying of SIGTERM.
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, _stopped)
    uvicorn.run(
        app,
        host=settings.host(),
        port=settings.port(),
        log_level=settings.log_level(),
        timeout_graceful_shutdown=settings.graceful_timeout(),
    )


def _stopped(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


if __name__ == "__main__":
    main()
