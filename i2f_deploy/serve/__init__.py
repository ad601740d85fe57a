"""``i2f-deploy serve``: the exported graphs behind an HTTP server, a web page and the adapters
annotation tools call (Label Studio, X-AnyLabeling, CVAT). Needs no torch: numpy, OpenCV, one
graph backend and the ``serve`` extra (FastAPI, uvicorn).

Modules, one job each: ``config`` (every limit), ``images`` (bytes/base64/URLs -> pixels and
content ids), ``store`` (the feature cache), ``states`` (click sequences already decoded),
``gate`` (graph runs at once), ``core`` (the engine), ``sessions``, ``masks`` (PNG, RLE,
polygons), ``errors`` (HTTP statuses, body limit), ``api`` (the app), ``adapters/``, ``server``
(uvicorn), ``ray_app`` (the same app on a Ray cluster, ``serve --ray``), ``loadtest``.
"""
