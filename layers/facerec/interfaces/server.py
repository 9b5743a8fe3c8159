"""``facerec serve``: the API on localhost with the same requests and responses as API
Gateway's (docs/openapi.yaml): ``POST /identify`` and ``DELETE /people/{name}``, over the
embedded default. Rekognition is absent here and the answer says so plainly; it is never
faked.

One request at a time (the models and the SQLite catalog are not shared across threads).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

from facerec.interfaces.http import (
    MAX_BODY_BYTES,
    ApiError,
    IdentifyService,
    handle_forget,
    handle_identify,
    parse_body,
)
from facerec.interfaces.local import LocalDeployment

ROUTES = "the routes are POST /identify and DELETE /people/{name}"
OPENAPI = Path(__file__).resolve().parents[3] / "docs" / "openapi.yaml"
log = logging.getLogger(__name__)


class IdentifyHandler(BaseHTTPRequestHandler):
    server_version = "facerec"
    # Set on the subclass that make_server builds.
    service: IdentifyService
    forget: Callable[[str], dict]

    def do_POST(self) -> None:
        if self.path.split("?")[0].rstrip("/") != "/identify":
            self._send(404, {"code": "not_found", "message": ROUTES})
            return
        length = self.headers.get("Content-Length")
        try:
            if length is None or not length.isdigit():
                raise ApiError(411, "length_required", "send a Content-Length header")
            if int(length) > MAX_BODY_BYTES:
                raise ApiError(413, "image_too_large", f"the body is over {MAX_BODY_BYTES} bytes")
            body = parse_body(self.rfile.read(int(length)))
        except ApiError as error:
            self.close_connection = True
            self._send(error.status, error.body())
            return
        status, answer = handle_identify(body, self.service)
        self._send(status, answer)

    def do_DELETE(self) -> None:
        path = self.path.split("?")[0]
        prefix = "/people/"
        if not path.startswith(prefix) or "/" in path[len(prefix) :].rstrip("/"):
            self._send(404, {"code": "not_found", "message": ROUTES})
            return
        self._send(*handle_forget(path[len(prefix) :].rstrip("/"), self.forget))

    def do_GET(self) -> None:
        if self.path == "/openapi.yaml" and OPENAPI.is_file():
            data = OPENAPI.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/yaml")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self._send(405, {"code": "method_not_allowed", "message": ROUTES})

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:
        log.info("%s %s", self.command, format % args)


def make_server(local: LocalDeployment, host: str = "127.0.0.1", port: int = 8080):
    """An HTTPServer over ``local`` bound to ``host:port`` (port 0 picks a free one); not
    yet serving."""
    bound = {"service": local.identify_service(), "forget": staticmethod(local.forget)}
    return HTTPServer((host, port), type("BoundIdentifyHandler", (IdentifyHandler,), bound))


def serve(local: LocalDeployment, host: str = "127.0.0.1", port: int = 8080) -> int:
    """Serve until interrupted; returns the CLI's exit code."""
    server = make_server(local, host, port)
    address, bound = server.server_address[:2]
    print(f"POST http://{address}:{bound}/identify  (contract: GET /openapi.yaml; Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
