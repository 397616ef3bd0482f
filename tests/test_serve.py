"""The local web demo: its HTTP API, and the page in a real headless browser (Debian's chromium + Selenium)."""

from __future__ import annotations

import io
import json
import shutil
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

from panet.apps.serve import make_server


def _serve(random_init: bool):
    srv = make_server("127.0.0.1", 0, random_init=random_init)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}"


@pytest.fixture
def server(tmp_path, monkeypatch):
    """The demo with no shipped weights: random-init presets (independent of what the package ships)."""
    import panet.zoo.pretrained as pretrained

    monkeypatch.setattr(pretrained, "SHIPPED", tmp_path / "no-weights")
    srv, url = _serve(random_init=True)
    yield url
    srv.shutdown()
    srv.server_close()


def test_shipped_weights_are_served_by_name(tmp_path, monkeypatch):
    import panet
    import panet.zoo.pretrained as pretrained
    from panet.zoo.weights import save_weights

    folder = tmp_path / "pretrained"
    save_weights(
        panet.create_model("pa-edsr-s-x2", blocks=1, features=8),
        folder / "sr-tiny-x2.safetensors",
        metadata={"task": "sr", "level": "2"},
    )
    (folder / "sr-tiny-x2.json").write_text(
        json.dumps({"name": "sr-tiny-x2", "preset": "pa-edsr-s-x2", "task": "sr", "level": 2})
    )
    monkeypatch.setattr(pretrained, "SHIPPED", folder)
    srv, url = _serve(random_init=False)
    try:
        with post(url + "/api/restore?task=sr&scale=2", png_bytes()) as r:
            assert r.headers["X-Weights"] == "sr-tiny-x2"
            assert Image.open(io.BytesIO(r.read())).size == (56, 48)
        with pytest.raises(urllib.error.HTTPError) as err:  # no x3 weights ship, and no --random-init
            post(url + "/api/restore?task=sr&scale=3", png_bytes())
        assert err.value.code == 400 and "cover level 3" in json.load(err.value)["error"]
    finally:
        srv.shutdown()
        srv.server_close()


def png_bytes(h=24, w=28, mode="RGB") -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, len(mode)), dtype=np.uint8), mode).save(buffer, format="PNG")
    return buffer.getvalue()


def post(url, data):
    return urllib.request.urlopen(urllib.request.Request(url, data=data, method="POST"), timeout=120)


def test_api_restores_and_reports_errors(server):
    tasks = json.load(urllib.request.urlopen(server + "/api/tasks"))
    assert set(tasks) == {"sr", "denoise", "car", "demosaic"}
    with post(server + "/api/restore?task=sr&scale=2", png_bytes()) as r:
        assert r.headers["Content-Type"] == "image/png" and "RANDOM" in r.headers["X-Weights"]
        assert Image.open(io.BytesIO(r.read())).size == (56, 48)
    with post(server + "/api/restore?task=denoise&sigma=25", png_bytes(mode="RGBA")) as r:
        assert Image.open(io.BytesIO(r.read())).mode == "RGBA"  # alpha kept
    for query, body, message in [
        ("task=nope", png_bytes(), "unknown task"),
        ("task=denoise", b"garbage", "not a readable image"),
        ("task=sr&scale=5", png_bytes(), "scale must be"),
    ]:
        with pytest.raises(urllib.error.HTTPError) as err:
            post(server + "/api/restore?" + query, body)
        assert err.value.code == 400 and message in json.load(err.value)["error"]


def _chromium():
    webdriver = pytest.importorskip("selenium.webdriver", reason="the browser test needs selenium (test extra)")
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not binary or not driver_path:
        pytest.skip(
            "the browser test needs Debian's chromium and chromium-driver (apt install chromium chromium-driver)"
        )
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver_path), options=options)


