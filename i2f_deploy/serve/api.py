"""The FastAPI application: the native API under ``/api``, ``/health``, the web page at ``/`` and
the annotation tools' adapters at the paths those tools call.

Native flow: post an image once (``POST /api/images`` as a file, or ``/api/images/base64``); it
is encoded in the background. Open a session on it, then click, undo, redo, reset: each answer
carries the mask (1-bit PNG as a data URI, or COCO RLE) and its polygons at the image's own
resolution, with timings. Route handlers are plain functions: FastAPI runs them in its thread
pool, so graph runs never block the event loop. Two are not: ``/health`` only reads counters and
is answered on the event loop (it never waits for a thread), and Label Studio's ``/predict``
runs on threads of its own (``pools.WorkPool``).
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from fastapi import FastAPI, File, Query, UploadFile
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.trustedhost import TrustedHostMiddleware
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, Field

from i2f_deploy.prompt_map import Click
from i2f_deploy.runtime.polygons import polygons as outlines
from i2f_deploy.serve import errors, masks
from i2f_deploy.serve.access_log import AccessLog
from i2f_deploy.serve.adapters import anylabeling, cvat, label_studio
from i2f_deploy.serve.auth import DOCS_ASSETS, RequireAuth
from i2f_deploy.serve.config import MB
from i2f_deploy.serve.core import ImageInfo, Segmentation, ServingEngine
from i2f_deploy.serve.images import decode_base64, decode_image
from i2f_deploy.serve.limits import BodyDeadline, ExplainTooLarge
from i2f_deploy.serve.sessions import Session, Sessions

STATIC = Path(__file__).parent / "static"

MaskFormat = Annotated[Literal["png", "rle", "none"], Query(
    description="Mask encoding in the answer: a 1-bit PNG data URI, COCO RLE, or none.")
]
WithPolygons = Annotated[bool, Query(description="Include the mask's outer polygons ([x, y] pixels).")]


class ImageOut(BaseModel):
    image_id: str = Field(description="Content hash of the pixels: the same image always gets the same id.")
    width: int
    height: int
    encoded: bool = Field(description="The encoder has run (clicks are then decoder runs only).")
    queued: bool = Field(description="This request queued the image for the background encoder.")


class Base64Image(BaseModel):
    image: str = Field(description="The image file as base64, bare or as a data URI (data:image/png;base64,...).")


class SessionIn(BaseModel):
    image_id: str


class ClickIn(BaseModel):
    x: int = Field(description="Column in image pixels (0 = left).")
    y: int = Field(description="Row in image pixels (0 = top).")
    positive: bool = Field(True, description="True: the pixel belongs to the object; False: it does not.")


class ClickOut(BaseModel):
    x: int
    y: int
    positive: bool


class MaskOut(BaseModel):
    format: Literal["png", "rle"]
    data: str | dict = Field(
        description="png: data:image/png;base64,...; rle: {size: [h, w], counts: [...]} (column-major, background first)."
    )


class Result(BaseModel):
    session_id: str
    image_id: str
    width: int
    height: int
    clicks: list[ClickOut]
    can_undo: bool
    can_redo: bool
    mask: MaskOut | None = Field(description="None before the first click or with mask=none.")
    polygons: list[list[list[int]]] | None
    num_routed: int | None = Field(description="Decoder tokens on full attention at the last decoder run (a diagnostic).")
    timings: dict[str, float | int] = Field(
        description="Milliseconds: encode_wait (this request waited for the encoder), decode, total; decoder_runs is a count."
    )


def image_out(info: ImageInfo) -> ImageOut:
    return ImageOut(image_id=info.image_id, width=info.width, height=info.height, encoded=info.encoded, queued=info.queued)


def result_out(session: Session, result: Segmentation, mask_format: str, with_polygons: bool) -> Response:
    """The answer to a session operation as JSON, with only the mask encoding and the polygons
    asked for. Built from values of known types and serialised once, without validation: a
    fragmented mask's outlines are tens of thousands of points, which validating (here, then
    again as FastAPI checks a returned model) took longer than tracing them. The polygons are
    written in their place straight from the outlines' arrays (``masks.polygons_json``), never
    as lists."""
    mask = None
    if result.mask is not None and mask_format == "png":
        png = base64.b64encode(masks.to_png(result.mask)).decode()
        mask = MaskOut.model_construct(format="png", data="data:image/png;base64," + png)
    elif result.mask is not None and mask_format == "rle":
        mask = MaskOut.model_construct(format="rle", data=masks.to_coco_rle(result.mask))
    shapes = b"null"
    if with_polygons:
        shapes = masks.polygons_json(outlines(result.mask)) if result.mask is not None else b"[]"
    clicks = [ClickOut.model_construct(x=c.x, y=c.y, positive=c.positive) for c in result.clicks]
    body = Result.model_construct(session_id=session.session_id, image_id=session.image_id, width=result.width,
                                  height=result.height, clicks=clicks, can_undo=bool(result.clicks),
                                  can_redo=session.history.can_redo, mask=mask, polygons=None,
                                  num_routed=result.num_routed, timings=result.timings)
    after = {"num_routed", "timings"}  # the fields after the polygons, in the model's order
    head = body.model_dump_json(exclude={"polygons", *after}).encode()
    tail = body.model_dump_json(include=after).encode()
    return Response(head[:-1] + b',"polygons":' + shapes + b"," + tail[1:], media_type="application/json")


def create_app(engine: ServingEngine) -> FastAPI:
    """The whole server on one engine (``core.Engine`` or ``ray_app.RayEngine``)."""
    config = engine.config
    # the API docs load their scripts from the installed package, not a CDN: they work offline
    app = FastAPIOffline(static_url=DOCS_ASSETS, favicon_url="/static/favicon.svg", title="i2f-deploy serve",
                  description="Click-to-segment with Inter2Former on CPUs: native API, web page, and the "
                              "Label Studio, X-AnyLabeling and CVAT adapters.",
                  version="1")
    errors.install(app)
    # outermost last: the log sees every answer, CORS answers preflights before the token check
    app.add_middleware(ExplainTooLarge)
    app.add_middleware(BodyDeadline, seconds=config.body_timeout_s)
    app.add_middleware(RequireAuth, token=config.token, basic_auth=config.basic_auth)
    if config.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(config.cors_origins), allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "Content-Type", "Token"])
    if config.allowed_hosts != ("*",):  # a page on another site resolving its name to us (DNS rebinding)
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(config.allowed_hosts))
    app.add_middleware(AccessLog)
    small, large = config.max_json_kb * 1024, config.max_upload_mb * MB  # bodies without and with an image
    sessions = Sessions(engine, config.max_sessions)
    app.state.engine, app.state.sessions = engine, sessions

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/health", tags=["health"])
    async def health() -> dict:
        """Liveness and load: Label Studio reads ``status: UP``; counts of encoder and decoder
        runs, the feature cache and the encoder queue. Answered on the event loop (it only reads
        counters), so it never waits for a worker thread, however busy they are."""
        return {"status": "UP", "model_class": "Inter2Former", "model": engine.model_name,
                "backend": config.backend, "target_size": engine.target_size, "models_loaded": 1,
                "sessions": len(sessions), "timestamp": datetime.datetime.now(datetime.UTC).isoformat(),
                **engine.stats()}

    @app.post("/api/images", tags=["native"], max_body_size=large)
    def post_image(file: Annotated[UploadFile, File(description="An image file (PNG, JPEG, BMP, WebP, TIFF).")]) -> ImageOut:
        """Upload an image; it is encoded in the background (known images cost nothing)."""
        return image_out(engine.add_image(decode_image(file.file.read(), config.max_pixels, engine.memory)))

    @app.post("/api/images/base64", tags=["native"], max_body_size=large)
    def post_image_base64(body: Base64Image) -> ImageOut:
        """The same as ``POST /api/images`` with the file as base64 in JSON."""
        return image_out(engine.add_image(decode_base64(body.image, config.max_pixels, engine.memory)))

    @app.get("/api/images/{image_id}", tags=["native"])
    def get_image(image_id: str) -> ImageOut:
        """Whether an image is known and encoded."""
        return image_out(engine.info(image_id))

    @app.post("/api/sessions", tags=["native"], max_body_size=small, response_model=Result)
    def create_session(body: SessionIn, mask: MaskFormat = "png", polygons: WithPolygons = True) -> Response:
        """Start clicking on a posted image."""
        return result_out(*sessions.create(body.image_id), mask, polygons)

    @app.get("/api/sessions/{session_id}", tags=["native"], response_model=Result)
    def get_session(session_id: str, mask: MaskFormat = "png", polygons: WithPolygons = True) -> Response:
        """The session's clicks and current mask."""
        return result_out(*sessions.current(session_id), mask, polygons)

    @app.delete("/api/sessions/{session_id}", tags=["native"], status_code=204)
    def delete_session(session_id: str) -> Response:
        sessions.delete(session_id)
        return Response(status_code=204)

    @app.post("/api/sessions/{session_id}/clicks", tags=["native"], max_body_size=small, response_model=Result)
    def click(session_id: str, body: ClickIn, mask: MaskFormat = "png", polygons: WithPolygons = True) -> Response:
        """Add a click (422 outside the image); clears the redo stack."""
        return result_out(*sessions.click(session_id, Click(x=body.x, y=body.y, positive=body.positive)), mask, polygons)

    def history_route(operation: Callable[[str], tuple[Session, Segmentation]]):  # undo, redo, reset: the same shape
        def route(session_id: str, mask: MaskFormat = "png", polygons: WithPolygons = True) -> Response:
            return result_out(*operation(session_id), mask, polygons)

        route.__doc__ = operation.__doc__
        app.post(f"/api/sessions/{{session_id}}/{operation.__name__}", tags=["native"], name=operation.__name__,
                 max_body_size=small, response_model=Result)(route)

    for operation in (sessions.undo, sessions.redo, sessions.reset):
        history_route(operation)

    @app.get("/api/sessions/{session_id}/mask.png", tags=["native"], response_class=Response,
             responses={200: {"content": {"image/png": {}}}})
    def mask_png(session_id: str) -> Response:
        """The current mask as a PNG download (0 background, 255 object; empty before any click)."""
        _, result = sessions.current(session_id)
        mask = result.mask if result.mask is not None else np.zeros((result.height, result.width), bool)
        return Response(masks.to_png(mask), media_type="image/png",
                        headers={"Content-Disposition": f'attachment; filename="mask-{result.image_id[:8]}.png"'})

    app.include_router(label_studio.router(engine), max_body_size=large)
    app.include_router(anylabeling.router(engine), max_body_size=large)
    app.include_router(cvat.router(engine), max_body_size=large)
    return app

