"""X-AnyLabeling-Server protocol: ``GET /v1/models``, ``GET /v1/models/{id}/info``, ``POST /v1/predict``.

Shapes from CVHub520/X-AnyLabeling-Server: ``docs/router.md`` (routes, ``{"success", "data"}``
envelopes, error codes), ``app/schemas/request.py`` (``{model, image, params}``, the image as a
data URI or bare base64), ``app/schemas/shape.py`` (a shape's fields), ``app/models/base.py``
(``get_metadata``: display_name, widgets, params); and from CVHub520/X-AnyLabeling:
``anylabeling/services/auto_labeling/remote_server.py`` (the client: ``params.marks``,
``params.epsilon_factor``; ``batch_processing_mode`` None for a model batch runs cannot use)
and ``segment_anything.py`` (marks: ``{"type": "point", "data": [x, y], "label": 1 | 0}``;
widgets of a click model; polygons simplified by ``epsilon_factor`` x perimeter).

Point marks only: a rectangle mark gets 422 (the model takes clicks). The client re-sends the
whole image and every mark of the object on each click; the content hash and the click states
make that one decoder run. Errors keep the protocol's body
(``{"success": false, "error": {"code", "message"}}``) but with a 4xx status, so the client's
``raise_for_status`` reports them instead of showing nothing.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from i2f_deploy.errors import I2FError
from i2f_deploy.runtime.polygons import polygons
from i2f_deploy.serve.adapters.common import check_count, pair, refuse_prompts, to_click
from i2f_deploy.serve.core import ServingEngine
from i2f_deploy.serve.errors import headers_of
from i2f_deploy.serve.images import ImageError, decode_base64

MODEL_ID = "inter2former"
DEFAULT_EPSILON = 0.001  # the server's default mask fineness
WIDGETS = [{"name": name, "value": None} for name in
           ("button_add_point", "button_remove_point", "button_clear", "button_finish_object")]


class PredictRequest(BaseModel):
    model: str
    image: str = Field(description="Base64 image, as a data URI or bare.")
    params: dict[str, Any] = Field(default_factory=dict, description="marks: [{type: point, data: [x, y], label: 1|0}], epsilon_factor.")


def _error(code: str, message: str, status: int) -> JSONResponse:
    return JSONResponse({"success": False, "error": {"code": code, "message": message}}, status_code=status,
                        headers=headers_of(status))


def metadata(engine: ServingEngine) -> dict[str, Any]:
    return {"display_name": f"Inter2Former ({engine.model_name}, i2f-deploy)", "widgets": WIDGETS,
            "params": {"target_size": engine.target_size, "backend": engine.config.backend,
                       "epsilon_factor": DEFAULT_EPSILON},
            "batch_processing_mode": None}


def predict(engine: ServingEngine, request: PredictRequest) -> dict[str, Any]:
    """Marks -> polygon shapes of the mask."""
    marks = request.params.get("marks") or []
    if not isinstance(marks, list):
        raise I2FError("params.marks must be a list")
    refuse_prompts({str(m.get("type")) if isinstance(m, dict) else "non-object" for m in marks} - {"point"},
                   "add points on the object (and points off it) instead")
    check_count(len(marks), engine.config.max_clicks)
    rgb = decode_base64(request.image, engine.config.max_pixels, engine.memory)
    image_id = engine.add_image(rgb).image_id
    height, width = rgb.shape[:2]
    clicks = []
    for mark in marks:
        x, y = pair(mark.get("data"))
        clicks.append(to_click(x, y, mark.get("label", 1) == 1, width, height))
    if not clicks:
        return {"shapes": [], "description": ""}
    epsilon = request.params.get("epsilon_factor", DEFAULT_EPSILON)
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not 0 <= epsilon < 1:
        raise I2FError(f"params.epsilon_factor must be a number in [0, 1), got {epsilon!r}")
    result = engine.segment(image_id, clicks)
    assert result.mask is not None
    shapes: list[dict[str, Any]] = []
    for polygon in polygons(result.mask, float(epsilon)):
        points = [[float(x), float(y)] for x, y in polygon.tolist()]
        shapes.append({"label": "AUTOLABEL_OBJECT", "shape_type": "polygon", "points": points + points[:1],
                       "score": None, "attributes": {}, "description": None, "difficult": False,
                       "direction": 0, "flags": None, "group_id": None, "kie_linking": []})
    return {"shapes": shapes, "description": ""}


def router(engine: ServingEngine) -> APIRouter:
    routes = APIRouter(prefix="/v1", tags=["X-AnyLabeling"])

    @routes.get("/models")
    def models() -> dict[str, Any]:
        """The one model this server runs, as X-AnyLabeling lists remote models."""
        return {"success": True, "data": {MODEL_ID: metadata(engine)}}

    @routes.get("/models/{model_id}/info", response_model=None)
    def info(model_id: str) -> dict[str, Any] | JSONResponse:
        if model_id != MODEL_ID:
            return _error("MODEL_NOT_FOUND", f"Model '{model_id}' not loaded (this server runs '{MODEL_ID}')", 404)
        return {"success": True, "data": {"model_id": MODEL_ID, **metadata(engine)}}

    @routes.post("/predict", response_model=None)
    def predict_route(request: PredictRequest) -> dict[str, Any] | JSONResponse:
        """X-AnyLabeling's remote prediction: point marks in, polygon shapes out."""
        if request.model != MODEL_ID:
            return _error("MODEL_NOT_FOUND", f"Model '{request.model}' not loaded (this server runs '{MODEL_ID}')", 404)
        try:
            return {"success": True, "data": predict(engine, request)}
        except ImageError as exc:
            return _error("INVALID_IMAGE", str(exc), exc.http_status)
        except I2FError as exc:
            status = exc.http_status
            return _error("QUEUE_FULL" if status == 503 else "INVALID_REQUEST", str(exc), status)

    return routes