def test_page_in_a_headless_browser(server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    image = tmp_path / "photo.png"
    image.write_bytes(png_bytes(20, 30))
    browser = _chromium()
    try:
        browser.get(server + "/")
        assert "panet" in browser.title and "RANDOM" in browser.page_source
        Select(browser.find_element(By.ID, "task")).select_by_value("sr")
        level = browser.find_element(By.ID, "level")
        level.clear()
        level.send_keys("3")
        browser.find_element(By.ID, "file").send_keys(str(image))
        browser.find_element(By.ID, "go").click()
        WebDriverWait(browser, 120).until(
            lambda b: (
                b.find_element(By.ID, "status").text.startswith(("done", "error"))
                or "error" in b.find_element(By.ID, "status").get_attribute("class")
            )
        )
        assert browser.find_element(By.ID, "status").text.startswith("done"), browser.find_element(By.ID, "status").text
        size = browser.execute_script(
            "const i = document.getElementById('after'); return [i.naturalWidth, i.naturalHeight];"
        )
        assert size == [90, 60]  # x3
        browser.execute_script("const s = document.getElementById('slider'); s.value = 20; s.oninput();")
        assert "80%" in browser.find_element(By.ID, "before").get_attribute("style")  # the slider moves the split
        assert browser.find_element(By.ID, "download").get_attribute("href").startswith("blob:")
    finally:
        browser.quit()


# --- bad input, load and other origins (issue: nothing lost, nothing hangs) ---------------------------------------


def _raw_request(url: str, request: bytes, timeout: float = 30) -> bytes:
    import socket

    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def test_bad_request_lines_get_400_not_a_dropped_connection(server):
    port = server.rsplit(":", 1)[1]
    head = f"POST /api/restore?task=denoise HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode()
    assert _status(_raw_request(server, head + b"Content-Length: abc\r\n\r\n")) == 400
    assert _status(_raw_request(server, head + b"Content-Length: -5\r\n\r\n")) == 400
    for query, message in [
        ("task=sr&scale=inf", "finite"),
        ("task=sr&scale=2.9", "scale must be 2, 3 or 4"),
        ("task=denoise&sigma=nan", "finite"),
        ("task=denoise&sigma=abc", "must be a number"),
        ("task=car&quality=10.5", "integer"),
    ]:
        with pytest.raises(urllib.error.HTTPError) as err:
            post(server + "/api/restore?" + query, png_bytes())
        assert err.value.code == 400 and message in json.load(err.value)["error"], query


def test_other_origins_and_hosts_are_refused(server):
    port = server.rsplit(":", 1)[1]
    for headers in [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Host": f"evil.example:{port}"},
        {"Content-Type": "text/plain", "Origin": "http://evil.example"},
    ]:
        request = urllib.request.Request(
            server + "/api/restore?task=denoise&sigma=25", data=png_bytes(), method="POST", headers=headers
        )
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(request, timeout=60)
        assert err.value.code == 403, headers
    with pytest.raises(urllib.error.HTTPError) as err:  # DNS rebinding: a foreign name cannot read the page either
        urllib.request.urlopen(urllib.request.Request(server + "/", headers={"Host": f"evil.example:{port}"}))
    assert err.value.code == 403
    same = {"Origin": server, "Sec-Fetch-Site": "same-origin"}  # what the page itself sends
    request = urllib.request.Request(
        server + "/api/restore?task=denoise&sigma=25", data=png_bytes(), method="POST", headers=same
    )
    with urllib.request.urlopen(request, timeout=120) as r:
        assert r.status == 200


def test_allowed_hosts_follow_the_listening_address():
    from panet.apps.serve import allowed_hosts

    assert allowed_hosts("127.0.0.1", 8000) == {"127.0.0.1:8000", "localhost:8000", "[::1]:8000"}
    assert allowed_hosts("192.168.1.5", 8000) == {"192.168.1.5:8000"}
    assert allowed_hosts("0.0.0.0", 8000) is None  # every interface: any name may reach it (Origin still checked)


def test_idle_half_sent_requests_are_closed():
    import socket
    import time

    srv = make_server("127.0.0.1", 0, random_init=True, idle_timeout=0.5)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        with socket.create_connection(("127.0.0.1", srv.server_address[1]), timeout=10) as sock:
            sock.sendall(b"POST /api/restore?task=denoise HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and then nothing
            start = time.monotonic()
            assert sock.recv(1024) == b""  # the server hung up
            assert time.monotonic() - start < 5
    finally:
        srv.shutdown()
        srv.server_close()


def test_a_full_queue_answers_503_and_bursts_are_not_reset(tmp_path, monkeypatch):
    import concurrent.futures

    import panet.zoo.pretrained as pretrained

    monkeypatch.setattr(pretrained, "SHIPPED", tmp_path / "no-weights")
    srv = make_server("127.0.0.1", 0, random_init=True, queue=1)
    assert srv.request_queue_size >= 64
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/api/restore?task=denoise&sigma=25"
    try:
        srv.service._run.acquire()  # a restore "in progress": requests queue behind it
        try:

            def call(_):
                try:
                    with post(url, png_bytes(16, 16)) as r:
                        return r.status
                except urllib.error.HTTPError as err:
                    return err.code

            with concurrent.futures.ThreadPoolExecutor(20) as pool:
                futures = [pool.submit(call, i) for i in range(20)]
                import time

                time.sleep(3)  # every request has arrived: 2 admitted (1 + queue), the rest refused
                refused = [f.result() for f in futures if f.done()]
                assert len(refused) == 18 and set(refused) == {503}
                srv.service._run.release()
                statuses = [f.result() for f in futures]
        finally:
            if srv.service._run.locked():
                srv.service._run.release()
        assert sorted(statuses) == [200, 200] + [503] * 18  # no connection reset, no hang
    finally:
        srv.shutdown()
        srv.server_close()


def _png_header_only(width: int, height: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_uploads_are_size_checked_before_decoding_and_keep_their_kind(server):
    for width, height in [(100_000, 100_000), (4100, 3200)]:  # a bomb header; 13.1 MP, over the 13 MP limit
        with pytest.raises(urllib.error.HTTPError) as err:
            post(server + "/api/restore?task=denoise&sigma=25", _png_header_only(width, height))
        assert err.value.code == 400 and "pixels" in json.load(err.value)["error"]
    gray16 = np.linspace(1000, 3000, 16 * 20).reshape(16, 20).astype(np.uint16)  # dark 16-bit gray
    buffer = io.BytesIO()
    Image.fromarray(gray16).save(buffer, format="PNG")
    with post(server + "/api/restore?task=denoise&sigma=25", buffer.getvalue()) as r:
        out = Image.open(io.BytesIO(r.read()))
        assert out.mode == "I;16" and np.asarray(out).max() < 30000  # 16 bit, not turned white
    palette = Image.new("P", (20, 16))
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.info["transparency"] = 0
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG", transparency=0)
    with post(server + "/api/restore?task=denoise&sigma=25", buffer.getvalue()) as r:
        assert Image.open(io.BytesIO(r.read())).mode == "RGBA"  # transparency kept as alpha


def test_progress_is_reported_while_a_restore_runs(tmp_path, monkeypatch):
    import panet.zoo.pretrained as pretrained

    monkeypatch.setattr(pretrained, "SHIPPED", tmp_path / "no-weights")
    srv = make_server("127.0.0.1", 0, random_init=True, tile=16)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}"
    seen = []
    try:
        srv.service._run.acquire()  # hold the restore: the job must first show as queued
        result = {}
        thread = threading.Thread(
            target=lambda: result.update(
                status=post(url + "/api/restore?task=denoise&sigma=25&job=abc123", png_bytes(40, 40)).status
            )
        )
        thread.start()
        import time

        for _ in range(200):
            seen.append(json.load(urllib.request.urlopen(url + "/api/progress?job=abc123"))["state"])
            if seen[-1] == "queued":
                break
            time.sleep(0.05)
        assert seen[-1] == "queued"
        states = []
        import panet.inference.tiling as inference

        tiled = inference.forward_tiled

        def slow_tiles(*args, progress=None, **kwargs):  # 50 ms per tile, so that polling sees the restore run
            def report(done, total):
                time.sleep(0.05)
                progress(done, total)

            return tiled(*args, progress=report, **kwargs)

        monkeypatch.setattr(inference, "forward_tiled", slow_tiles)
        srv.service._run.release()
        while thread.is_alive():
            states.append(json.load(urllib.request.urlopen(url + "/api/progress?job=abc123")))
            time.sleep(0.02)
        thread.join()
        assert result["status"] == 200
        running = [s for s in states if s["state"] == "running"]
        assert running and all(0 < s["done"] <= s["total"] == 9 for s in running)  # 40x40 in 16/4 tiles: 3 x 3
        assert json.load(urllib.request.urlopen(url + "/api/progress?job=abc123"))["state"] == "unknown"  # cleaned up
        with pytest.raises(urllib.error.HTTPError) as err:
            post(url + "/api/restore?task=denoise&job=../../x", png_bytes())
        assert err.value.code == 400
    finally:
        if srv.service._run.locked():
            srv.service._run.release()
        srv.shutdown()
        srv.server_close()
