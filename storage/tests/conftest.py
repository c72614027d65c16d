"""Fixtures of the storage tests alone; the shared ones are in the root conftest."""

import http.server
import threading

import pytest

CONSOLE_PAGE = b"<html><body>MinIO Console</body></html>"


@pytest.fixture
def web_server():
    """``web_server(status, body, content_type)``: the ``host:port`` of a real
    web server on loopback that answers every request so, as MinIO's console
    port (9001) answers 200 with its page: what MINIO_ENDPOINT reaches when it
    names something that is not an S3 API."""
    servers = []

    def start(
        status: int = 200, body: bytes = CONSOLE_PAGE, content_type: str = "text/html"
    ) -> str:
        class Page(http.server.BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _answer

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
