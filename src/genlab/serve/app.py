"""The HTTP API of `genlab serve`: trained runs behind /v1, API keys, per-key limits, hard caps on every
request. Models are loaded once at start from their run directories (safetensors and JSON only); a request
names a model, never a path. Each modality adds its own endpoints (Modality.add_routes); this module holds what
they share and never asks which modality a run is."""

import json
import re
import threading
from collections.abc import Callable
from pathlib import Path

import torch
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from genlab.core.errors import GenlabError
from genlab.core.options import option_specs
from genlab.modalities.text.safety import TextFilter
from genlab.serve.keys import KeyStore
from genlab.serve.limits import KeyLimiter, Limits
from genlab.serve.observe import AccessLog, Metrics
from genlab.serve.requests import request_model, split_request


class Served:
    """One loaded run, its modality and the lock that serialises inference on it."""

    def __init__(self, run):
        self.run, self.lock = run, threading.Lock()
        self.modality = run.modality
        self.name = run.paths.root.name
        self.batcher = None  # a modality may attach a micro-batcher

    @property
    def endpoint(self) -> str:
        """Where to generate from it: the modality's path when absolute (chat: /v1/chat/completions), else
        /v1/models/NAME/<endpoint>."""
        path = self.modality.endpoint
        return path if path.startswith("/") else f"/v1/models/{self.name}/{path}"

    def describe(self) -> dict:
        """An entry of GET /v1/models: OpenAI's model object (id, object, created, owned_by) and genlab's
        details as extra fields, which OpenAI clients keep."""
        run = self.run
        metrics = {}
        if run.paths.metrics.is_file():
            try:
                metrics = self.modality.headline(json.loads(run.paths.metrics.read_text()))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                metrics = {}
        options = [s.http for cls in (self.modality.sample_options, run.model.sample_options)
                   for s in option_specs(cls)]
        made = run.paths.final_weights if run.paths.final_weights.is_file() else run.paths.config
        return {"id": self.name, "object": "model", "created": int(made.stat().st_mtime), "owned_by": "genlab",
                "name": self.name, "family": run.config.family, "modality": self.modality.name,
                "endpoint": self.endpoint, "dataset_fingerprint": run.dataset.fingerprint, "metrics": metrics,
                "sampling_options": options, "num_classes": run.dataset.spec().num_classes or None}


