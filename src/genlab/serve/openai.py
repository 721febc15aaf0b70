"""OpenAI's HTTP formats for `genlab serve`, so any OpenAI client or tool talks to genlab runs. What every route
speaking them shares lives here: GET /v1/models, POST /v1/completions (registered here once, for every served
language model: a run whose dataset has a tokenizer continues plain text whatever its modality, so the route asks
for that capability and never for a modality) and the machinery of POST /v1/chat/completions, whose route the chat
modality adds (genlab.modalities.chat.routes).

What the generation routes accept:
- OpenAI's fields that genlab honours: model, messages / prompt (a string or a list of one), max_tokens (or
  max_completion_tokens), temperature, top_p, n, stop (a string or up to 4), seed (none: a fresh one), stream,
  stream_options.include_usage; and the extra sampling options of the served families (top_k,
  repetition_penalty) as extra fields;
- OpenAI fields that clients send with no effect asked for (user, metadata, store, frequency_penalty=0,
  logprobs=false, tools=[] ... see NEUTRAL and IGNORED): accepted and ignored. The same fields asking for
  something (frequency_penalty=0.5, logprobs=true, tools) are refused with a 400 naming the field, since answering
  without it would pass off a different answer as the one asked for; any other unknown field is a 400 too.

Errors use OpenAI's body {"error": {"message", "type", "param", "code"}} (what the openai client turns into its
exceptions): 400 for every bad body (types, bounds, caps, unknown fields, a bad conversation), 401, 404 for an
unknown model, 413, 429 with Retry-After. The genlab-native routes keep FastAPI's {"detail"} body.
"""


import json
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

import torch
from fastapi import Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRoute, APIRouter
from pydantic import BaseModel, ConfigDict, Field

from genlab.core.errors import GenlabError
from genlab.serve.requests import request_model

NEUTRAL: dict[str, tuple] = {  # OpenAI fields accepted at these values (and null), refused otherwise
    "frequency_penalty": (0,), "presence_penalty": (0,), "logprobs": (False,), "top_logprobs": (0,),
    "logit_bias": ({},), "tools": ([],), "functions": ([],), "tool_choice": ("none", "auto"),
    "function_call": ("none", "auto"), "parallel_tool_calls": (True, False), "response_format": ({"type": "text"},),
    "modalities": (["text"],), "echo": (False,), "best_of": (1,), "suffix": ("",),
}
IGNORED = ("user", "metadata", "store", "service_tier", "safety_identifier", "prompt_cache_key", "verbosity",
           "reasoning_effort")  # bookkeeping for OpenAI's platform: no bearing on what is generated

ERROR_CODES = {401: "invalid_api_key", 404: "model_not_found", 413: "request_too_large", 429: "rate_limit_exceeded"}


def error_response(status: int, message: str, param: str | None = None, code: str | None = None,
                   headers: dict | None = None) -> JSONResponse:
    """OpenAI's error body."""
    kind = "rate_limit_error" if status == 429 else "invalid_request_error" if status < 500 else "server_error"
    body = {"message": message, "type": kind, "param": param, "code": code or ERROR_CODES.get(status)}
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def validation_error(exc: RequestValidationError) -> JSONResponse:
    """A 400 naming every bad field (the offending input is not echoed: NaN or 10**30 cannot be JSON)."""
    problems, first, code = [], None, "invalid_value"
    for e in exc.errors():
        loc = [str(x) for x in e.get("loc", ()) if x != "body"]
        param = ".".join(loc) or None
        if e.get("type") == "extra_forbidden":
            problems.append(f"unknown field {param!r} (GET /v1/models lists each model's sampling_options)")
            code = "unknown_parameter"
        elif e.get("type") == "json_invalid":
            problems.append("the body is not valid JSON")
            param = None
        else:
            problems.append(f"{param}: {e.get('msg', 'invalid')}" if param else e.get("msg", "invalid"))
        first = first or param
    return error_response(400, "; ".join(problems) or "invalid request", first, code)


