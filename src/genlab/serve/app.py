"""The HTTP API of `genlab serve`: trained runs behind /v1, API keys, per-key limits, hard caps on every
request. Models are loaded once at start from their run directories (safetensors and JSON only); a request
names a model, never a path."""

from __future__ import annotations

import base64
import json
import threading
from pathlib import Path
from typing import Literal

import torch
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from genlab.data import TextDataset
from genlab.errors import GenlabError
from genlab.serve.batching import ImageBatcher
from genlab.serve.keys import KeyStore
from genlab.serve.limits import KeyLimiter, Limits
from genlab.serve.observe import AccessLog, Metrics
from genlab.serve.safety import StreamFilter, TextFilter


class Served:
    """One loaded run and the lock that serialises inference on it."""

    def __init__(self, run):
        self.run, self.lock = run, threading.Lock()
        self.text = isinstance(run.dataset, TextDataset)
        self.batcher: ImageBatcher | None = None

    def describe(self) -> dict:
        run = self.run
        metrics = {}
        if run.paths.metrics.is_file():
            try:
                metrics = json.loads(run.paths.metrics.read_text()).get("likelihood", {}).get("headline", {})
            except json.JSONDecodeError:
                metrics = {}
        return {"name": run.paths.root.name, "family": run.config.family, "modality": "text" if self.text else "image",
                "dataset_fingerprint": run.dataset.fingerprint, "metrics": metrics,
                "sampling_options": list(run.model.sampling_options),
                "num_classes": None if self.text else run.dataset.spec().num_classes}


class ImageRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int = Field(16, ge=1)
    seed: int = Field(0, ge=0, le=2**62)
    label: int | None = Field(None, ge=0)
    steps: int | None = Field(None, ge=1, le=1000)
    guidance: float | None = Field(None, ge=0, le=50)
    format: Literal["png", "json"] = "png"


class TextRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: str = ""
    n: int = Field(1, ge=1)
    max_tokens: int = Field(200, ge=1)
    temperature: float = Field(1.0, ge=0, le=10)
    top_k: int | None = Field(None, ge=1)
    top_p: float | None = Field(None, gt=0, le=1)
    repetition_penalty: float = Field(1.0, gt=0, le=10)
    stop: list[str] = Field(default_factory=list, max_length=4)
    seed: int = Field(0, ge=0, le=2**62)
    stream: bool = False


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes is answered 413 before it is read in full."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            return await _too_large(scope, receive, send, self.limit)
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise HTTPException(413, f"request body over {self.limit} bytes")
            return message

        return await self.app(scope, limited_receive, send)


async def _too_large(scope, receive, send, limit: int):
    response = JSONResponse({"detail": f"request body over {limit} bytes"}, status_code=413)
    await response(scope, receive, send)


def quantize_int8(model: torch.nn.Module) -> int:
    """Dynamic int8 quantisation of every nn.Linear, in place (int8 weights, activations quantised on the fly):
    worth it for Linear-heavy models on CPU, see docs/benchmarks.md. Returns how many layers it replaced."""
    import warnings

    count = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization announces its move to torchao
        torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    return count