class Server:
    """What every modality's routes share: the served models, keys, per-key limits, caps, metrics and the text
    output filter."""

    def __init__(self, models: dict[str, Served], keys: KeyStore, limits: Limits, metrics: Metrics,
                 text_filter: TextFilter | None, batching: tuple[int, float] | None):
        self.models, self.keys, self.limits, self.metrics = models, keys, limits, metrics
        self.text_filter, self.batching = text_filter, batching
        self.limiter = KeyLimiter(limits)
        self.upload_routes: list[re.Pattern] = []  # paths whose bodies may be limits.max_upload_body_bytes

    def accept_uploads(self, path: str) -> None:
        """Let the route `path` (FastAPI's, with {parameters}) take bodies of up to limits.max_upload_body_bytes
        (uploaded images) instead of limits.max_body_bytes."""
        self.upload_routes.append(re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path)) + "$"))

    def body_limit(self, path: str) -> int:
        if any(p.match(path) for p in self.upload_routes):
            return self.limits.max_upload_body_bytes
        return self.limits.max_body_bytes

    def caller(self, request: Request) -> str:
        """The key id of the caller: `Authorization: Bearer <token>` or `X-API-Key: <token>` (a FastAPI
        dependency)."""
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else request.headers.get("x-api-key")
        key_id = self.keys.check(token)
        if key_id is None:
            raise HTTPException(401, "a valid API key is required (Authorization: Bearer <key>)",
                                headers={"WWW-Authenticate": "Bearer"})
        return key_id

    def slot(self, key_id: str) -> None:
        """Take one of the key's request slots (429 when it has none); give it back with `release`."""
        wait = self.limiter.acquire(key_id)
        if wait:
            raise HTTPException(429, "too many requests for this key", headers={"Retry-After": str(int(wait))})

    def release(self, key_id: str) -> None:
        self.limiter.release(key_id)

    def served(self, modality) -> list[Served]:
        return [m for m in self.models.values() if m.modality.name == modality.name]

    def model(self, name: str, modality) -> Served:
        """The served model `name`, which must be of `modality`: 404 when unknown, 400 naming its endpoint."""
        served = self.models.get(name)
        if served is None:
            raise HTTPException(404, f"no model named {name!r}; GET /v1/models lists them")
        if served.modality.name != modality.name:
            raise HTTPException(400, f"model {name!r} is a {served.modality.name} model: POST {served.endpoint}")
        return served

    def request_model(self, modality, name: str, common: dict[str, tuple]):
        """The request body of a modality's endpoint: `common` fields, the modality's sampling options and those
        of every served family of that modality (a family option another family does not take is a 400)."""
        families = {m.run.model.sample_options for m in self.served(modality)}
        return request_model(name, common, [modality.sample_options], sorted(families, key=lambda c: c.__name__))

    def options(self, served: Served, req, peers: list[Served] | None = None):
        """(modality options, family options) of a request to `served`, checked by the family; a family option
        that only another family of `peers` (default: the served models of its modality) takes is a 400. Without
        `peers` the body holds the modality's options; with them, only family options are read (None first)."""
        own = served.modality.sample_options if peers is None else None
        peers = self.served(served.modality) if peers is None else peers
        families = {s.http for m in peers for s in option_specs(m.run.model.sample_options)}
        mine, family, foreign = split_request(req, own, served.run.model.sample_options, families)
        if foreign:
            raise HTTPException(400, f"{foreign[0]} does not apply to model {served.name!r} (family "
                                     f"{served.run.config.family})")
        return mine, family

    def count_text(self, served: Served, texts: list[str]) -> None:
        """Characters and tokens of generated text (before the filter) for the metrics."""
        self.metrics.characters.labels(served.name).inc(sum(map(len, texts)))
        tokenizer = served.run.dataset.tokenizer
        self.metrics.tokens.labels(served.name).inc(sum(len(tokenizer.encode(t)) for t in texts if t))

    def filter_texts(self, texts: list[str]) -> list:
        """The output filter's FilterResult for each whole text (counted in the metrics); nothing filtered
        without a filter."""
        from genlab.modalities.text.safety import FilterResult

        if self.text_filter is None:
            return [FilterResult(t, False, False) for t in texts]
        results = [self.text_filter.apply(t) for t in texts]
        for r in results:
            if r.filtered:
                self.metrics.filtered.labels("refused" if r.refused else "redacted").inc()
        return results


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes is answered 413 before it is read in full."""

    def __init__(self, app, limit: int | Callable[[str], int]):
        self.app = app
        self.limit_for = limit if callable(limit) else (lambda path: limit)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limit_for(scope.get("path", ""))
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            return await _too_large(scope, receive, send, limit)
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise HTTPException(413, f"request body over {limit} bytes")
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
               batching: tuple[int, float] | None = (64, 0.01), index: str | Path | None = None) -> FastAPI:
    """The app serving `run_dirs`; `text_filter` (optional) redacts or refuses generated text; `quantize`
    applies dynamic int8 quantisation to every model's Linear layers; `batching` = (max images, max wait in
    seconds) micro-batches image requests per model (None: each request alone); `index`: a retrieval index that
    grounds the answers of every served run that can use one (chat runs), with citations in the responses."""
    from genlab.pipeline import attach_index, open_run

    limits = limits or Limits()
    models: dict[str, Served] = {}
    for path in run_dirs:
        served = Served(open_run(path))
        if index is not None:
            attach_index(served.run, index, strict=False)
        if quantize:
            quantize_int8(served.run.model)
        if served.name in models:
            raise GenlabError(f"two runs are named {served.name!r}; serve runs with distinct folder names")
        models[served.name] = served
    if index is not None and not any(getattr(m.run.dataset, "grounding", None) for m in models.values()):
        raise GenlabError("--index grounds chat answers, and none of the served runs is a chat run")
    metrics = Metrics()
    server = Server(models, keys, limits, metrics, text_filter, batching)
    app = FastAPI(title="genlab", version="1", description="Generate from trained genlab runs.")
    app.add_middleware(BodyLimit, limit=server.body_limit)  # upload routes (modalities add them) take more
    app.add_middleware(AccessLog, metrics=metrics)  # outermost: it also sees what BodyLimit refuses
    metrics.queue_depth.set_function(lambda: sum(m.batcher.depth for m in models.values() if m.batcher))

    @app.exception_handler(GenlabError)
    async def user_error(request: Request, exc: GenlabError):
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        """422 naming each bad field; the offending input is not echoed (NaN or 10**30 cannot be JSON)."""
        detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
                  for e in exc.errors()]
        return JSONResponse({"detail": detail}, status_code=422)

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

    from genlab.registry import modality, names
    from genlab.serve.openai import add_openai_routes

    add_openai_routes(app, server)  # GET /v1/models and POST /v1/completions, for every language model

    for name in names("modality"):  # every modality's endpoints, also without a model of it (then 404 / 400)
        modality(name).add_routes(app, server)
    return app
