"""The application on loopback: every page, its timing, its errors, and a live rollout."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from flywheel.registry import Registry
from flywheel.storage import LocalStore, S3Store
from flywheel.ui.app import application
from flywheel.ui.catalog import Catalog
from flywheel.ui.views import Views
from harness.loopstore import ROLLOUT, look, progressing

PAGES = (
    "/versions",
    "/versions/v2",
    "/versions/v1/evaluation.html",
    "/diff?a=v1&b=v2",
    "/aliases",
    "/rollouts",
    f"/rollouts/{ROLLOUT}",
    "/triggers",
    "/monitoring",
    "/monitoring/plots/0.svg?version=v1&window=day",
    "/runs",
    "/runs/compare?a=run-2&b=run-3",
)


def served(store: Any, check: Callable[[TestClient[Any, Any]], Awaitable[None]]) -> None:
    """Run `check` against the UI over `store`, served on loopback, on an event loop of its
    own thread (the test's thread may hold one already: Playwright's, say)."""

    async def main() -> None:
        app = application(Views(Catalog(store, ttl=0.1), "loan-default"))
        async with TestClient(TestServer(app)) as client:
            await check(client)

    failed: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as error:  # raised again in the test's thread
            failed.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=300)
    assert not thread.is_alive(), "the UI test did not finish in 300 s"
    if failed:
        raise failed[0]


def test_every_page_renders_and_says_how_long_it_took(loop_store: LocalStore) -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        for path in PAGES:
            response = await client.get(path)
            assert response.status == 200, (path, await response.text())
            if not path.endswith(".html"):
                assert response.headers["Server-Timing"].startswith("render;dur=")
            if "." not in path.split("?")[0]:
                assert "<h1>" in await response.text()
        assert (await client.get("/healthz")).status == 200
        home = await client.get("/", allow_redirects=False)
        assert home.status == 302 and home.headers["Location"] == "/versions"
        report = await client.get("/versions/v1/evaluation.html")
        assert "sandbox" in report.headers["Content-Security-Policy"]

    served(loop_store, check)


def test_what_is_not_there_is_a_404_and_a_bad_request_a_400(loop_store: LocalStore) -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        for path, status, said in [
            ("/versions/v9", 404, "has no version v9"),
            ("/rollouts/v2-5", 404, "has no rollout v2-5"),
            ("/runs/compare?a=run-2&b=nope", 404, "has no run nope"),
            ("/versions?page=two", 400, "page must be a number"),
            ("/diff?a=v1", 400, "name two versions"),
            ("/monitoring?window=week", 400, "window is day or hour"),
        ]:
            response = await client.get(path)
            text = await response.text()
            assert response.status == status and said in text, (path, text)
            assert "Traceback" not in text

    served(loop_store, check)


def test_a_store_that_is_down_is_a_503_page_naming_it() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    store = S3Store(
        "s3://models/flywheel",
        endpoint=f"127.0.0.1:{port}",
        access_key="k",
        secret_key="s",
        secure=False,
        region=None,
    )

    async def check(client: TestClient[Any, Any]) -> None:
        for path in ("/versions", "/aliases", "/monitoring"):
            response = await client.get(path)
            text = await response.text()
            assert response.status == 503, (path, text)
            assert "The store cannot be read" in text and "Traceback" not in text
        assert (await client.get("/healthz")).status == 200

    served(store, check)


def test_a_rollout_in_progress_shows_new_looks_in_its_live_fragment(
    loop_store: LocalStore,
) -> None:
    registry = Registry(loop_store, "loan-default")
    for name in loop_store.list("models/loan-default/versions/v2/records/"):
        if name.endswith("rollout-promoted.json"):
            loop_store.delete(name)  # the rollout has not ended yet
    loop_store.write(
        "rollouts/loan-default/00000001.json",
        progressing(1, 50).model_dump_json().encode(),
        create_only=True,
    )

    async def check(client: TestClient[Any, Any]) -> None:
        page = await (await client.get(f"/rollouts/{ROLLOUT}")).text()
        assert f'data-poll="/rollouts/{ROLLOUT}/live"' in page and "in progress" in page
        registry.add_record("v2", "rollout-look", look(4, 2, "pass"))
        live = await (await client.get(f"/rollouts/{ROLLOUT}/live")).text()
        assert '<span id="look-count">4</span>' in live and "<html" not in live

    served(loop_store, check)
