"""Label Studio ML backend: ``POST /predict``, ``POST /setup``, ``POST /webhook`` (``GET /health`` is the server's).

Request and answer shapes from HumanSignal/label-studio-ml-backend: ``label_studio_ml/api.py``
(``/predict`` takes ``{tasks, label_config, project, params: {login, password, context}}`` and
answers ``{"results": [...]}``; ``/setup`` takes ``{project, schema, extra_params}`` and answers
``{"model_version"}``; ``/health`` answers ``{"status": "UP", "model_class"}``) and
``label_studio_ml/examples/segment_anything_model/model.py`` (the interactive context: smart
``keypointlabels`` results with ``value.x``/``value.y`` in percent of ``original_width``/
``original_height`` and ``is_positive``; the answer: a ``brushlabels`` result with
``value: {format: "rle", rle, brushlabels: [label]}``).

Each request carries every keypoint of the object so far, in order; the click states make the
request after a new keypoint one decoder run. The answer holds a ``brushlabels`` result (if the
labeling config has a BrushLabels tag) and a ``polygonlabels`` one per outer contour (if it has a
PolygonLabels tag), points in percent. A keypoint without ``is_positive`` counts as positive (Label
Studio sets it false for negative keypoints). Any other region in the context (a smart rectangle)
gets 422: the model takes clicks.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ElementTree
from typing import Any

from fastapi import APIRouter, Body

from i2f_deploy.errors import InputError
from i2f_deploy.runtime.polygons import polygons
from i2f_deploy.serve.adapters.brush_rle import mask_to_rle
from i2f_deploy.serve.adapters.common import check_count, refuse_prompts, to_click
from i2f_deploy.serve.config import MB
from i2f_deploy.serve.core import ImageInfo, ServingEngine
from i2f_deploy.serve.fetch import Fetcher
from i2f_deploy.serve.images import decode_base64, decode_image
from i2f_deploy.serve.pools import WorkPool

OUTPUT_TAGS = ("BrushLabels", "PolygonLabels")


def _tags(label_config: Any) -> tuple[dict[str, tuple[str, str]], str | None]:
    """({"BrushLabels": from_name, "PolygonLabels": ...}, the Image tag's data key)."""
    if not isinstance(label_config, str) or not label_config.strip():
        raise InputError("label_config is missing: Label Studio sends the project's labeling config with /predict")
    try:
        root = ElementTree.fromstring(label_config)
    except ElementTree.ParseError as exc:
        raise InputError(f"label_config is not valid XML: {exc}") from None
    outputs: dict[str, tuple[str, str]] = {}
    for tag in OUTPUT_TAGS:
        found = next(iter(root.iter(tag)), None)
        name, to_name = (found.get("name"), found.get("toName")) if found is not None else (None, None)
        if name and to_name:
            outputs[tag] = name, to_name
    if not outputs:
        raise InputError("the labeling config has no BrushLabels or PolygonLabels tag to put the mask in")
    image = next(iter(root.iter("Image")), None)
    key = (image.get("value") or "").lstrip("$") if image is not None else None
    return outputs, key or None


def _image_ref(task: Any, key: str | None) -> str:
    data = task.get("data") if isinstance(task, dict) else None
    if not isinstance(data, dict) or not data:
        raise InputError("the task has no data")
    ref = data.get(key) if key else next(iter(data.values()))
    if not isinstance(ref, str) or not ref:
        raise InputError(f"the task's data has no image under {key!r}")
    return ref


def _load(engine: ServingEngine, fetcher: Fetcher, ref: str) -> ImageInfo:
    max_pixels = engine.config.max_pixels
    rgb = (decode_base64(ref, max_pixels, engine.memory) if ref.startswith("data:")
           else decode_image(fetcher.get(ref), max_pixels, engine.memory))
    return engine.add_image(rgb)


def fetcher_for(engine: ServingEngine) -> Fetcher:
    """The task-image fetcher of the server's settings (a bad prefix is refused at start)."""
    config = engine.config
    return Fetcher(config.label_studio_url, config.label_studio_api_key, config.allow_url_prefixes,
                   config.fetch_timeout_s, config.fetch_max_mb * MB)


def predict(engine: ServingEngine, fetcher: Fetcher, body: dict[str, Any]) -> dict[str, Any]:
    """One Label Studio /predict request -> its ``{"results": [...]}``."""
    params = body.get("params") or {}
    context = (params.get("context") if isinstance(params, dict) else None) or body.get("context") or {}
    given = context.get("result") if isinstance(context, dict) else None
    given = [r for r in given if isinstance(r, dict)] if isinstance(given, list) else []
    refuse_prompts({str(r.get("type")) for r in given} - {"keypointlabels"},
                   "click the object with a smart KeyPointLabels tool (Alt+click for a negative click)")
    points = [r for r in given if r.get("type") == "keypointlabels"]
    tasks = body.get("tasks")
    tasks = tasks if isinstance(tasks, list) else []
    if not points or not tasks:
        return {"results": []}  # no interaction yet (e.g. pre-annotation when a task opens)
    check_count(len(points), engine.config.max_clicks)
    outputs, key = _tags(body.get("label_config"))
    image = _load(engine, fetcher, _image_ref(tasks[0], key))
    image_id, width, height = image.image_id, image.width, image.height
    clicks, label = [], None
    for point in points:
        value = point.get("value") or {}
        try:
            x, y = float(value["x"]) * width / 100, float(value["y"]) * height / 100
        except (KeyError, TypeError, ValueError, OverflowError):
            raise InputError(f"keypoint {point.get('id')!r} has no numeric value.x and value.y (percent)") from None
        clicks.append(to_click(x, y, bool(point.get("is_positive", True)), width, height))
        names = value.get("keypointlabels")
        label = names[0] if isinstance(names, list) and names and isinstance(names[0], str) else label
    result = engine.segment(image_id, clicks)
    assert result.mask is not None
    common = {"original_width": width, "original_height": height, "image_rotation": 0, "readonly": False}
    labels = [label] if label else []
    results = []
    if "BrushLabels" in outputs:
        from_name, to_name = outputs["BrushLabels"]
        results.append({**common, "id": uuid.uuid4().hex[:10], "from_name": from_name, "to_name": to_name,
                        "type": "brushlabels", "value": {"format": "rle", "rle": mask_to_rle(result.mask),
                                                         "brushlabels": labels}})
    if "PolygonLabels" in outputs:
        from_name, to_name = outputs["PolygonLabels"]
        for polygon in polygons(result.mask):
            percent = [[100 * x / width, 100 * y / height] for x, y in polygon.tolist()]
            results.append({**common, "id": uuid.uuid4().hex[:10], "from_name": from_name, "to_name": to_name,
                            "type": "polygonlabels", "value": {"points": percent, "closed": True,
                                                               "polygonlabels": labels}})
    return {"results": [{"result": results, "score": 1.0, "model_version": model_version(engine)}]}


def model_version(engine: ServingEngine) -> str:
    return f"i2f-deploy-{engine.model_name}"


def router(engine: ServingEngine) -> APIRouter:
    routes = APIRouter(tags=["Label Studio"])
    fetcher = fetcher_for(engine)
    pool = WorkPool("Label Studio /predict (each fetches its task image)", engine.config.fetch_workers,
                    engine.config.fetch_timeout_s)

    @routes.post("/predict")
    async def predict_route(body: dict[str, Any] = Body(
        description="Label Studio's /predict request: tasks, label_config, params.context."),
    ) -> dict[str, Any]:
        """Label Studio ML backend prediction for the interactive (smart keypoint) context, on
        threads of its own (``pools.WorkPool``: slow task image servers hold only those)."""
        return await pool.run(predict, engine, fetcher, body)

    @routes.post("/setup", max_body_size=engine.config.max_json_kb * 1024)
    def setup(body: dict[str, Any] = Body(default={}, description="Label Studio's /setup request: project, schema.")) -> dict[str, str]:
        """Label Studio's connection check: the model version."""
        return {"model_version": model_version(engine)}

    @routes.post("/webhook")
    def webhook() -> dict[str, str]:
        """Label Studio's events (it registers this URL for every ML backend it connects): acknowledged
        unread, as this backend does not train."""
        return {"status": "ok"}

    return routes