class OpenAIRoute(APIRoute):
    """A route whose errors (HTTPException from keys, limits and lookups, a bad body, a GenlabError) answer in
    OpenAI's format; the app's handlers keep FastAPI's for every other route."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def route(request: Request):
            try:
                return await handler(request)
            except RequestValidationError as exc:
                return validation_error(exc)
            except HTTPException as exc:
                return error_response(exc.status_code if exc.status_code != 422 else 400, str(exc.detail),
                                      headers=exc.headers)
            except GenlabError as exc:
                return error_response(400, str(exc))

        return route


def openai_router() -> APIRouter:
    return APIRouter(route_class=OpenAIRoute)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


StopList = Annotated[list[Annotated[str, Field(min_length=1)]], Field(max_length=4)]


def request_body(name: str, fields: dict[str, tuple], peers: list) -> type[BaseModel]:
    """A strict request body: `fields`, OpenAI's common ones, the neutral and ignored ones, and the sampling
    options of the families of `peers` (max_tokens, temperature, top_p ... under their HTTP names)."""
    common = {
        "model": (str, Field(..., max_length=200, description="a model id GET /v1/models lists")),
        "n": (int, Field(1, ge=1, description="number of choices")),
        "stop": (Annotated[str, Field(min_length=1)] | StopList | None, Field(None, description="end at this string")),
        "seed": (int | None, Field(None, ge=0, le=2**62, description="the same seed, the same answer")),
        "stream": (bool, Field(False, description="server-sent events in OpenAI's chunk format")),
        "stream_options": (StreamOptions | None, Field(None, description="include_usage: a last chunk with usage")),
        "max_completion_tokens": (int | None, Field(None, ge=1, description="another name for max_tokens")),
        **{k: (Any, Field(None, description=f"accepted at {v} (OpenAI's default), else refused"))
           for k, v in NEUTRAL.items()},
        **{k: (Any, Field(None, description="accepted and ignored")) for k in IGNORED},
        **fields,
    }
    families = sorted({m.run.model.sample_options for m in peers}, key=lambda c: c.__name__)
    return request_model(name, common, [], families)


def check_neutral(req: BaseModel) -> None:
    """A 400 for an OpenAI field asking for what genlab does not do (the route's first check)."""
    for field, allowed in NEUTRAL.items():
        value = getattr(req, field)
        if value is not None and value not in allowed:
            raise GenlabError(f"{field}={json.dumps(value)[:60]} is not supported by genlab (accepted: "
                              f"{' or '.join(json.dumps(a) for a in allowed)} or null)")


@dataclass(frozen=True)
class Shape:
    """How one OpenAI endpoint writes its answer: object names, a whole choice, a streamed piece, and what the
    first and last chunk of each choice carry."""

    id_prefix: str
    object: str
    chunk_object: str
    choice: Callable[[str], dict]
    piece: Callable[[str], dict]
    opening: dict | None
    closing: dict


CHAT = Shape("chatcmpl", "chat.completion", "chat.completion.chunk",
             lambda t: {"message": {"role": "assistant", "content": t}}, lambda t: {"delta": {"content": t}},
             {"delta": {"role": "assistant", "content": ""}}, {"delta": {}})
COMPLETION = Shape("cmpl", "text_completion", "text_completion", lambda t: {"text": t, "logprobs": None},
                   lambda t: {"text": t, "logprobs": None}, None, {"text": "", "logprobs": None})


def complete(server, served, key_id: str, req, peers: list, prompt_chars: int, shape: Shape,
             produce: Callable[..., Iterator[list[str]]]):
    """Answer an OpenAI generation request to `served`: caps, the key's slot, the model's lock, the output filter
    (a refused choice ends empty with finish_reason content_filter), the metrics, then JSON or server-sent events
    in `shape`. `produce(seed=, n=, stop=, report=, **sampling)` yields pieces (stream_text or stream_chat bound to
    the prompt, already checked by the caller, so a bad prompt is a 400 before any stream starts)."""
    if req.max_completion_tokens is not None:
        if getattr(req, "max_tokens", None) not in (None, req.max_completion_tokens):
            raise GenlabError("max_tokens and max_completion_tokens differ: give one")
        req = req.model_copy(update={"max_tokens": req.max_completion_tokens})
    _, family = server.options(served, req, peers)
    sampling = vars(family)
    limits = server.limits
    for value, cap, what in ((req.n, limits.max_text_samples, "n"),
                             (sampling.get("max_new_tokens", 0), limits.max_new_tokens, "max_tokens"),
                             (prompt_chars, limits.max_prompt_chars, "the prompt's length in characters")):
        if value > cap:
            raise GenlabError(f"{what} must be at most {cap}")
    stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
    seed = req.seed if req.seed is not None else secrets.randbelow(2**62)
    report: dict = {}
    head = {"id": f"{shape.id_prefix}-{uuid.uuid4().hex}", "created": int(time.time()), "model": served.name}

    def usage() -> dict:
        prompt, completion = report.get("prompt_tokens", 0), sum(report.get("completion_tokens", []))
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def grounded() -> dict:
        """genlab's extra fields: the passages an answer was grounded in (chat runs served with an index)."""
        return {k: report[k] for k in ("citations", "abstained") if k in report}

    def pieces():
        with served.lock, torch.inference_mode():
            yield from produce(seed=seed, n=req.n, stop=stop, report=report, **sampling)

    server.slot(key_id)
    if not req.stream:
        texts = [""] * req.n
        try:
            for step in pieces():
                texts = [a + b for a, b in zip(texts, step, strict=True)]
        finally:
            server.release(key_id)
        server.count_text(served, texts)
        choices = [{"index": i, **shape.choice(r.text),
                    "finish_reason": "content_filter" if r.refused else report["finish_reason"][i]}
                   for i, r in enumerate(server.filter_texts(texts))]
        return {**head, "object": shape.object, "choices": choices, "usage": usage(), **grounded()}
    include_usage = bool(req.stream_options and req.stream_options.include_usage)

    def chunk(choices: list[dict], **extra) -> str:
        body = {**head, "object": shape.chunk_object, "choices": choices, **extra}
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    def events():
        filters = TextStreams(server, req.n)
        try:
            if shape.opening is not None:
                yield chunk([{"index": i, **shape.opening, "finish_reason": None} for i in range(req.n)])
            for step in pieces():
                for i, text in enumerate(filters.feed(step)):
                    if text:
                        yield chunk([{"index": i, **shape.piece(text), "finish_reason": None}])
            for i, text in enumerate(filters.finish()):
                if text:
                    yield chunk([{"index": i, **shape.piece(text), "finish_reason": None}])
            yield chunk([{"index": i, **shape.closing, "finish_reason": "content_filter" if filters.refused(i)
                          else report["finish_reason"][i]} for i in range(req.n)], **grounded())
            if include_usage:
                yield chunk([], usage=usage())
            yield "data: [DONE]\n\n"
        except GenlabError as exc:
            yield f"data: {json.dumps({'error': {'message': str(exc), 'type': 'invalid_request_error'}})}\n\n"
        finally:
            server.count_text(served, filters.produced)
            server.release(key_id)

    return StreamingResponse(events(), media_type="text/event-stream")


class TextStreams:
    """`n` streamed texts through the server's output filter (when it has one): a blocked term split across
    pieces is still caught, and each redaction or refusal is counted once in the metrics."""

    def __init__(self, server, n: int):
        from genlab.modalities.text.safety import StreamFilter

        self.metrics, self.produced = server.metrics, [""] * n
        self.filters = [StreamFilter(server.text_filter) for _ in range(n)] if server.text_filter else None

    def feed(self, step: list[str]) -> list[str]:
        self.produced = [a + b for a, b in zip(self.produced, step, strict=True)]
        if self.filters is None:
            return step
        out = []
        for f, piece in zip(self.filters, step, strict=True):
            was_refused = f.refused
            out.append(f.feed(piece))
            if f.refused and not was_refused:
                self.metrics.filtered.labels("refused").inc()
        return out

    def finish(self) -> list[str]:
        if self.filters is None:
            return [""] * len(self.produced)
        out = [f.feed("", final=True) for f in self.filters]
        for f in self.filters:
            if f.filtered and not f.refused:
                self.metrics.filtered.labels("redacted").inc()
        return out

    def refused(self, i: int) -> bool:
        return self.filters is not None and self.filters[i].refused


def language_models(server) -> list:
    """The served runs that continue text: those whose dataset has a tokenizer, whatever their modality."""
    return [m for m in server.models.values() if getattr(m.run.dataset, "tokenizer", None) is not None]


def add_openai_routes(app, server) -> None:
    """GET /v1/models (and /v1/models/ID) in OpenAI's list format, and POST /v1/completions: a prompt continued
    as plain text by any served language model (text and chat runs alike)."""
    from genlab.modalities.text.generate import stream_text

    router = openai_router()
    peers = language_models(server)
    CompletionRequest = request_body("CompletionRequest", {  # noqa: N806
        "prompt": (str | Annotated[list[str], Field(min_length=1, max_length=1)],
                   Field("", description="the text to continue (a string, or a list of one string)")),
    }, peers)

    @router.get("/v1/models")
    def list_models() -> dict:
        return {"object": "list", "data": [m.describe() for m in server.models.values()]}

    @router.get("/v1/models/{model}")
    def retrieve_model(model: str) -> dict:
        if model not in server.models:
            raise HTTPException(404, f"no model named {model!r}; GET /v1/models lists them")
        return server.models[model].describe()

    @router.post("/v1/completions")
    def completions(req: CompletionRequest, key_id: str = Depends(server.caller)):  # type: ignore[valid-type]
        check_neutral(req)
        served = server.models.get(req.model)
        if served is None:
            raise HTTPException(404, f"no model named {req.model!r}; GET /v1/models lists them")
        if served not in peers:
            raise GenlabError(f"model {req.model!r} is {served.modality.model_noun}, which does not continue text: "
                              f"POST {served.endpoint}")
        prompt = req.prompt if isinstance(req.prompt, str) else req.prompt[0]
        served.run.dataset.tokenizer.encode(prompt)  # an unknown character: 400 now, also before a stream

        def produce(**kw):
            return stream_text(served.run, prompt, **kw)

        return complete(server, served, key_id, req, peers, len(prompt), COMPLETION, produce)

    app.include_router(router)
