"""CVAT interactor as a nuclio function: ``init_context`` loads the engine once, ``handler`` answers
each call like ``POST /cvat/interactor`` of ``i2f-deploy serve``.

Follows cvat-ai/cvat ``serverless/pytorch/saic-vul/hrnet/nuclio/main.py`` (``init_context(context)``
keeps the model in ``context.user_data``; ``handler(context, event)`` reads ``event.body`` and
answers ``context.Response(body=json, content_type="application/json", status_code=...)``).
Settings come from the environment, as for ``i2f-deploy serve`` (``serve/config.py``):
``I2F_ARTIFACT_DIR`` (the export directory), ``I2F_BACKEND``, ``I2F_THREADS``, ``I2F_CACHE_MB``...
"""

from __future__ import annotations

import json
from typing import Any

from i2f_deploy.errors import I2FError
from i2f_deploy.serve.adapters.cvat import ClickOrder, InteractorRequest, interact
from i2f_deploy.serve.config import serve_config
from i2f_deploy.serve.core import Engine
from i2f_deploy.serve.errors import headers_of


def init_context(context: Any) -> None:
    """Load the graphs once per nuclio worker."""
    context.user_data.engine = Engine(serve_config())
    context.user_data.order = ClickOrder()


def handler(context: Any, event: Any) -> Any:
    """One interactor call: ``{image, pos_points, neg_points}`` -> ``{points, mask}`` (4xx with a reason)."""
    body = event.body
    answer: bytes | str
    try:
        if isinstance(body, (bytes, str)):
            body = json.loads(body)
        request = InteractorRequest.model_validate(body)
        answer, status = interact(context.user_data.engine, context.user_data.order, request), 200
    except I2FError as exc:
        answer, status = json.dumps({"error": str(exc)}), exc.http_status
    except ValueError as exc:  # invalid JSON or fields (pydantic's ValidationError is a ValueError)
        answer, status = json.dumps({"error": f"invalid request: {exc}"}), 422
    return context.Response(body=answer, headers=headers_of(status) or {}, content_type="application/json",
                            status_code=status)
