"""Failures of the model behind the service, answered as 502 (or 504 for a timeout) with a JSON body.

A real backend that fails (an error status, unreachable, too slow) raises
`BackendError`; the app turns it into `{"detail": "..."}` with status 502, or
504 when it timed out, so the megaservice can name this service in its own error.
Raise it from your own backend too.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


class BackendError(Exception):
    """The model behind the service failed; `status` is its HTTP status, if it answered at all."""

    def __init__(self, detail: str, *, status: int | None = None, timed_out: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.timed_out = timed_out

    @property
    def http_status(self) -> int:
        return 504 if self.timed_out else 502


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(BackendError)
    async def backend_failed(request: Request, error: BackendError) -> JSONResponse:
        return JSONResponse({"detail": error.detail, "backend_status": error.status}, status_code=error.http_status)
