"""A loopback TCP proxy in front of an HTTP/1.1 server that can lose a response, as a flaky network does.

The proxy forwards bytes both ways between each client connection and its own
connection to the server. When a rule is armed, the next request whose head
matches is forwarded, the proxy waits until the server starts to answer (so the
request has taken effect), then closes the client's connection without passing
the answer on. The client sees a dropped connection and, if it retries, sends the
same request again.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


@dataclass
class _Rule:
    matches: Callable[[bytes], bool]
    before: Callable[[], None] | None


@dataclass
class _Connection:
    client: socket.socket
    server: socket.socket
    losing: bool = False
    threads: list[threading.Thread] = field(default_factory=list)

    def close(self) -> None:
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class LossyProxy:
    """`with LossyProxy("127.0.0.1:8333") as proxy:` clients use `proxy.endpoint` instead."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.rsplit(":", 1)
        self.upstream = (host, int(port))
        self.heads: list[bytes] = []  # every request head forwarded, in order
        self.lost: list[bytes] = []  # the heads of requests whose response was lost
        self._rule: _Rule | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: list[_Connection] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.endpoint = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._acceptor = threading.Thread(target=self._accept, name="proxy-accept", daemon=True)

    def lose_response(
        self, matches: Callable[[bytes], bool], before: Callable[[], None] | None = None
    ) -> None:
        """Lose the response to the next request whose head `matches`; `before` runs just
        before that request is forwarded (to let a rival act at exactly that moment)."""
        with self._lock:
            self._rule = _Rule(matches, before)

    def __enter__(self) -> LossyProxy:
        self._acceptor.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stopping.set()
        self._acceptor.join(5)
        self._listener.close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            connection.close()
            for thread in connection.threads:
                thread.join(5)

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            connection = _Connection(client, server)
            connection.threads = [
                threading.Thread(target=self._requests, args=(connection,), daemon=True),
                threading.Thread(target=self._responses, args=(connection,), daemon=True),
            ]
            with self._lock:
                self._connections.append(connection)
            for thread in connection.threads:
                thread.start()

    def _requests(self, connection: _Connection) -> None:
        """Client to server, one request at a time (head, then a Content-Length body)."""
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = connection.client.recv(65536)
                    if not chunk:
                        connection.server.shutdown(socket.SHUT_WR)
                        return
                    buffer += chunk
                end = buffer.index(b"\r\n\r\n") + 4
                head = buffer[:end]
                length = _CONTENT_LENGTH.search(head)
                size = end + (int(length.group(1)) if length else 0)
                while len(buffer) < size:
                    chunk = connection.client.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                request, buffer = buffer[:size], buffer[size:]
                with self._lock:
                    self.heads.append(head)
                    rule = self._rule
                    if rule is not None and rule.matches(head):
                        self._rule = None
                        connection.losing = True
                        self.lost.append(head)
                    else:
                        rule = None
                if rule is not None and rule.before is not None:
                    rule.before()
                connection.server.sendall(request)
        except OSError:
            return

    def _responses(self, connection: _Connection) -> None:
        """Server to client; the first bytes of a response to be lost close the client instead."""
        try:
            while True:
                chunk = connection.server.recv(65536)
                if not chunk or connection.losing:
                    connection.close()
                    return
                connection.client.sendall(chunk)
        except OSError:
            connection.close()
