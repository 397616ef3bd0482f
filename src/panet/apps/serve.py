"""``panet serve``: a local web page to restore an image in the browser (standard library only).

    panet serve [--port 8000] [--host 127.0.0.1]

Drop an image, choose the task and level, see input and output with a before/after slider, download the PNG.
Nothing leaves the machine: the page talks to this process only. Endpoints: ``GET /`` (the page),
``GET /api/tasks`` (what can be restored with which weights), ``POST /api/restore?task=...&scale=|sigma=|quality=``
[``&job=ID``] with the image file as the request body, ``GET /api/progress?job=ID`` (tiles done while it runs) (PNG back, or a JSON error: 400 bad input, 403 refused, 413 too large,
503 busy). What it accepts, and from where: docs/security.md.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import math
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from panet.tasks import TASKS, get_task

MAX_UPLOAD = 64 * 2**20  # bytes of one uploaded file
# Pixels of the largest upload (by its header, before decoding): a 12-megapixel phone photo (4032x3024) fits. It
# restores in about 9-11 minutes on 2 Zen 4 cores (docs/performance.md), with the tiles' progress on the page.
MAX_PIXELS = 13_000_000

# The page (HTML, CSS and script in one file beside this one); __TASKS__ and __NOTE__ are filled in per request.
PAGE = (Path(__file__).resolve().parent / "page.html").read_text(encoding="utf-8")


class Busy(Exception):
    """Every restore slot and queue place is taken: answered 503."""


class RestoreService:
    """Loads networks on demand (cached) and restores encoded images, one at a time.

    ``max_pixels`` bounds an upload by the size its header declares, checked before decoding; ``queue`` bounds how
    many requests may wait for the running one (more are refused with :class:`Busy` before their body is read).
    """

    def __init__(
        self, *, random_init: bool = False, tile: int | None = None, max_pixels: int = MAX_PIXELS, queue: int = 4
    ):
        self.random_init, self.tile, self.max_pixels, self.queue = random_init, tile, max_pixels, queue
        self._lock = threading.Lock()
        self._run = threading.Lock()  # one restore at a time: it already uses every core
        self._admitted = 0  # running + waiting
        self._progress: dict[str, dict] = {}  # job id -> {"state", "done", "total", "pass"}

    def tasks(self) -> dict:
        from panet.zoo.pretrained import list_weights

        out = {}
        from panet.zoo.registry import small_preset

        for task, spec in TASKS.items():
            shipped = list_weights(task=task)
            if not shipped and not self.random_init:
                continue
            out[task] = {
                "label": spec.label,
                "level": spec.level_name,
                "default": spec.default_level,
                "weights": [w.name for w in shipped]
                or ["random-init " + small_preset(task, int(spec.default_level or 1))],
            }
        return out

    @contextlib.contextmanager
    def admission(self):
        """A place in the queue for one request, or :class:`Busy` when ``1 + queue`` requests already hold one."""
        with self._lock:
            if self._admitted > self.queue:
                raise Busy(f"busy: {self._admitted} restores are running or waiting; try again shortly")
            self._admitted += 1
        try:
            yield
        finally:
            with self._lock:
                self._admitted -= 1

    def _model(self, task: str, level: float | None):
        from panet.zoo.pretrained import list_weights
        from panet.zoo.resolver import resolve_network

        if not self.random_init and not list_weights(task=task):
            raise ValueError(f"no weights ship for {task}; start with --random-init for a demo")
        # the page sends RGB(A): colour weights are preferred
        network = resolve_network(task, level, colors=3, random_init=self.random_init)
        choice = network.choice
        return network.model, choice.label if choice.kind == "random" else choice.name

    def progress(self, job: str) -> dict:
        """Where the restore of ``job`` is: queued, running (tiles done of the current pass) or unknown."""
        with self._lock:
            return dict(self._progress.get(job, {"state": "unknown"}))

    def restore(self, data: bytes, task: str, level: float | None, job: str | None = None) -> tuple[bytes, str]:
        """An encoded image -> the restored PNG's bytes (16-bit and float gray come back 16-bit, alpha is kept) and
        the label of the weights used. Bad input raises ValueError. ``job``: an id under which :meth:`progress`
        reports this restore while it runs."""
        if job is None:
            return self._restore(data, task, level, None)
        with self._lock:
            if len(self._progress) >= 64 or job in self._progress:
                raise ValueError("bad or repeated job id")
            self._progress[job] = {"state": "queued", "done": 0, "total": 0, "pass": 0}
        try:
            return self._restore(data, task, level, self._progress[job])
        finally:
            with self._lock:
                del self._progress[job]

    def _restore(self, data: bytes, task: str, level: float | None, state: dict | None) -> tuple[bytes, str]:
        from panet.data.images import encode_image_float, read_image_float
        from panet.inference.restore import resolve_tiling, restore_float

        if level is not None or get_task(task).upscales:
            get_task(task).check_level(level)
        array, info = read_image_float(data, max_pixels=self.max_pixels)  # the header's size, checked before decoding
        model, label = self._model(task, level)
        tile, overlap = resolve_tiling(model, "cpu", self.tile)

        def progress(done: int, total: int) -> None:
            if state is not None:
                with self._lock:
                    state.update(state="running", done=done, total=total, **{"pass": state["pass"] + (done == 1)})

        with self._run:
            out = restore_float(
                model, array, task=task, tiling="tile", tile=tile, overlap=overlap, precision="auto", progress=progress
            )
        png, _ = encode_image_float(out, info, "PNG")
        return png, label


def parse_level(task: str, text: str | None) -> float | None:
    """The level query parameter of ``task`` (``scale=2``, ``sigma=25``, ``quality=10``), checked by the task:
    a finite number in its range; an SR scale must be 2, 3 or 4 exactly (``2.9`` is an error, not x2)."""
    from panet.tasks import get_task

    if text is None or text == "":
        return None
    spec = get_task(task)
    name = spec.level_name
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {text!r}")
    spec.check_level(value)
    return int(value) if spec.integer_level else value


def _job_id(text: str | None) -> str | None:
    """A client's progress id: letters and digits, at most 40."""
    if text is None:
        return None
    if not (0 < len(text) <= 40 and text.isascii() and text.isalnum()):
        raise ValueError("job must be 1 to 40 letters and digits")
    return text


