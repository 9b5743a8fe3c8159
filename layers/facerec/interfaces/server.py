"""``facerec serve``: the API on a local machine with the same requests and responses as API
Gateway's (docs/openapi.yaml), over the embedded default: ``POST /identify``,
``DELETE /people/{name}`` (202: the forget is queued) and ``GET /forgets/{forget_id}`` (its
status). Rekognition is absent here and the answer says so plainly; it is never faked.

Fit to be left running: waitress reads every request whole in its asynchronous front end
(closing a connection silent for ``read_timeout`` seconds, refusing a body over
``MAX_BODY_BYTES`` from its Content-Length) before one of ``threads`` workers runs it, so an
idle or slow client holds no worker. Each worker has its own LocalDeployment (its own SQLite
connection and model caches) over the one shared analyser: TensorFlow runs concurrent
inferences safely and, on 2 cores, several at a time answer more requests per second than one
(the worker counts compared in bench/LOAD.md). Forgets run one at a time on a background
thread with their own deployment, while identify is served.

Every request is checked in this order: its Host header against an allow-list (a web page
that rebinds its DNS name to 127.0.0.1 is refused), then the bearer token in
``<workspace>/serve-token`` (but ``GET /openapi.yaml``, the contract), then the route, the
content type and the body. Every answer is JSON with a ``code``, even waitress's own refusals
(a malformed request, a body over the limit).
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import json
import logging
import os
import queue
import secrets
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from http import HTTPStatus
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, create_server
from waitress.task import ErrorTask

from facerec.core.errors import FaceRecError, ImageTooLarge
from facerec.interfaces.http import (
    MAX_BODY_BYTES,
    ApiError,
    forget_accepted,
    forget_request,
    forget_status,
    handle_identify,
    new_forget_id,
    parse_body,
    valid_forget_id,
)
from facerec.interfaces.local import LocalDeployment

OPENAPI = Path(__file__).resolve().parents[3] / "docs" / "openapi.yaml"
TOKEN_FILE = "serve-token"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
READ_TIMEOUT = 30  # seconds a connection may stay silent: idle, or a request half sent
BACKLOG = 1024  # connections the kernel queues while waitress is at its connection limit
KEPT_FORGETS = 1000  # finished forgets whose status stays readable
ROUTES = (
    "the routes are POST /identify, DELETE /people/{name}, GET /forgets/{forget_id} and "
    "GET /openapi.yaml"
)
INTERNAL_ERROR = {"code": "internal_error", "message": "the server failed; its log says why"}
log = logging.getLogger(__name__)

Deployment = Callable[[], LocalDeployment]


class ServeRefused(FaceRecError):
    """``facerec serve`` will not start as asked (an unsafe bind, an unusable token file)."""

    code = "serve_refused"


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is loopback."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, auth: bool) -> None:
    """ServeRefused for serving without authentication on an address other machines reach."""
    if not auth and not is_loopback(host):
        raise ServeRefused(
            f"--no-auth is allowed only on a loopback address (127.0.0.1, ::1, localhost), "
            f"not {host!r}: other machines could call the API; serve with the token instead"
        )


def ensure_token(workspace: Path) -> tuple[Path, str]:
    """The bearer token in ``workspace/serve-token``: created on first use (256 random bits,
    mode 0600); ServeRefused when the file is not a regular file that only its owner reads."""
    path = workspace / TOKEN_FILE
    workspace.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_urlsafe(32) + "\n")
    mode = os.lstat(path).st_mode
    if not stat.S_ISREG(mode) or mode & 0o077:
        raise ServeRefused(
            f"{path} must be a regular file only its owner can read (chmod 600 it, or delete "
            "it for a new token)"
        )
    token = path.read_text(encoding="ascii").strip()
    if len(token) < 32:
        raise ServeRefused(f"{path} holds no token of at least 32 characters; delete it")
    return path, token


class ForgetQueue:
    """Forgets run one at a time, in the order asked, on one background thread. Each has a
    status (RUNNING, then SUCCEEDED with what was ``deleted`` or FAILED with an ``error``);
    the latest KEPT_FORGETS finished ones stay readable."""

    def __init__(self, forget: Callable[[str], dict]):
        self._forget = forget
        self._jobs: OrderedDict[str, dict] = OrderedDict()
        self._lock = threading.Lock()
        self._pending: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="facerec-forget", daemon=True)
        self._thread.start()

    def submit(self, person: str) -> str:
        """Queue forgetting ``person`` (a valid name) -> the forget's id."""
        forget_id = new_forget_id()
        with self._lock:
            self._jobs[forget_id] = {"forget_id": forget_id, "person": person, "status": "RUNNING"}
            finished = [key for key, kept in self._jobs.items() if kept["status"] != "RUNNING"]
            for key in finished[: max(0, len(finished) - KEPT_FORGETS)]:
                del self._jobs[key]
        self._pending.put(forget_id)
        return forget_id

    def status(self, forget_id: str) -> dict | None:
        """The body of ``GET /forgets/{forget_id}`` (http.forget_status); None when unknown."""
        with self._lock:
            job = self._jobs.get(forget_id)
            return forget_status(**job) if job else None

    def close(self, timeout: float) -> None:
        """Stop after the forget under way (pending ones are dropped); wait ``timeout`` s."""
        with contextlib.suppress(queue.Empty):
            while True:
                self._pending.get_nowait()
        self._pending.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while (forget_id := self._pending.get()) is not None:
            with self._lock:
                person = self._jobs[forget_id]["person"]
            try:
                outcome = {"status": "SUCCEEDED", "deleted": self._forget(person)}
            except FaceRecError as error:
                outcome = {"status": "FAILED", "error": {"code": error.code, "message": str(error)}}
            except Exception:  # the worker must outlive any one forget
                log.exception("forgetting %r failed", person)
                outcome = {"status": "FAILED", "error": INTERNAL_ERROR}
            with self._lock:
                self._jobs[forget_id].update(outcome)


