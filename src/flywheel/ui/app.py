"""`flywheel ui`: the web application, read-only, server-rendered (aiohttp and Jinja2).

Each request renders a page from `Views` in a worker thread (the store's reads block) and
says how long that took in a `Server-Timing` header. A store that cannot be read is a 503
page naming the problem; a page that names what the store does not hold is a 404.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

import jinja2
from aiohttp import web

from flywheel.errors import FlywheelError
from flywheel.ui.views import NotFound, Views

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
VIEWS: web.AppKey[Views] = web.AppKey("views", Views)
TEMPLATES: web.AppKey[jinja2.Environment] = web.AppKey("templates", jinja2.Environment)
# A live rollout page asks for its fragment this often (milliseconds).
POLL_MS = 2000


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "–" if value is None else str(value)
    return f"{value:.4f}" if isinstance(value, float) else f"{value:,}"


def environment() -> jinja2.Environment:
    """The templates, autoescaped."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("flywheel.ui", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["number"] = _number
    env.globals["poll_ms"] = POLL_MS
    return env


def _page(request: web.Request) -> int:
    raw = request.query.get("page", "1")
    try:
        return int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"page must be a number, not {raw!r}") from None


def _window(request: web.Request) -> str:
    window = request.query.get("window", "day")
    if window not in ("day", "hour"):
        raise web.HTTPBadRequest(text=f"window is day or hour, not {window!r}")
    return window


async def _render(
    request: web.Request, template: str, build: Callable[[Views], dict[str, Any]]
) -> web.Response:
    started = time.perf_counter()
    views = request.app[VIEWS]
    context = await asyncio.to_thread(build, views)
    body = (
        request.app[TEMPLATES]
        .get_template(template)
        .render(model=views.model, store=views.catalog.store.uri, path=request.path, **context)
    )
    took = (time.perf_counter() - started) * 1000
    return web.Response(
        text=body, content_type="text/html", headers={"Server-Timing": f"render;dur={took:.1f}"}
    )


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A store that is down, or a page that is not there, as a page of its own."""
    try:
        return await handler(request)
    except web.HTTPException as error:
        if error.status < 400 or request.path.startswith("/static/"):
            raise
        return _error_page(request, error.status, error.reason, error.text or error.reason)
    except NotFound as error:
        return _error_page(request, 404, "Not found", str(error))
    except FlywheelError as error:
        log.warning("%s: %s", request.path, error)
        return _error_page(request, 503, "The store cannot be read", str(error))
    except Exception as error:  # never a stack trace in the page
        log.exception("%s failed", request.path)
        return _error_page(request, 500, "The page failed", f"{type(error).__name__}: {error}")


def _error_page(request: web.Request, status: int, title: str, message: str) -> web.Response:
    views = request.app[VIEWS]
    body = (
        request.app[TEMPLATES]
        .get_template("error.html")
        .render(
            model=views.model,
            store=views.catalog.store.uri,
            path=request.path,
            status=status,
            title=title,
            message=message,
        )
    )
    return web.Response(text=body, status=status, content_type="text/html")


async def home(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/versions")


async def health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def _listing(template: str, page: Callable[[Views, int], Any]) -> Handler:
    """A list page: `page` of the views at the page the query names."""

    async def handler(request: web.Request) -> web.Response:
        number = _page(request)
        return await _render(request, template, lambda v: {"page": page(v, number)})

    return handler


async def version(request: web.Request) -> web.Response:
    name = request.match_info["version"]
    return await _render(request, "version.html", lambda v: v.version(name))


async def evaluation(request: web.Request) -> web.Response:
    name = request.match_info["version"]
    body = await asyncio.to_thread(request.app[VIEWS].evaluation, name)
    # The pipeline's own report: framed by the version's page, never able to script it.
    return web.Response(
        body=body,
        content_type="text/html",
        headers={
            "Content-Security-Policy": "sandbox; default-src 'none'; img-src data:; "
            "style-src 'unsafe-inline'"
        },
    )


async def diff(request: web.Request) -> web.Response:
    first, second = request.query.get("a"), request.query.get("b")
    if not first or not second:
        raise web.HTTPBadRequest(text="name two versions to compare: /diff?a=v1&b=v2")
    return await _render(request, "diff.html", lambda v: v.diff(first, second))


async def aliases(request: web.Request) -> web.Response:
    number = _page(request)
    return await _render(request, "aliases.html", lambda v: v.aliases(number))


async def rollout(request: web.Request) -> web.Response:
    rollout_id = request.match_info["rollout_id"]
    return await _render(request, "rollout.html", lambda v: v.rollout(rollout_id))


async def rollout_live(request: web.Request) -> web.Response:
    rollout_id = request.match_info["rollout_id"]
    return await _render(request, "rollout_live.html", lambda v: v.rollout(rollout_id))


async def monitoring(request: web.Request) -> web.Response:
    number = _page(request)
    name = request.query.get("version") or None
    window = _window(request)
    return await _render(request, "monitoring.html", lambda v: v.monitoring(name, window, number))


async def monitoring_plot(request: web.Request) -> web.Response:
    number = _page(request)
    version = request.query.get("version", "")
    window = _window(request)
    index = int(request.match_info["index"])
    started = time.perf_counter()
    views = request.app[VIEWS]
    body = await asyncio.to_thread(views.monitoring_figure, version, window, number, index)
    took = (time.perf_counter() - started) * 1000
    return web.Response(
        body=body,
        content_type="image/svg+xml",
        headers={"Server-Timing": f"render;dur={took:.1f}", "Cache-Control": "private, max-age=60"},
    )


async def compare_runs(request: web.Request) -> web.Response:
    first, second = request.query.get("a"), request.query.get("b")
    if not first or not second:
        raise web.HTTPBadRequest(text="name two runs to compare: /runs/compare?a=RUN&b=RUN")
    return await _render(request, "compare.html", lambda v: v.compare_runs(first, second))


def _import_matplotlib() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot


def application(views: Views) -> web.Application:
    """The UI over `views`."""
    app = web.Application(middlewares=[_errors])
    app[VIEWS] = views
    app[TEMPLATES] = environment()
    static = resources.files("flywheel.ui") / "static"
    app.router.add_get("/", home)
    app.router.add_get("/healthz", health)
    app.router.add_get("/versions", _listing("versions.html", Views.versions))
    app.router.add_get("/versions/{version}", version)
    app.router.add_get("/versions/{version}/evaluation.html", evaluation)
    app.router.add_get("/diff", diff)
    app.router.add_get("/aliases", aliases)
    app.router.add_get("/rollouts", _listing("rollouts.html", Views.rollouts))
    app.router.add_get("/rollouts/{rollout_id}", rollout)
    app.router.add_get("/rollouts/{rollout_id}/live", rollout_live)
    app.router.add_get("/triggers", _listing("triggers.html", Views.triggers))
    app.router.add_get("/monitoring", monitoring)
    app.router.add_get(r"/monitoring/plots/{index:\d+}.svg", monitoring_plot)
    app.router.add_get("/runs", _listing("runs.html", Views.runs))
    app.router.add_get("/runs/compare", compare_runs)
    app.router.add_static("/static/", str(static))

    async def warm(app: web.Application) -> None:
        # matplotlib takes seconds to import: do it before the first monitoring page asks.
        threading.Thread(target=_import_matplotlib, daemon=True).start()

    app.on_startup.append(warm)

    async def close(app: web.Application) -> None:
        app[VIEWS].catalog.close()

    app.on_cleanup.append(close)
    return app