def allowed_hosts(host: str, port: int) -> set[str] | None:
    """The Host headers a request may carry for a server listening on ``host:port`` (DNS rebinding: a foreign name
    that resolves to this machine is refused). None when it listens on every interface: any name may reach it."""
    if host in ("", "0.0.0.0", "::"):
        return None
    names = {host}
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        names |= {"localhost", "127.0.0.1", "::1"}
    written = {f"[{n}]" if ":" in n else n for n in names}
    return {f"{n}:{port}" for n in written} | (written if port == 80 else set())


def request_refusal(headers, hosts: set[str] | None) -> str | None:
    """Why a request must be refused (a foreign Host, or a browser request from another site), or None.

    Browsers send ``Origin`` with every POST and ``Sec-Fetch-Site`` with every request; a page on another site
    therefore cannot make this server restore (or read) anything. Clients that are no browser (curl, scripts)
    send neither and are served."""
    host = headers.get("Host", "")
    if hosts is not None and host.lower() not in hosts:
        return f"unexpected Host {host!r}: open the page at http://{sorted(hosts)[0]}/"
    origin = headers.get("Origin")
    if origin is not None and origin.lower() != f"http://{host}".lower():
        return f"requests from {origin} are not accepted"
    if headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        return "cross-site requests are not accepted"
    return None


class RestoreServer(ThreadingHTTPServer):
    request_queue_size = 128  # the listen backlog (socketserver's default, 5, resets bursts of connections)
    daemon_threads = True
    service: RestoreService


