"""HTTP faces of the core's errors: every refusal a 4xx (or a 503) with its reason; each error class
carries its status (``I2FError.http_status``)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from i2f_deploy.errors import I2FError

RETRY_AFTER_S = 2  # what a 503 tells the client to wait


def headers_of(status: int) -> dict[str, str] | None:
    """A 503's ``Retry-After``; no extra headers otherwise."""
    return {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None




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
        status = exc.http_status
        return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers_of(status))
