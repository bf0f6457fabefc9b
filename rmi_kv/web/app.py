"""The Starlette application of the web view: the page, its live feed, its actions.

    GET  /                the page (static/index.html)
    GET  /static/...      its script and style sheet
    GET  /events          server-sent events: first a ``hello`` (the cluster now, the recent
                          history, whether there are controls), then every update of the view
    POST /action/{name}   one control of an embedded cluster, a JSON form in, a JSON result out
                          (404 when attached to a cluster: the page then shows no controls;
                          a refused action is a 200 whose ``ok`` is false and whose message says why)
"""
from __future__ import annotations

import asyncio
import json
from importlib import resources
from typing import AsyncIterator, Callable, Optional

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from rmi_kv.web.controls import Controls
from rmi_kv.web.view import ClusterView

#: a comment line on an idle stream this often, so that a page notices a dead server (and proxies keep it open)
KEEPALIVE = 10.0
#: how often an idle stream looks whether the server is stopping (well within its graceful shutdown)
STOP_CHECK = 0.25
#: updates one slow page may fall behind by before its oldest are dropped
QUEUE_LIMIT = 5000


def static_dir() -> str:
    """The folder of the page's files, inside the installed package."""
    return str(resources.files("rmi_kv.web") / "static")


def make_app(view: ClusterView, controls: Optional[Controls], *, title: str,
             stopping: Callable[[], bool] = lambda: False) -> Starlette:
    """The application over ``view``; ``controls`` None: a cluster this process did not start (no controls).
    ``stopping()`` turns true when the server stops: the live streams then end by themselves."""

    async def page(_request: Request) -> Response:
        return FileResponse(f"{static_dir()}/index.html", headers={"Cache-Control": "no-store"})

    async def events(request: Request) -> Response:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        def deliver(update: dict) -> None:
            def put() -> None:
                if queue.qsize() >= QUEUE_LIMIT:
                    queue.get_nowait()
                queue.put_nowait(update)
            loop.call_soon_threadsafe(put)

        unsubscribe = view.subscribe(deliver)
        hello = {**view.snapshot(), "title": title, "controls": controls.describe() if controls else None}

        async def stream() -> AsyncIterator[str]:
            try:
                yield _sse(hello)
                idle = 0.0
                while not stopping():
                    try:
                        update = await asyncio.wait_for(queue.get(), STOP_CHECK)
                    except asyncio.TimeoutError:
                        idle += STOP_CHECK
                        if idle >= KEEPALIVE:
                            idle = 0.0
                            if await request.is_disconnected():
                                return
                            yield ": keep-alive\n\n"
                        continue
                    idle = 0.0
                    yield _sse(update)
            finally:
                unsubscribe()

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def act(request: Request) -> Response:
        if controls is None:
            return JSONResponse({"ok": False, "error": "NoControls",
                                 "message": "this view is attached to a cluster it did not start: no controls"},
                                status_code=404)
        refusal = _cross_site(request)
        if refusal is not None:  # another site's page must not crash a classroom's replicas
            return JSONResponse({"ok": False, "error": "InvalidRequest", "message": refusal}, status_code=403)
        try:
            form = await request.json()
        except ValueError:
            form = None
        if not isinstance(form, dict):
            return JSONResponse({"ok": False, "error": "InvalidRequest",
                                 "message": "an action takes a JSON object of its fields"}, status_code=400)
        name = request.path_params["name"]
        result = await asyncio.get_running_loop().run_in_executor(None, controls.run, name, form)
        return JSONResponse(result.as_dict())  # a refusal is an answer too: the page shows its message

    routes = [Route("/", page), Route("/events", events), Route("/action/{name}", act, methods=["POST"]),
              Mount("/static", StaticFiles(directory=static_dir()), name="static")]
    return Starlette(routes=routes)


def _cross_site(request: Request) -> Optional[str]:
    """Why an action may come from another site's page, or None. A JSON body
    is never sent across sites without the browser asking first (which this
    server does not answer), and a browser names the page's origin."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        return "an action is a JSON object sent with Content-Type: application/json"
    origin = request.headers.get("origin")
    if origin is not None and origin.split("://", 1)[-1] != request.headers.get("host"):
        return f"an action from a page of another site ({origin}) is refused"
    return None


def _sse(update: dict) -> str:
    """One server-sent event carrying ``update`` as JSON."""
    return f"data: {json.dumps(update, separators=(',', ':'), default=str)}\n\n"
