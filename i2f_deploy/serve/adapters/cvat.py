"""CVAT interactor: ``POST /cvat/interactor`` (and the nuclio handler in ``i2f_deploy/serve/cvat``).

Request and answer from cvat-ai/cvat: ``cvat/apps/lambda_manager/views.py`` (an interactor gets
``{image: base64 frame, pos_points: [[x, y], ...], neg_points: [...], obj_bbox}``) and the
interactor functions ``serverless/pytorch/saic-vul/hrnet/nuclio/main.py`` and
``model_handler.py`` (``threshold`` optional; the answer ``{"points": the largest outer polygon,
"mask": rows of the full-size mask}``), deployed by a ``function.yaml`` like
``serverless/pytorch/facebookresearch/sam/nuclio/function.yaml``.

CVAT re-sends the frame and all points on every click. The frame's content hash finds its
features, so only the first click of a frame runs the encoder. The points come as two lists,
without their order: the order is recovered from the sequence this adapter decoded last for that
frame (the points it already had, in their order, then the new ones, positives first), which is
exactly the user's order when points are added or removed one at a time.
"""

from __future__ import annotations

import json
import threading
from collections import Counter, OrderedDict
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel, Field

from i2f_deploy.errors import InputError
from i2f_deploy.prompt_map import Click
from i2f_deploy.runtime.polygons import polygons
from i2f_deploy.serve import masks
from i2f_deploy.serve.adapters.common import check_count, pair, to_click
from i2f_deploy.serve.core import ServingEngine
from i2f_deploy.serve.images import decode_base64

KEPT_SEQUENCES = 256  # frames whose last click order is remembered


class InteractorRequest(BaseModel):
    image: str = Field(description="The frame as base64 (CVAT sends the image file's bytes).")
    pos_points: list[Any] = Field(default_factory=list, description="[[x, y], ...] positive points, image pixels.")
    neg_points: list[Any] = Field(default_factory=list, description="[[x, y], ...] negative points, image pixels.")
    obj_bbox: Any = Field(None, description="Ignored: Inter2Former takes clicks only.")
    threshold: Any = Field(None, description="Ignored: the mask is the model's logits > 0.")


class ClickOrder:
    """The last click sequence per frame, to order CVAT's unordered point lists."""

    def __init__(self) -> None:
        self._last: OrderedDict[str, tuple[Click, ...]] = OrderedDict()
        self._lock = threading.Lock()

    def order(self, image_id: str, clicks: list[Click]) -> list[Click]:
        """The longest prefix of the last sequence still present, then the other clicks in the
        order given (linear in the number of clicks)."""
        with self._lock:
            previous = self._last.get(image_id, ())
        available = Counter(clicks)
        ordered = []
        for click in previous:
            if not available[click]:
                break
            available[click] -= 1
            ordered.append(click)
        used = Counter(ordered)
        for click in clicks:  # the rest, skipping as many copies of each as the prefix took
            if used[click]:
                used[click] -= 1
            else:
                ordered.append(click)
        with self._lock:
            self._last[image_id] = tuple(ordered)
            self._last.move_to_end(image_id)
            while len(self._last) > KEPT_SEQUENCES:
                self._last.popitem(last=False)
        return ordered


def interact(engine: ServingEngine, order: ClickOrder, request: InteractorRequest) -> bytes:
    """One interactor call -> the JSON of ``{"points": [[x, y], ...], "mask": [[0|1, ...], ...]}``
    (the mask written straight from the array: ``masks.rows_json``)."""
    count = len(request.pos_points) + len(request.neg_points)
    check_count(count, engine.config.max_clicks)
    if not count:
        raise InputError("no points: give at least one positive or negative point")
    rgb = decode_base64(request.image, engine.config.max_pixels, engine.memory)
    image_id = engine.add_image(rgb).image_id
    height, width = rgb.shape[:2]
    del rgb  # the store holds the pixels until the encoder has run
    clicks = [to_click(*pair(p), True, width, height) for p in request.pos_points]
    clicks += [to_click(*pair(p), False, width, height) for p in request.neg_points]
    result = engine.segment(image_id, order.order(image_id, clicks))
    assert result.mask is not None
    found = polygons(result.mask)
    points = max(found, key=len).tolist() if found else []
    return masks.rows_json(result.mask, b'{"points": ' + json.dumps(points).encode() + b', "mask": ', b"}")


def router(engine: ServingEngine) -> APIRouter:
    routes = APIRouter(prefix="/cvat", tags=["CVAT"])
    order = ClickOrder()

    @routes.post("/interactor", response_class=Response,
                 responses={200: {"content": {"application/json": {"example": {"points": [[0, 0]], "mask": [[1]]}}}}})
    def interactor(request: InteractorRequest) -> Response:
        """CVAT's interactor call, as its nuclio functions receive it."""
        return Response(interact(engine, order, request), media_type="application/json")

    return routes
