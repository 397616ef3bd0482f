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

from panet.serve import make_server


def _serve(random_init: bool):
    srv = make_server("127.0.0.1", 0, random_init=random_init)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}"


@pytest.fixture
def server(tmp_path, monkeypatch):
    """The demo with no shipped weights: random-init presets (independent of what the package ships)."""
    import panet.pretrained as pretrained

    monkeypatch.setattr(pretrained, "SHIPPED", tmp_path / "no-weights")
    srv, url = _serve(random_init=True)
    yield url
    srv.shutdown()
    srv.server_close()


def test_shipped_weights_are_served_by_name(tmp_path, monkeypatch):
    import panet
    import panet.pretrained as pretrained
    from panet.weights import save_weights

    folder = tmp_path / "pretrained"
    save_weights(panet.create_model("pa-edsr-s-x2", blocks=1, features=8), folder / "sr-tiny-x2.safetensors",
                 metadata={"task": "sr", "level": "2"})
    (folder / "sr-tiny-x2.json").write_text(json.dumps({"name": "sr-tiny-x2", "preset": "pa-edsr-s-x2", "task": "sr",
                                                         "level": 2}))
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
    for query, body, message in [("task=nope", png_bytes(), "unknown task"), ("task=denoise", b"garbage", "not a readable image"),
                                 ("task=sr&scale=5", png_bytes(), "scale must be")]:
        with pytest.raises(urllib.error.HTTPError) as err:
            post(server + "/api/restore?" + query, body)
        assert err.value.code == 400 and message in json.load(err.value)["error"]


def _chromium():
    webdriver = pytest.importorskip("selenium.webdriver", reason="the browser test needs selenium (test extra)")
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not binary or not driver_path:
        pytest.skip("the browser test needs Debian's chromium and chromium-driver (apt install chromium chromium-driver)")
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
        WebDriverWait(browser, 120).until(lambda b: b.find_element(By.ID, "status").text.startswith(("done", "error"))
                                          or "error" in b.find_element(By.ID, "status").get_attribute("class"))
        assert browser.find_element(By.ID, "status").text.startswith("done"), browser.find_element(By.ID, "status").text
        size = browser.execute_script("const i = document.getElementById('after'); return [i.naturalWidth, i.naturalHeight];")
        assert size == [90, 60]  # x3
        browser.execute_script("const s = document.getElementById('slider'); s.value = 20; s.oninput();")
        assert "80%" in browser.find_element(By.ID, "before").get_attribute("style")  # the slider moves the split
        assert browser.find_element(By.ID, "download").get_attribute("href").startswith("blob:")
    finally:
        browser.quit()
