"""HTTP faces of the core's errors: every refusal a 4xx with its reason."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from i2f_deploy.errors import I2FError
from i2f_deploy.serve.budget import Busy
from i2f_deploy.serve.core import NotFound
from i2f_deploy.serve.images import ImageError


RETRY_AFTER_S = 2  # what a 503 tells the client to wait


def headers_of(status: int) -> dict[str, str] | None:
    """A 503's ``Retry-After``; no extra headers otherwise."""
    return {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None


def status_of(exc: I2FError) -> int:
    """404 unknown ids, 503 a full encoder queue or image memory, an image error's own status, else 422."""
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Busy):
        return 503
    if isinstance(exc, ImageError):
        return exc.status
    return 422


def install(app: FastAPI) -> None:
    """Map the core's errors to ``{"detail": reason}`` responses (bodies over the limit get a 413
    from ``limits.ExplainTooLarge``), and validation errors to FastAPI's 422 without the values
    that failed: they can be ones JSON cannot carry (a NaN in a click) or whole images."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [{key: value for key, value in error.items() if key != "input"} for error in exc.errors()]
        return JSONResponse({"detail": jsonable_encoder(detail)}, status_code=422)

    @app.exception_handler(I2FError)
    async def _i2f_error(request: Request, exc: I2FError) -> JSONResponse:
        status = status_of(exc)
        return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers_of(status))
