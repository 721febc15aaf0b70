"""Benchmark: load test of `genlab serve` on loopback, with and without micro-batching. Not a test.

    python bench/serve_load.py RUN [--seconds 60] [--clients 32] [--n 1]

For each setting a fresh server (pinned to core 0, one torch thread) serves RUN; CLIENTS concurrent clients
(asyncio + httpx, pinned to core 1) post image requests of N images for SECONDS, each as fast as answers
come. Reports requests, status codes (and transport errors by name), throughput and latency percentiles; writes
bench/out/serve_load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from genlab.serve import wait_until_ready


async def load(url: str, token: str, seconds: float, clients: int, n: int) -> dict:
    latencies, codes = [], {}
    stop = time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=clients)) as client:

        async def worker(i: int) -> None:
            seed = i * 1_000_000
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                try:
                    r = await client.post(url, json={"n": n, "seed": seed}, headers=headers)
                    outcome = r.status_code
                except httpx.HTTPError as exc:  # counted, not hidden: a dropped connection is a failure too
                    outcome = type(exc).__name__
                latencies.append(time.perf_counter() - t0)
                codes[outcome] = codes.get(outcome, 0) + 1
                seed += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(clients)))
        wall = time.perf_counter() - t0
    lat = np.array(latencies) * 1000
    return {"requests": len(latencies), "status": codes, "seconds": round(wall, 1),
            "requests_per_second": round(len(latencies) / wall, 1),
            "images_per_second": round(len(latencies) * n / wall, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 1), "p99_ms": round(float(np.percentile(lat, 99)), 1)}


def serve_and_load(run: str, args, max_wait_ms: float, port: int) -> dict:
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "GENLAB_HOME": home, "OMP_NUM_THREADS": "1"}
        out = subprocess.run([sys.executable, "-m", "genlab.cli", "keys", "add", "load"], env=env,
                             capture_output=True, text=True, check=True).stdout
        token = out.split()[-1]
        server = subprocess.Popen(["taskset", "-c", "0", sys.executable, "-m", "genlab.cli", "serve", run,
                                   "--port", str(port), "--max-wait-ms", str(max_wait_ms), "--rate", "1000000",
                                   "--burst", "1000000", "--concurrent", str(args.clients)],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            if not wait_until_ready(f"http://127.0.0.1:{port}", 60):
                raise SystemExit("the server did not start")
            os.sched_setaffinity(0, {1})
            name = Path(run).name
            return asyncio.run(load(f"http://127.0.0.1:{port}/v1/models/{name}/images", token, args.seconds,
                                    args.clients, args.n))
        finally:
            server.terminate()
            server.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--n", type=int, default=1)
    args = ap.parse_args()
    results = {"run": args.run, "clients": args.clients, "n": args.n,
               "without batching": serve_and_load(args.run, args, 0, 8771),
               "with batching (max 64 images, 10 ms)": serve_and_load(args.run, args, 10, 8772)}
    Path("bench/out").mkdir(parents=True, exist_ok=True)
    Path("bench/out/serve_load.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
