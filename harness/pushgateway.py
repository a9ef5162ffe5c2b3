"""A loopback HTTP server that answers PUTs as a Prometheus Pushgateway does, and keeps them."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer


@dataclass
class Gateway:
    """Its URL, and each push as (path, content type, body)."""

    url: str
    received: list[tuple[str, str, bytes]] = field(default_factory=list)


@contextlib.contextmanager
def pushgateway() -> Iterator[Gateway]:
    """Accept every push, except a body containing b"refuse": 400 with "bad metric"."""
    gateway = Gateway(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            gateway.received.append((self.path, self.headers["Content-Type"], body))
            status = 400 if b"refuse" in body else 200
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"bad metric" if status == 400 else b"")

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    gateway.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield gateway
    finally:
        server.shutdown()
        server.server_close()
