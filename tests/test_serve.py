"""`genlab serve`: keys, limits, caps and generation over HTTP (FastAPI's in-process client)."""

import base64
import json

import numpy as np
import pytest
import torch
from conftest import tiny_config
from fastapi.testclient import TestClient

from genlab.config import config_from_dict
from genlab.pipeline import train_config
from genlab.serve import wait_until_ready
from genlab.serve.app import create_app
from genlab.serve.keys import KeyStore
from genlab.serve.limits import KeyLimiter, Limits


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny conditional VAE on digits and a tiny character GPT, trained once for the module."""
    root = tmp_path_factory.mktemp("serve")
    image_run, _ = train_config(tiny_config("vae", name="digits"), root)
    corpus = root / "corpus"
    corpus.write_text("\n%\n".join(f"The quick brown fox {i} jumps." for i in range(40)) + "\n")
    text_cfg = config_from_dict({"name": "fox", "family": "gpt", "model": {"layers": 1, "heads": 2, "width": 16},
                                 "data": {"source": "fortune", "path": str(corpus), "block_size": 16},
                                 "train": {"steps": 200, "batch_size": 8, "lr": 1e-2, "val_every": 0,
                                           "checkpoint_every": 0}})
    text_run, _ = train_config(text_cfg, root)
    return image_run.root, text_run.root


@pytest.fixture
def server(runs, tmp_path):
    store = KeyStore(tmp_path / "keys.json")
    key_id, token = store.add("tests")
    app = create_app(list(runs), store, Limits(requests_per_minute=600, burst=5, max_images=16))
    return TestClient(app), store, key_id, {"Authorization": f"Bearer {token}"}


def test_keys_are_stored_hashed_and_checked(tmp_path):
    store = KeyStore(tmp_path / "k.json")
    key_id, token = store.add("alice")
    raw = (tmp_path / "k.json").read_text()
    assert token not in raw and (tmp_path / "k.json").stat().st_mode & 0o077 == 0
    assert store.check(token) == key_id and store.check(token + "x") is None and store.check(None) is None
    store.revoke(key_id)
    assert store.check(token) is None and store.list()[0]["revoked"]


def test_generate_endpoints_need_a_live_key(server):
    client, store, key_id, auth = server
    body = {"n": 2}
    assert client.post("/v1/models/digits/images", json=body).status_code == 401
    assert client.post("/v1/models/digits/images", json=body,
                       headers={"Authorization": "Bearer gl_wrong"}).status_code == 401
    assert client.post("/v1/models/digits/images", json=body, headers=auth).status_code == 200
    store.revoke(key_id)
    r = client.post("/v1/models/digits/images", json=body, headers=auth)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert client.get("/healthz").json() == {"status": "ok"}  # health needs no key


def test_images_are_deterministic_png(server):
    client, _, _, auth = server
    a = client.post("/v1/models/digits/images", json={"n": 4, "seed": 7, "label": 3}, headers=auth)
    b = client.post("/v1/models/digits/images", json={"n": 4, "seed": 7, "label": 3}, headers=auth)
    assert a.headers["content-type"] == "image/png" and a.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert a.content == b.content
    c = client.post("/v1/models/digits/images", json={"n": 4, "seed": 8, "label": 3}, headers=auth)
    assert c.content != a.content
    js = client.post("/v1/models/digits/images", json={"n": 3, "format": "json"}, headers=auth).json()
    assert len(js["images"]) == 3 and base64.b64decode(js["images"][0])[:4] == b"\x89PNG"


def test_text_plain_and_streamed(server):
    client, _, _, auth = server
    body = {"prompt": "The", "n": 2, "max_tokens": 12, "temperature": 0.8, "seed": 1}
    r = client.post("/v1/models/fox/text", json=body, headers=auth)
    assert r.status_code == 200, r.text
    texts = r.json()["texts"]
    assert len(texts) == 2
    with client.stream("POST", "/v1/models/fox/text", json={**body, "stream": True}, headers=auth) as s:
        assert s.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in s.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    streamed = ["", ""]
    for e in events[:-1]:
        piece = json.loads(e)
        streamed[piece["index"]] += piece["text"]
    assert streamed == texts  # the stream adds up to the same samples


def test_bad_requests_are_4xx_with_a_message(server):
    client, _, _, auth = server
    cases = [
        ("/v1/models/digits/images", {"n": 17}, 422),  # over the cap
        ("/v1/models/digits/images", {"n": 0}, 422),
        ("/v1/models/digits/images", {"n": 2, "label": 99}, 400),
        ("/v1/models/digits/images", {"n": 2, "surprise": 1}, 422),
        ("/v1/models/digits/images", {"n": "many"}, 422),
        ("/v1/models/fox/images", {"n": 2}, 400),  # a language model
        ("/v1/models/../../etc/images", {"n": 2}, 404),
        ("/v1/models/nope/images", {"n": 2}, 404),
        ("/v1/models/fox/text", {"max_tokens": 100_000}, 422),
        ("/v1/models/fox/text", {"prompt": "x" * 5000}, 422),
        ("/v1/models/fox/text", {"prompt": "Ω unknown"}, 400),
        ("/v1/models/fox/text", {"prompt": "Ω unknown", "stream": True}, 400),  # refused before streaming
        ("/v1/models/fox/text", {"top_p": 0}, 422),
    ]
    for path, body, code in cases:
        r = client.post(path, json=body, headers=auth)
        assert r.status_code == code, (path, body, r.status_code, r.text)
        assert r.json()["detail"]
    r = client.post("/v1/models/digits/images", content=b"{" + b" " * 70_000 + b"}",
                    headers={**auth, "content-type": "application/json"})
    assert r.status_code == 413
    r = client.post("/v1/models/digits/images", content=b"not json",
                    headers={**auth, "content-type": "application/json"})
    assert r.status_code == 422


def test_rate_limit_answers_429_with_retry_after(runs, tmp_path):
    """A slow refill (6 a minute), so the burst runs out however slowly this machine serves the requests
    (at 600 a minute a busy CI machine refilled the bucket between requests)."""
    store = KeyStore(tmp_path / "keys.json")
    _, token = store.add("tests")
    client = TestClient(create_app(list(runs), store, Limits(requests_per_minute=6, burst=5, max_images=16)))
    auth = {"Authorization": f"Bearer {token}"}
    codes = [client.post("/v1/models/digits/images", json={"n": 1}, headers=auth) for _ in range(8)]
    limited = [r for r in codes if r.status_code == 429]
    assert [r.status_code for r in codes[:5]] == [200] * 5 and limited  # burst of 5
    assert int(limited[0].headers["retry-after"]) >= 1


def test_limiter_refills_and_caps_concurrency():
    now = [0.0]
    limiter = KeyLimiter(Limits(requests_per_minute=60, burst=2, concurrent=1), clock=lambda: now[0])
    assert limiter.acquire("k") == 0
    assert limiter.acquire("k") == 1.0  # one in flight already
    limiter.release("k")
    assert limiter.acquire("k") == 0
    limiter.release("k")
    assert limiter.acquire("k") >= 1  # bucket empty
    now[0] += 1.0  # one request per second refills
    assert limiter.acquire("k") == 0


def test_models_are_listed_with_family_and_fingerprint(server, runs):
    client, _, _, _ = server
    listed = client.get("/v1/models").json()
    assert listed["object"] == "list"  # OpenAI's format, genlab's details as extra fields
    models = {m["id"]: m for m in listed["data"]}
    assert models["digits"]["family"] == "vae" and models["fox"]["modality"] == "text"
    assert models["fox"]["object"] == "model" and models["fox"]["owned_by"] == "genlab"
    assert models["fox"]["endpoint"] == "/v1/models/fox/text" and models["fox"]["created"] > 0
    assert client.get("/v1/models/fox").json()["id"] == "fox"
    assert client.get("/v1/models/nope").json()["error"]["code"] == "model_not_found"
    fingerprint = json.loads((runs[0] / "dataset.json").read_text())["fingerprint"]
    assert models["digits"]["dataset_fingerprint"] == fingerprint
    assert client.get("/openapi.json").json()["paths"]["/v1/models/{name}/text"]


def test_keys_cli(tmp_path, run_cli):
    path = tmp_path / "keys.json"
    code, out, err = run_cli("keys", "add", "bob", "--keys", path)
    assert code == 0 and "gl_" in out
    key_id = out.split()[1]
    code, out, _ = run_cli("keys", "list", "--keys", path)
    assert "bob" in out and "active" in out and "gl_" not in out
    code, out, _ = run_cli("keys", "revoke", key_id, "--keys", path)
    assert code == 0
    code, _, err = run_cli("keys", "revoke", "nope", "--keys", path)
    assert code == 2 and "no key" in err


def test_metrics_and_request_ids(server, caplog):
    client, _, _, auth = server
    with caplog.at_level("INFO", logger="genlab.access"):
        r = client.post("/v1/models/digits/images", json={"n": 3}, headers={**auth, "X-Request-ID": "abc-1"})
        assert r.headers["x-request-id"] == "abc-1"
        client.post("/v1/models/digits/images", json={"n": 3})  # 401
        fresh = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"}).headers["x-request-id"]
    assert fresh != "bad id with spaces" and len(fresh) == 32
    line = next(json.loads(r.getMessage()) for r in caplog.records if "abc-1" in r.getMessage())
    assert line["status"] == 200 and line["endpoint"] == "/v1/models/{name}/images" and line["ms"] > 0
    text = client.get("/metrics").text
    assert 'genlab_requests_total{endpoint="/v1/models/{name}/images",status="200"} 1.0' in text
    assert 'genlab_rejections_total{reason="auth"} 1.0' in text
    assert 'genlab_generated_images_total{model="digits"} 3.0' in text
    assert "genlab_request_seconds_bucket" in text
    client.post("/v1/models/fox/text", json={"prompt": "The", "max_tokens": 8}, headers=auth)
    tokens = client.get("/metrics").text.split('genlab_generated_tokens_total{model="fox"} ')[1].split()[0]
    assert 1 <= float(tokens) <= 8


def test_playground_page_is_served(server):
    client, _, _, _ = server
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    for needle in ('id="model"', 'id="gen-image"', 'id="gen-text"', "/v1/models", "data: [DONE]"):
        assert needle in r.text


def test_text_filter_redacts_whole_words_and_cjk_and_refuses():
    from genlab.modalities.text.safety import StreamFilter, TextFilter

    f = TextFilter(["fox", "月光"])
    r = f.apply("The Fox is no foxglove; 床前明月光")
    assert r.text == "The ███ is no foxglove; 床前明██" and r.filtered and not r.refused
    assert not f.apply("a clean line").filtered
    refuse = TextFilter(["fox"], "refuse")
    assert refuse.apply("quick fox") == type(r)("", True, True)
    hooked = TextFilter([], hook=lambda t: "bad" in t)
    assert hooked.apply("bad news").refused and not hooked.apply("good news").filtered
    stream = StreamFilter(f)  # a term split across pieces is still caught
    out = "".join(stream.feed(p) for p in ["the f", "o", "x ran"]) + stream.feed("", final=True)
    assert out == "the ███ ran"


def test_served_text_goes_through_the_filter(runs, tmp_path):
    from genlab.modalities.text.safety import TextFilter

    store = KeyStore(tmp_path / "keys.json")
    _, token = store.add("t")
    auth = {"Authorization": f"Bearer {token}"}
    body = {"prompt": "The", "max_tokens": 30, "temperature": 0.5, "n": 2, "seed": 3}
    plain = TestClient(create_app([runs[1]], store)).post("/v1/models/fox/text", json=body, headers=auth).json()
    assert any("fox" in t for t in plain["texts"]), plain  # the tiny model has learnt its one sentence
    client = TestClient(create_app([runs[1]], store, text_filter=TextFilter(["fox"])))
    r = client.post("/v1/models/fox/text", json=body, headers=auth).json()
    assert all("fox" not in t for t in r["texts"]) and any(r["filtered"])
    assert r["texts"] == [t.replace("fox", "███") for t in plain["texts"]]
    with client.stream("POST", "/v1/models/fox/text", json={**body, "stream": True}, headers=auth) as s:
        events = [json.loads(line[6:]) for line in s.iter_lines() if line.startswith("data: {")]
    streamed = ["", ""]
    for e in events:
        streamed[e["index"]] += e.get("text", "")
    assert streamed == r["texts"]
    assert 'genlab_filtered_samples_total{action="redacted"}' in client.get("/metrics").text


def test_int8_quantised_model_serves_close_to_float(runs, tmp_path):
    from genlab.pipeline import open_run
    from genlab.serve.app import quantize_int8

    run = open_run(runs[1])
    before = run.model.test_likelihood(run.dataset, run.config.eval, False)["bits_per_character"]
    assert quantize_int8(run.model) > 0
    after = run.model.test_likelihood(run.dataset, run.config.eval, False)["bits_per_character"]
    assert abs(after - before) < 0.05 * before  # int8 weights: a small change, not a broken model
    assert not any(type(m) is torch.nn.Linear for m in run.model.modules())
    store = KeyStore(tmp_path / "keys.json")
    _, token = store.add("t")
    client = TestClient(create_app([runs[1]], store, quantize=True))
    r = client.post("/v1/models/fox/text", json={"prompt": "The", "max_tokens": 10},
                    headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and len(r.json()["texts"]) == 1


@pytest.mark.parametrize("family", ["vae", "diffusion"])
def test_micro_batching_does_not_change_any_request(runs, tmp_path, family):
    """Concurrent requests batched into one forward pass get the images each would get alone (DDPM draws
    fresh noise at every step, so that is checked too)."""
    from concurrent.futures import ThreadPoolExecutor

    from genlab.modalities.image.batching import ImageBatcher
    from genlab.pipeline import generate, open_run, to_uint8
    from genlab.serve.app import Served

    if family == "vae":
        path = runs[0]
    else:
        path, _ = train_config(tiny_config("diffusion", name="diff", train={"steps": 3},
                                           model={"sampler": "ddpm", "sample_steps": 3}), tmp_path)
        path = path.root
    run = open_run(path)
    sizes = []
    batcher = ImageBatcher(Served(run), max_batch=64, max_wait=0.3, on_batch=sizes.append)
    requests = [(3, 11, 2), (2, 12, 5), (4, 13, 2), (1, 14, None), (2, 15, None)]
    with ThreadPoolExecutor(len(requests)) as pool:
        got = list(pool.map(lambda r: batcher.submit(r[0], r[1], r[2], {}), requests))
    assert max(sizes) > 1 and sum(sizes) == len(requests)  # some requests really shared a pass
    for (n, seed, label), images in zip(requests, got, strict=True):
        alone = generate(run, n, label=label, seed=seed)
        assert np.array_equal(to_uint8(images), to_uint8(alone))
        torch.testing.assert_close(images, alone, atol=1e-5, rtol=0)


def test_shutdown_drains_a_request_in_flight(tmp_path):
    """SIGTERM while a slow request is being served: it is answered in full, then the server exits."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import threading
    import time

    import httpx

    run, _ = train_config(tiny_config("diffusion", name="slow", train={"steps": 2},
                                      model={"timesteps": 100, "sample_steps": 100,
                                             "sampler": "ddpm"}), tmp_path)
    env = {**os.environ, "GENLAB_HOME": str(tmp_path), "OMP_NUM_THREADS": "1"}
    token = KeyStore(tmp_path / "keys.json").add("t")[1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "genlab.cli", "serve", str(run.root), "--port", str(port)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert wait_until_ready(f"http://127.0.0.1:{port}", 60)
        result = {}

        def slow_request():
            t0 = time.perf_counter()
            r = httpx.post(f"http://127.0.0.1:{port}/v1/models/slow/images", json={"n": 64},
                           headers={"Authorization": f"Bearer {token}"}, timeout=120)
            result.update(status=r.status_code, png=r.content[:4], seconds=time.perf_counter() - t0)

        client = threading.Thread(target=slow_request)
        client.start()
        time.sleep(0.5)
        server.send_signal(signal.SIGTERM)
        client.join(timeout=120)
        # uvicorn drains, then re-raises the captured SIGTERM so the exit status still says "terminated"
        assert server.wait(timeout=60) in (0, -signal.SIGTERM)
    finally:
        server.kill()
    assert result["status"] == 200 and result["png"] == b"\x89PNG" and result["seconds"] > 0.5
