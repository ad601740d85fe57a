"""``i2f-deploy serve``: the exported graphs behind an HTTP server, a web page and the adapters
annotation tools call (Label Studio, X-AnyLabeling, CVAT). Needs no torch: numpy, OpenCV, one
graph backend and the ``serve`` extra (FastAPI, uvicorn).

Modules, one job each: ``config`` (every limit), ``images`` (bytes/base64/URLs -> pixels and
content ids), ``fetch`` (task images by URL) and ``watchdog`` (its deadline), ``store`` (the
feature cache), ``states`` (click sequences already decoded), ``gate`` (graph runs at once),
``budget`` (memory of images in flight), ``pools`` (threads of their own for slow routes),
``core`` (the engine), ``sessions``, ``masks`` (PNG, RLE, polygons, CVAT's rows), ``errors``
(HTTP statuses, body limit), ``api`` (the app), ``adapters/``, ``listen`` (the socket, header
deadline), ``server`` (uvicorn), ``ray_app`` (the same app on a Ray cluster, ``serve --ray``).
Its load test is ``i2f-deploy loadtest`` (``i2f_deploy/loadtest.py``).
"""
