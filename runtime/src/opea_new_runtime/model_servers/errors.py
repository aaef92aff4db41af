"""The error bodies each server family answers with, so clients see the shapes they parse in production."""

from __future__ import annotations

from fastapi.responses import JSONResponse


def tei_error(status: int, message: str, error_type: str = "Validation") -> JSONResponse:
    """TEI's ErrorResponse: `{"error", "error_type"}` (413 for too large a batch, 422 for invalid input)."""
    return JSONResponse({"error": message, "error_type": error_type}, status_code=status)


def openai_error(status: int, message: str, param: str | None = None) -> JSONResponse:
    """OpenAI's error body, as vLLM answers it: `{"error": {"message", "type", "param", "code"}}`."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": status}},
                        status_code=status)
