"""What every loopback fixture server shares: a threaded HTTP server on 127.0.0.1 and a free port,
start/stop (also as a context manager), and queues of injected faults per route."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar


class LoopbackServer:
    """Subclasses set ``handler`` (a request handler class that reads the server as ``self.app``)."""

    handler: ClassVar[type[BaseHTTPRequestHandler]]
    request_queue_size = 128

    def __init__(self) -> None:
        self._faults: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Any:
        handler = type("Handler", (self.handler,), {"app": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._httpd.request_queue_size = self.request_queue_size
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def inject(self, route: str, faults: Sequence[str]) -> None:
        """Queue faults (e.g. "429", "503", "hang") for the next requests to ``route``."""
        with self._lock:
            self._faults.setdefault(route, []).extend(faults)

    def next_fault(self, route: str) -> str | None:
        with self._lock:
            queue = self._faults.get(route)
            return queue.pop(0) if queue else None