class Reply(NamedTuple):
    status: int
    body: dict | bytes
    headers: tuple[tuple[str, str], ...] = ()


class Api:
    """The WSGI application: checks, routes and answers one request on a worker thread."""

    def __init__(
        self,
        deployment: Deployment,
        forgets: ForgetQueue,
        token: str | None,
        allowed_hosts: Iterable[str],
    ):
        self._deployment, self._forgets = deployment, forgets
        self._token = token.encode("ascii") if token is not None else None
        self._allowed = {name.strip("[]").lower() for name in (*LOOPBACK_NAMES, *allowed_hosts)}
        self._per_thread = threading.local()

    def __call__(self, environ: dict, start_response) -> list[bytes]:
        started = time.perf_counter()
        try:
            reply = self._answer(environ)
        except ApiError as error:
            unauthorised = (("WWW-Authenticate", "Bearer"),) if error.status == 401 else ()
            reply = Reply(error.status, error.body(), unauthorised)
        except Exception:  # our fault: a 500 in the contract's shape, never a dropped socket
            log.exception("%s %s failed", environ["REQUEST_METHOD"], environ["PATH_INFO"])
            reply = Reply(500, INTERNAL_ERROR)
        body, kind = (
            (reply.body, "application/yaml")
            if isinstance(reply.body, bytes)
            else (json.dumps(reply.body, ensure_ascii=False).encode(), "application/json")
        )
        start_response(
            f"{reply.status} {HTTPStatus(reply.status).phrase}",
            [("Content-Type", kind), ("Content-Length", str(len(body))), *reply.headers],
        )
        log.info(
            "%s %s %d %.0f ms",
            environ["REQUEST_METHOD"],
            environ["PATH_INFO"][:200],
            reply.status,
            (time.perf_counter() - started) * 1000,
        )
        return [body]

    def _answer(self, environ: dict) -> Reply:
        self._check_host(environ.get("HTTP_HOST"))
        method = environ["REQUEST_METHOD"]
        uri = environ.get("REQUEST_URI") or environ["PATH_INFO"]
        path = uri.split("?", 1)[0] if uri.startswith("/") else urlsplit(uri).path
        if path.rstrip("/") == "/openapi.yaml":  # the contract is public
            if method != "GET":
                return _not_allowed("GET")
            if not OPENAPI.is_file():
                raise ApiError(404, "not_found", "docs/openapi.yaml is not installed here")
            return Reply(200, OPENAPI.read_bytes())
        self._check_token(environ.get("HTTP_AUTHORIZATION"))
        match path.strip("/").split("/"):
            case ["identify"]:
                return self._identify(environ) if method == "POST" else _not_allowed("POST")
            case ["people", name] if name:
                return self._forget(name) if method == "DELETE" else _not_allowed("DELETE")
            case ["forgets", forget_id] if forget_id:
                return self._forget_status(forget_id) if method == "GET" else _not_allowed("GET")
        raise ApiError(404, "not_found", ROUTES)

    def _check_host(self, header: str | None) -> None:
        if not header:
            raise ApiError(400, "invalid_host", "send a Host header")
        name = header.strip().lower()
        name = name[1 : name.find("]")] if name.startswith("[") else name.rsplit(":", 1)[0]
        if name not in self._allowed:
            raise ApiError(
                421,
                "invalid_host",
                f"the Host {header[:100]!r} is not served here; allowed: "
                f"{', '.join(sorted(self._allowed))} (add one with --allow-host)",
            )

    def _check_token(self, header: str | None) -> None:
        if self._token is None:
            return
        scheme, _, value = (header or "").strip().partition(" ")
        offered = value.strip().encode("latin-1", "replace")
        if scheme.lower() != "bearer" or not hmac.compare_digest(offered, self._token):
            raise ApiError(
                401,
                "unauthorized",
                f"send Authorization: Bearer <token>, the token being the content of the "
                f"workspace's {TOKEN_FILE} file",
            )

    def _identify(self, environ: dict) -> Reply:
        media = environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
        if media != "application/json":
            raise ApiError(
                415,
                "unsupported_media_type",
                f"send the body as Content-Type: application/json, not {media or 'none'!r}",
            )
        body = parse_body(environ["wsgi.input"].read())
        return Reply(*handle_identify(body, self._service()))

    def _service(self):
        """This worker thread's identify service (its own deployment, built on first use)."""
        service = getattr(self._per_thread, "service", None)
        if service is None:
            service = self._per_thread.service = self._deployment().identify_service()
        return service

    def _forget(self, raw_name: str) -> Reply:
        person = forget_request(raw_name)
        status, body = forget_accepted(self._forgets.submit(person), person)
        return Reply(status, body, (("Location", body["status_url"]),))

    def _forget_status(self, forget_id: str) -> Reply:
        body = self._forgets.status(forget_id) if valid_forget_id(forget_id) else None
        if body is None:
            raise ApiError(404, "not_found", f"no forget with the id {forget_id[:64]!r}")
        return Reply(200, body)