def make_handler(
    service: RestoreService,
    note: str = "",
    hosts: set[str] | None = None,
    *,
    idle_timeout: float = 30.0,
    body_timeout: float = 120.0,
):
    class Handler(BaseHTTPRequestHandler):
        timeout = idle_timeout  # a socket that sends nothing for this long is closed (frees its thread)

        def log_message(self, fmt, *args):  # quiet by default
            pass

        def _send(self, status: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Content-Type-Options", "nosniff")
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, message: str, headers: dict | None = None) -> None:
            self._send(status, json.dumps({"error": message}).encode(), "application/json", headers)

        def _refused(self) -> bool:
            reason = request_refusal(self.headers, hosts)
            if reason is not None:
                self.close_connection = True
                self._error(403, reason)
            return reason is not None

        def do_GET(self):
            if self._refused():
                return
            path = urlparse(self.path).path
            if path == "/":
                page = PAGE.replace("__TASKS__", json.dumps(service.tasks())).replace("__NOTE__", note)
                self._send(
                    200,
                    page.encode(),
                    "text/html; charset=utf-8",
                    {"Content-Security-Policy": "frame-ancestors 'none'"},
                )
            elif path == "/api/tasks":
                self._send(200, json.dumps(service.tasks()).encode(), "application/json")
            elif path == "/api/progress":
                job = parse_qs(urlparse(self.path).query).get("job", [""])[0]
                self._send(200, json.dumps(service.progress(job)).encode(), "application/json")
            else:
                self._error(404, "not found")

        def _read_body(self, length: int) -> bytes:
            deadline = time.monotonic() + body_timeout
            chunks, left = [], length
            while left:
                if time.monotonic() > deadline:
                    raise TimeoutError("request body too slow")
                chunk = self.rfile.read(min(left, 1 << 20))
                if not chunk:
                    raise ValueError("the request body ended before its Content-Length")
                chunks.append(chunk)
                left -= len(chunk)
            return b"".join(chunks)

        def do_POST(self):
            if self._refused():
                return
            url = urlparse(self.path)
            if url.path != "/api/restore":
                self.close_connection = True
                return self._error(404, "not found")
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            text = self.headers.get("Content-Length")
            length = int(text) if text is not None and text.strip().isdigit() else -1
            if length <= 0 or length > MAX_UPLOAD:
                self.close_connection = True  # the body (if any) is not read: the connection cannot be reused
                if length > MAX_UPLOAD:
                    return self._error(413, f"file too large ({MAX_UPLOAD >> 20} MB limit)")
                return self._error(400, "send the image file as the request body, with a valid Content-Length")
            task = query.get("task", "")
            try:
                if task not in TASKS:
                    raise ValueError(f"unknown task {task!r}")
                level_name = TASKS[task].level_name
                level = parse_level(task, query.get(level_name)) if level_name else None
                with service.admission():
                    data = self._read_body(length)
                    start = time.perf_counter()
                    png, label = service.restore(data, task, level, _job_id(query.get("job")))
            except Busy as exc:
                self.close_connection = True
                return self._error(503, str(exc), {"Retry-After": "10"})
            except ValueError as exc:
                self.close_connection = True
                return self._error(400, str(exc))
            self._send(200, png, "image/png", {"X-Seconds": f"{time.perf_counter() - start:.1f}", "X-Weights": label})

    return Handler


def make_server(
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    random_init: bool = False,
    tile: int | None = None,
    queue: int = 4,
    idle_timeout: float = 30.0,
    max_pixels: int = MAX_PIXELS,
) -> RestoreServer:
    """The server (not yet serving): ``queue`` requests may wait for the running restore; a connection idle for
    ``idle_timeout`` seconds is closed. Its ``service`` attribute is the :class:`RestoreService`."""
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be in 0..65535, got {port}")
    service = RestoreService(random_init=random_init, tile=tile, queue=queue, max_pixels=max_pixels)
    note = "<b>Demo mode: networks without shipped weights run with RANDOM weights.</b>" if random_init else ""
    server = RestoreServer((host, port), make_handler(service, note))
    # the Host check needs the port actually bound (port 0 picks one)
    server.RequestHandlerClass = make_handler(
        service, note, allowed_hosts(host, server.server_address[1]), idle_timeout=idle_timeout
    )
    server.service = service
    return server


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    random_init: bool = False,
    tile: int | None = None,
    max_pixels: int = MAX_PIXELS,
) -> None:
    server = make_server(host, port, random_init=random_init, tile=tile, max_pixels=max_pixels)
    print(f"panet serve: open http://{host}:{server.server_address[1]}/ (Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
