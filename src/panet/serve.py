"""``panet serve``: a local web page to restore an image in the browser (standard library only).

    panet serve [--port 8000] [--host 127.0.0.1]

Drop an image, choose the task and level, see input and output with a before/after slider, download the PNG.
Nothing leaves the machine: the page talks to this process only. Endpoints: ``GET /`` (the page),
``GET /api/tasks`` (what can be restored with which weights), ``POST /api/restore?task=...&scale=|sigma=|quality=``
with the image file as the request body (PNG back, or a JSON error with status 400).
"""
from __future__ import annotations

import io
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import numpy as np

LEVELS = {"sr": ("scale", [2, 3, 4]), "denoise": ("sigma", None), "car": ("quality", None), "demosaic": (None, None)}
DEMO_PRESETS = {"sr": "pa-edsr-s-x{scale}", "denoise": "panet-dn-s", "car": "panet-car-s", "demosaic": "panet-demosaic-s"}

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>panet: restore an image</title>
<style>
body{font:15px system-ui,sans-serif;margin:2em auto;max-width:980px;color:#222}
#drop{border:2px dashed #999;border-radius:8px;padding:1.5em;text-align:center;cursor:pointer}
#drop.over{background:#eef}
.row{margin:1em 0;display:flex;gap:1em;align-items:center;flex-wrap:wrap}
#compare{position:relative;display:inline-block;width:min(100%,768px);line-height:0}
#compare img{width:100%;image-rendering:pixelated}
#before{position:absolute;left:0;top:0;width:100%;height:100%;object-fit:fill}
#status{color:#555}.error{color:#b00}
</style></head><body>
<h1>panet: restore an image</h1>
<p>Pyramid Attention Networks, running on this computer. __NOTE__</p>
<div id="drop">Drop an image here or <label><u>choose a file</u><input id="file" type="file" accept="image/*" hidden></label></div>
<div class="row">
 <label>Task <select id="task"></select></label>
 <label id="levelbox">Level <input id="level" type="number" style="width:5em"></label>
 <button id="go" disabled>Restore</button>
 <span id="status"></span>
</div>
<div id="result" hidden>
 <div id="compare"><img id="after" alt="restored"><img id="before" alt="input"></div>
 <div class="row"><label>before / after <input id="slider" type="range" min="0" max="100" value="50"></label>
 <a id="download" download="restored.png">Download the restored PNG</a></div>
</div>
<script>
const tasks = __TASKS__;
let file = null;
const $ = id => document.getElementById(id);
for (const [name, t] of Object.entries(tasks)) { const o = document.createElement('option'); o.value = name; o.textContent = t.label; $('task').append(o); }
function syncLevel(){ const t = tasks[$('task').value]; $('levelbox').hidden = !t.level; if (t.level) { $('level').value = t.default; $('levelbox').firstChild.textContent = t.level + ' '; } }
$('task').onchange = syncLevel; syncLevel();
function pick(f){ file = f; $('go').disabled = !f; $('status').textContent = f ? f.name : ''; }
$('file').onchange = e => pick(e.target.files[0]);
$('drop').ondragover = e => { e.preventDefault(); $('drop').classList.add('over'); };
$('drop').ondragleave = () => $('drop').classList.remove('over');
$('drop').ondrop = e => { e.preventDefault(); $('drop').classList.remove('over'); pick(e.dataTransfer.files[0]); };
$('slider').oninput = () => { $('before').style.clipPath = `inset(0 ${100 - $('slider').value}% 0 0)`; };
$('go').onclick = async () => {
  const t = tasks[$('task').value];
  const q = new URLSearchParams({task: $('task').value});
  if (t.level) q.set(t.level, $('level').value);
  $('status').className = ''; $('status').textContent = 'restoring...'; $('go').disabled = true;
  try {
    const r = await fetch('/api/restore?' + q, {method: 'POST', body: file});
    if (!r.ok) throw new Error((await r.json()).error);
    const url = URL.createObjectURL(await r.blob());
    $('after').src = url; $('download').href = url;
    $('before').src = URL.createObjectURL(file);
    $('result').hidden = false; $('slider').oninput();
    $('status').textContent = 'done in ' + r.headers.get('X-Seconds') + ' s (' + r.headers.get('X-Weights') + ')';
  } catch (err) { $('status').className = 'error'; $('status').textContent = err.message; }
  $('go').disabled = false;
};
</script></body></html>
"""


class RestoreService:
    """Loads networks on demand (cached) and restores encoded images."""

    def __init__(self, *, random_init: bool = False, tile: int = 64, max_pixels: int = 4_000_000):
        self.random_init, self.tile, self.max_pixels = random_init, tile, max_pixels
        self._models: dict[str, object] = {}
        self._lock = threading.Lock()

    def tasks(self) -> dict:
        from .pretrained import list_weights

        out = {}
        for task, (level, _) in LEVELS.items():
            shipped = list_weights(task=task)
            if not shipped and not self.random_init:
                continue
            default = {"sr": 2, "denoise": 25, "car": 10, "demosaic": None}[task]
            label = {"sr": "super-resolution", "denoise": "denoising", "car": "JPEG artifacts (gray)",
                     "demosaic": "demosaicing (GRBG mosaic)"}[task]
            out[task] = {"label": label, "level": level, "default": default,
                         "weights": [w.name for w in shipped] or ["random-init " + DEMO_PRESETS[task]]}
        return out

    def _model(self, task: str, level: float | None):
        from .pretrained import find_weights, list_weights
        from .weights import load_weights

        with self._lock:
            if list_weights(task=task):
                w = find_weights(task, level, colors=3)  # the page sends RGB(A); prefer colour weights
                key = w.name
                if key not in self._models:
                    self._models[key] = load_weights(w.file).eval()
                return self._models[key], key
            if not self.random_init:
                raise ValueError(f"no weights ship for {task}; start with --random-init for a demo")
            import torch

            from .registry import create_model

            name = DEMO_PRESETS[task].format(scale=int(level or 2))
            if name not in self._models:
                torch.manual_seed(0)
                self._models[name] = create_model(name).eval()
            return self._models[name], f"{name}, RANDOM weights"

    def restore(self, data: bytes, task: str, level: float | None) -> tuple[bytes, str]:
        from PIL import Image, ImageOps

        from .restoration import restore_float
        from .tasks import get_task

        get_task(task)
        if task == "sr" and level not in (2, 3, 4):
            raise ValueError("scale must be 2, 3 or 4")
        try:
            with Image.open(io.BytesIO(data)) as img:
                img = ImageOps.exif_transpose(img)
                if img.width * img.height > self.max_pixels:
                    raise ValueError(f"image too large ({img.width}x{img.height}); the limit is {self.max_pixels} pixels")
                img = img.convert("RGBA" if "A" in img.mode else "RGB")
        except ValueError:
            raise
        except Exception as exc:
            raise ValueError(f"not a readable image ({exc})") from None
        array = np.asarray(img, dtype=np.float32) / 255.0
        model, label = self._model(task, level)
        out = restore_float(model, array, task=task, tiling="tile", tile=self.tile, overlap=16)
        data = np.round(np.clip(out, 0, 1) * 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(data, "RGBA" if data.shape[2] == 4 else "RGB").save(buffer, format="PNG")
        return buffer.getvalue(), label


def make_handler(service: RestoreService, note: str = ""):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):  # quiet by default
            pass

        def _send(self, status: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, message: str) -> None:
            self._send(status, json.dumps({"error": message}).encode(), "application/json")

        def do_GET(self):
            path = urlparse(self.path).path
            if path == "/":
                page = PAGE.replace("__TASKS__", json.dumps(service.tasks())).replace("__NOTE__", note)
                self._send(200, page.encode(), "text/html; charset=utf-8")
            elif path == "/api/tasks":
                self._send(200, json.dumps(service.tasks()).encode(), "application/json")
            else:
                self._error(404, "not found")

        def do_POST(self):
            import time

            url = urlparse(self.path)
            if url.path != "/api/restore":
                return self._error(404, "not found")
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            length = int(self.headers.get("Content-Length") or 0)
            if length <= 0:
                return self._error(400, "send the image file as the request body")
            if length > 64 * 2**20:
                return self._error(400, "file too large (64 MB limit)")
            data = self.rfile.read(length)
            task = query.get("task", "")
            try:
                if task not in LEVELS:
                    raise ValueError(f"unknown task {task!r}")
                name = LEVELS[task][0]
                level = float(query[name]) if name and query.get(name) not in (None, "") else None
                if task == "sr" and level is not None:
                    level = int(level)
                start = time.perf_counter()
                png, label = service.restore(data, task, level)
            except (ValueError, KeyError) as exc:
                return self._error(400, str(exc.args[0] if exc.args else exc))
            self._send(200, png, "image/png", {"X-Seconds": f"{time.perf_counter() - start:.1f}", "X-Weights": label})

    return Handler


def make_server(host: str = "127.0.0.1", port: int = 8000, *, random_init: bool = False, tile: int = 64) -> ThreadingHTTPServer:
    service = RestoreService(random_init=random_init, tile=tile)
    note = "<b>Demo mode: networks without shipped weights run with RANDOM weights.</b>" if random_init else ""
    return ThreadingHTTPServer((host, port), make_handler(service, note))


def serve(host: str = "127.0.0.1", port: int = 8000, *, random_init: bool = False, tile: int = 64) -> None:
    server = make_server(host, port, random_init=random_init, tile=tile)
    print(f"panet serve: open http://{host}:{server.server_address[1]}/ (Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
