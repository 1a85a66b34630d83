"""A web server on 127.0.0.1 for download tests: it serves given bytes under given paths, and can
announce a longer body than it sends (a download cut short). Nothing here reaches another host."""

from __future__ import annotations

import http.server
import threading
from contextlib import contextmanager
from typing import Iterator


class Files:
    """What the server serves: path -> (body, announced Content-Length); and the paths asked for."""

    def __init__(self) -> None:
        self.served: dict[str, tuple[bytes, int]] = {}
        self.requests: list[str] = []
        self.base = ""

    def add(self, path: str, body: bytes, announced: int | None = None) -> str:
        """Serve ``body`` at ``path`` (announcing ``announced`` bytes); returns its URL."""
        self.served[path] = (body, len(body) if announced is None else announced)
        return self.base + path


@contextmanager
def weights_server() -> Iterator[Files]:
    files = Files()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            files.requests.append(self.path)
            if self.path not in files.served:
                self.send_error(404, "no such file")
                return
            body, announced = files.served[self.path]
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(announced))
            self.end_headers()
            self.wfile.write(body)  # HTTP/1.0: the connection closes after it, short or not

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    files.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield files
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
