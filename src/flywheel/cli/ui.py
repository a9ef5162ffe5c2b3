"""`flywheel ui`: serve the read-only web UI over the configured store."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Annotated

import typer

from flywheel.cli import options
from flywheel.cli.render import out

if TYPE_CHECKING:
    from aiohttp import web


def ui(
    ctx: typer.Context,
    host: Annotated[
        str,
        typer.Option(help="Address to bind: localhost by default; 0.0.0.0 in a pod."),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8080,
    refresh: Annotated[
        float,
        typer.Option(
            help="Seconds a listing of the store is kept before it is listed again "
            "(in the background: a page never waits on it).",
            min=0.1,
        ),
    ] = 2.0,
) -> None:
    """Serve a read-only web UI of the configured model: versions, alias history, rollouts,
    trigger decisions, monitoring and runs, until Ctrl-C or SIGTERM.

    It only reads the store: give it a read-only credential. A store that is down is shown
    as an error page (HTTP 503), and the UI comes back with the store.
    """
    # Imported here: every other command would load asyncio, aiohttp and the UI at start-up.
    import asyncio

    from flywheel.ui.app import application
    from flywheel.ui.catalog import Catalog
    from flywheel.ui.views import Views

    settings = options.settings(ctx)
    store = options.stores(ctx, settings).models
    views = Views(Catalog(store, ttl=refresh), settings.model_name)
    asyncio.run(_serve(application(views), host, port, store.uri))


async def _serve(app: web.Application, host: str, port: int, uri: str) -> None:
    import asyncio

    from aiohttp import web

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as error:
            reason = "is in use" if error.errno == errno.EADDRINUSE else f"failed: {error.strerror}"
            raise options.UsageFailure(
                f"cannot listen on {host}:{port}: the port {reason}"
            ) from None
        out.print(f"Flywheel UI of {uri} at http://{host}:{port}/ (Ctrl-C stops)", highlight=False)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