def _not_allowed(method: str) -> Reply:
    return Reply(
        405,
        {"code": "method_not_allowed", "message": f"use {method} here; {ROUTES}"},
        (("Allow", method),),
    )


class _JsonErrorTask(ErrorTask):
    """waitress's own refusals (a malformed request, a body or headers over the limit) in the
    contract's JSON shape instead of plain text."""

    def execute(self) -> None:
        error = self.request.error
        if error.code == 413:
            code, message = ImageTooLarge.code, f"the body is over {MAX_BODY_BYTES} bytes"
        else:
            code, message = error.reason.lower().replace(" ", "_"), str(error.body)
        body = json.dumps({"code": code, "message": message}).encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class _JsonErrorChannel(HTTPChannel):
    error_task_class = _JsonErrorTask


class Server:
    """The API bound to ``host:port`` (port 0 picks a free one), not yet serving: call
    ``serve_forever`` (on any thread), and ``shutdown`` to stop it. ``deployment`` builds a
    LocalDeployment over the workspace (called once per worker thread and for the forgets);
    ``token`` None serves without authentication, on a loopback address only."""

    def __init__(
        self,
        deployment: Deployment,
        host: str = "127.0.0.1",
        port: int = 8080,
        *,
        token: str | None,
        allowed_hosts: Iterable[str] = (),
        threads: int,
        read_timeout: int = READ_TIMEOUT,
    ):
        check_bind(host, token is not None)
        if threads < 1 or read_timeout < 1:
            raise ValueError(f"threads ({threads}) and read_timeout ({read_timeout}) must be >= 1")
        self.forgets = ForgetQueue(deployment().forget)
        self._map: dict = {}
        self._stopping = threading.Event()
        api = Api(deployment, self.forgets, token, (*allowed_hosts, host))
        self._server = create_server(
            api,
            map=self._map,
            host=host,
            port=port,
            threads=threads,
            channel_timeout=read_timeout,
            cleanup_interval=1,  # how often silent connections are looked for, in seconds
            backlog=BACKLOG,
            max_request_body_size=MAX_BODY_BYTES,
            ident="facerec",
        )
        listeners = [item for item in self._map.values() if isinstance(item, BaseWSGIServer)]
        for listener in listeners:
            listener.channel_class = _JsonErrorChannel
        self.addresses = [(item.effective_host, item.effective_port) for item in listeners]

    @property
    def server_address(self) -> tuple[str, int]:
        return self.addresses[0]

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Serve until ``shutdown`` (noticed within ``poll_interval`` s) or an interrupt."""
        try:
            while not self._stopping.is_set():
                wasyncore.loop(timeout=poll_interval, map=self._map, count=1)
        finally:
            self._server.task_dispatcher.shutdown(timeout=5)
            wasyncore.close_all(self._map)
            self.forgets.close(timeout=5)

    def shutdown(self) -> None:
        self._stopping.set()


def serve(
    deployment: Deployment,
    workspace: Path,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    auth: bool = True,
    allowed_hosts: Iterable[str] = (),
    threads: int,
) -> int:
    """Serve until interrupted (KeyboardInterrupt propagates, after a clean close)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    token = None
    if auth:
        path, token = ensure_token(workspace)
        access = f"token: send 'Authorization: Bearer <the content of {path}>'"
    else:
        access = "no authentication (--no-auth): any process on this machine may call it"
    server = Server(
        deployment, host, port, token=token, allowed_hosts=allowed_hosts, threads=threads
    )
    for address, bound in server.addresses:
        shown = f"[{address}]" if ":" in address else address
        print(f"serving http://{shown}:{bound} ({threads} workers; contract: GET /openapi.yaml)")
    print(access)
    print("Ctrl-C stops", flush=True)
    server.serve_forever()  # Ctrl-C: the CLI's exit code 130
    return 0