def create_app(run_dirs: list[str | Path], keys: KeyStore, limits: Limits | None = None,
               text_filter: TextFilter | None = None, quantize: bool = False,
               batching: tuple[int, float] | None = (64, 0.01)) -> FastAPI:
    """The app serving `run_dirs`; `text_filter` (optional) redacts or refuses generated text; `quantize`
    applies dynamic int8 quantisation to every model's Linear layers; `batching` = (max images, max wait in
    seconds) micro-batches image requests per model (None: each request alone)."""
    from genlab.pipeline import open_run

    limits = limits or Limits()
    models: dict[str, Served] = {}
    for path in run_dirs:
        served = Served(open_run(path))
        if quantize:
            quantize_int8(served.run.model)
        name = served.run.paths.root.name
        if name in models:
            raise GenlabError(f"two runs are named {name!r}; serve runs with distinct folder names")
        models[name] = served
    limiter = KeyLimiter(limits)
    metrics = Metrics()
    if batching is not None:
        for served in models.values():
            if not served.text:
                served.batcher = ImageBatcher(served, batching[0], batching[1], metrics.batch_requests.observe)
    metrics.queue_depth.set_function(lambda: sum(m.batcher.depth for m in models.values() if m.batcher))
    app = FastAPI(title="genlab", version="1", description="Generate from trained genlab runs.")
    app.add_middleware(BodyLimit, limit=limits.max_body_bytes)
    app.add_middleware(AccessLog, metrics=metrics)  # outermost: it also sees what BodyLimit refuses

    @app.exception_handler(GenlabError)
    async def user_error(request: Request, exc: GenlabError):
        return JSONResponse({"detail": str(exc)}, status_code=400)

    def caller(request: Request) -> str:
        """The key id of the caller: `Authorization: Bearer <token>` or `X-API-Key: <token>`."""
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else request.headers.get("x-api-key")
        key_id = keys.check(token)
        if key_id is None:
            raise HTTPException(401, "a valid API key is required (Authorization: Bearer <key>)",
                                headers={"WWW-Authenticate": "Bearer"})
        return key_id

    def slot(key_id: str) -> None:
        wait = limiter.acquire(key_id)
        if wait:
            raise HTTPException(429, "too many requests for this key", headers={"Retry-After": str(int(wait))})

    def model(name: str, text: bool) -> Served:
        served = models.get(name)
        if served is None:
            raise HTTPException(404, f"no model named {name!r}; GET /v1/models lists them")
        if served.text != text:
            kind = "text" if served.text else "images"
            raise HTTPException(400, f"model {name!r} generates {kind}")
        return served

    @app.get("/", include_in_schema=False)
    def playground() -> Response:
        """A small page to try the models (plain HTML and JavaScript; it calls the API with your key)."""
        html = (Path(__file__).parent / "playground.html").read_text(encoding="utf-8")
        return Response(html, media_type="text/html; charset=utf-8")

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> dict:
        return {"status": "ready", "models": len(models)}

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    def list_models() -> dict:
        return {"models": [m.describe() for m in models.values()]}

    @app.post("/v1/models/{name}/images", responses={200: {"content": {"image/png": {}}}})
    def images(name: str, req: ImageRequest, key_id: str = Depends(caller)):
        served = model(name, text=False)
        if req.n > limits.max_images:
            raise HTTPException(422, f"n must be at most {limits.max_images}")
        options = {k: v for k, v in {"steps": req.steps, "guidance": req.guidance}.items() if v is not None}
        from genlab.pipeline import generate, image_grid, png_bytes, sampling_options, to_uint8

        sampling_options(served.run, options)  # checked per request, so one bad request fails no batch
        if req.label is not None:
            served.run.model.sample_labels(1, torch.tensor([req.label]), None)
        slot(key_id)
        try:
            if served.batcher is not None:
                pictures = served.batcher.submit(req.n, req.seed, req.label, options)
            else:
                with served.lock, torch.inference_mode():
                    pictures = generate(served.run, req.n, label=req.label, seed=req.seed, **options)
        finally:
            limiter.release(key_id)
        metrics.images.labels(name).inc(req.n)
        if req.format == "png":
            return Response(png_bytes(image_grid(pictures)), media_type="image/png")
        encoded = []
        for picture in to_uint8(pictures):
            encoded.append(base64.b64encode(png_bytes(picture[0] if picture.shape[0] == 1
                                                      else picture.transpose(1, 2, 0))).decode())
        return {"model": name, "n": req.n, "seed": req.seed, "images": encoded}

    @app.post("/v1/models/{name}/text")
    def text(name: str, req: TextRequest, key_id: str = Depends(caller)):
        from genlab.pipeline import generate_text, stream_text

        served = model(name, text=True)

        def count_text(texts: list[str]) -> None:
            metrics.characters.labels(name).inc(sum(map(len, texts)))
            tokenizer = served.run.dataset.tokenizer
            metrics.tokens.labels(name).inc(sum(len(tokenizer.encode(t)) for t in texts if t))

        for value, cap, what in ((req.n, limits.max_text_samples, "n"),
                                 (req.max_tokens, limits.max_new_tokens, "max_tokens"),
                                 (len(req.prompt), limits.max_prompt_chars, "the prompt's length")):
            if value > cap:
                raise HTTPException(422, f"{what} must be at most {cap}")
        sampling = {"max_new_tokens": req.max_tokens, "temperature": req.temperature, "top_k": req.top_k,
                    "top_p": req.top_p, "repetition_penalty": req.repetition_penalty}
        served.run.dataset.tokenizer.encode(req.prompt)  # an unknown character: 400 now, also before a stream
        slot(key_id)
        if not req.stream:
            try:
                with served.lock, torch.inference_mode():
                    texts = generate_text(served.run, req.prompt, req.n, req.seed, stop=req.stop, **sampling)
            finally:
                limiter.release(key_id)
            count_text(texts)
            filtered = [False] * len(texts)
            if text_filter is not None:
                results = [text_filter.apply(t) for t in texts]
                texts, filtered = [r.text for r in results], [r.filtered for r in results]
                for r in results:
                    if r.filtered:
                        metrics.filtered.labels("refused" if r.refused else "redacted").inc()
            return {"model": name, "prompt": req.prompt, "texts": texts, "filtered": filtered}

        def event(i: int, **fields) -> str:
            return f"data: {json.dumps({'index': i, **fields}, ensure_ascii=False)}\n\n"

        def events():
            filters = [StreamFilter(text_filter) for _ in range(req.n)] if text_filter is not None else None
            produced = [""] * req.n
            try:
                with served.lock, torch.inference_mode():
                    for pieces in stream_text(served.run, req.prompt, req.seed, req.n, req.stop, **sampling):
                        produced = [a + b for a, b in zip(produced, pieces, strict=True)]
                        for i, piece in enumerate(pieces):
                            if filters is not None:
                                was_refused = filters[i].refused
                                piece = filters[i].feed(piece)
                                if filters[i].refused and not was_refused:
                                    metrics.filtered.labels("refused").inc()
                                    yield event(i, refused=True)
                            if piece:
                                yield event(i, text=piece)
                for i, f in enumerate(filters or []):
                    if rest := f.feed("", final=True):
                        yield event(i, text=rest)
                    if f.filtered and not f.refused:
                        metrics.filtered.labels("redacted").inc()
                yield "data: [DONE]\n\n"
            except GenlabError as exc:
                yield f"event: error\ndata: {json.dumps({'detail': str(exc)})}\n\n"
            finally:
                count_text(produced)
                limiter.release(key_id)

        return StreamingResponse(events(), media_type="text/event-stream")

    return app
