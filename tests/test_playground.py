"""The playground page driven in headless Chromium (Playwright with Debian's chromium): generate images and
stream text, and check what appears on the page."""

import os
import shutil
import socket
import threading
import time

import pytest
from conftest import tiny_config

from genlab.config import config_from_dict
from genlab.pipeline import train_config
from genlab.serve.app import create_app
from genlab.serve.keys import KeyStore

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# .ci/run installs chromium, so under CI a missing browser fails instead of skipping what this test proves
pytestmark = pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"),
                                reason="needs Debian's chromium (apt-get install chromium)")


@pytest.fixture
def live_server(tmp_path):
    import uvicorn

    train_config(tiny_config("vae", name="digits"), tmp_path)
    corpus = tmp_path / "corpus"
    corpus.write_text("\n%\n".join(f"The quick brown fox {i} jumps." for i in range(40)) + "\n")
    train_config(config_from_dict({"name": "fox", "family": "gpt", "model": {"layers": 1, "heads": 2, "width": 16},
                                   "data": {"source": "fortune", "path": str(corpus), "block_size": 16},
                                   "train": {"steps": 100, "batch_size": 8, "lr": 1e-2, "val_every": 0}}), tmp_path)
    store = KeyStore(tmp_path / "keys.json")
    token = store.add("browser")[1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app([tmp_path / "digits", tmp_path / "fox"], store),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", token
    server.should_exit = True
    thread.join(timeout=10)


def test_playground_generates_images_and_streams_text(live_server):
    from playwright.sync_api import sync_playwright

    url, token = live_server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(url + "/")
        page.fill("#key", token)
        page.select_option("#model", "digits")
        page.fill("#n", "9")
        page.click("#gen-image")
        page.wait_for_function("document.getElementById('image').naturalWidth > 0", timeout=20_000)
        assert page.eval_on_selector("#image", "img => img.src").startswith("blob:")
        assert page.inner_text("#error") == ""

        page.select_option("#model", "fox")
        page.fill("#prompt", "The")
        page.fill("#max_tokens", "24")
        page.click("#gen-text")
        page.wait_for_function("document.getElementById('text').textContent.length > 12", timeout=20_000)
        assert page.inner_text("#text").startswith("The")

        page.fill("#key", "gl_wrong")  # a wrong key shows the API's 401 on the page
        page.click("#gen-text")
        page.wait_for_function("document.getElementById('error').textContent.startsWith('401')", timeout=10_000)
        browser.close()
