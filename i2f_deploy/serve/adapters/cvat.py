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

import threading
from collections import OrderedDict
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from i2f_deploy.errors import InputError
from i2f_deploy.prompt_map import Click
from i2f_deploy.serve import masks
from i2f_deploy.serve.adapters.common import pair, to_click
from i2f_deploy.serve.core import Engine
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
        with self._lock:
            previous = self._last.get(image_id, ())
        remaining = list(clicks)
        ordered = []
        for click in previous:  # the longest prefix of the last sequence still present
            if click not in remaining:
                break
            remaining.remove(click)
            ordered.append(click)
        ordered += remaining
        with self._lock:
            self._last[image_id] = tuple(ordered)
            self._last.move_to_end(image_id)
            while len(self._last) > KEPT_SEQUENCES:
                self._last.popitem(last=False)
        return ordered


def interact(engine: Engine, order: ClickOrder, request: InteractorRequest) -> dict[str, Any]:
    """One interactor call -> ``{"points": [[x, y], ...], "mask": [[0|1, ...], ...]}``."""
    rgb = decode_base64(request.image, engine.config.max_pixels)
    image_id = engine.add_image(rgb).image_id
    height, width = rgb.shape[:2]
    clicks = [to_click(*pair(p), True, width, height) for p in request.pos_points]
    clicks += [to_click(*pair(p), False, width, height) for p in request.neg_points]
    if not clicks:
        raise InputError("no points: give at least one positive or negative point")
    result = engine.segment(image_id, order.order(image_id, clicks))
    assert result.mask is not None
    outlines = masks.polygons(result.mask)
    points = max(outlines, key=len) if outlines else []
    return {"points": points, "mask": result.mask.astype(int).tolist()}


def router(engine: Engine) -> APIRouter:
    routes = APIRouter(prefix="/cvat", tags=["CVAT"])
    order = ClickOrder()

    @routes.post("/interactor")
    def interactor(request: InteractorRequest) -> dict[str, Any]:
        """CVAT's interactor call, as its nuclio functions receive it."""
        return interact(engine, order, request)

    return routes
