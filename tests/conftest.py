"""Shared fixtures: small configs and a way to call the CLI in-process and see its exit code and output."""

from __future__ import annotations

import contextlib
import os
import sys

import pytest
import torch

from genlab import cli
from genlab.config import config_from_dict

torch.set_num_threads(1)
os.environ["OMP_NUM_THREADS"] = "1"  # and a fixed count for genlab's trainer and CLI subprocesses (core.threads)


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Classifier weights and cached features go to a per-session folder, never the user's cache."""
    os.environ["GENLAB_CACHE"] = str(tmp_path_factory.mktemp("genlab-cache"))
    os.environ["GENLAB_QUIET"] = "1"  # no timed progress lines in the stderr the tests read
    os.environ["GENLAB_INCEPTION_WEIGHTS"] = str(tmp_path_factory.mktemp("no-weights") / "missing.pth")


@pytest.fixture
def run_cli(monkeypatch, capsys):
    """Call `genlab ARGS...` like a shell would; returns (exit code, stdout, stderr)."""

    def call(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["genlab", *map(str, args)])
        code = 0
        try:
            cli.main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out = capsys.readouterr()
        return code, out.out, out.err

    return call


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got: {err!r}"
    assert lines[0].startswith("error: ")
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"


def tiny_config(family: str = "vae", **sections):
    """A digits run small enough for unit tests; `sections` override parts, e.g. train={"steps": 5}."""
    raw = {
        "name": "t",
        "family": family,
        "data": {"source": "digits"},
        "model": {"conditional": True},
        "train": {"steps": 6, "batch_size": 16, "val_every": 0, "checkpoint_every": 0, "log_every": 2},
        "eval": {"n_samples": 50},
    }
    if family == "vae":
        raw["model"].update({"widths": [8, 16], "latent_dim": 4})
        raw["eval"].update({"iwae_k": 20, "iwae_images": 30})  # eval keys of the VAE family
    elif family == "diffusion":
        raw["model"].update({"base_channels": 8, "channel_mults": [1, 2], "timesteps": 50, "sample_steps": 4})
        raw["eval"].update({"vlb_steps": 5, "vlb_images": 20})
    else:
        raw["model"].update({"generator_widths": [8, 16], "discriminator_widths": [8, 16], "latent_dim": 8})
    for key, value in sections.items():
        if isinstance(value, dict):
            raw.setdefault(key, {}).update(value)
        else:
            raw[key] = value
    return config_from_dict(raw)


def tiny_chat_config(folder, name: str = "talk", conversations: int = 60, steps: int = 30):
    """A character GPT on `conversations` one-turn sums ("Add 3 and 4." -> "3 plus 4 is 7."), written to
    FOLDER/chat.jsonl: a chat run small enough for unit tests."""
    import json
    from pathlib import Path

    path = Path(folder) / "chat.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for i in range(conversations):
            a, b = i % 7, i % 5
            turns = [{"role": "user", "content": f"Add {a} and {b}."},
                     {"role": "assistant", "content": f"{a} plus {b} is {a + b}."}]
            f.write(json.dumps({"messages": turns}) + "\n")
    return config_from_dict({"name": name, "family": "gpt", "model": {"layers": 1, "heads": 2, "width": 16},
                             "data": {"source": "chat", "path": str(path), "block_size": 64},
                             "train": {"steps": steps, "batch_size": 8, "lr": 1e-2, "val_every": 0,
                                       "checkpoint_every": 0}})


@contextlib.contextmanager
def serve_in_thread(app):
    """Serve `app` with uvicorn on a free local port in a daemon thread; yields its base URL."""
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
