"""POST /v1/models/NAME/text: completions as JSON or as server-sent events, through the output filter."""

import json

import torch
from fastapi import Depends, HTTPException
from fastapi.responses import StreamingResponse
from pydantic import Field

from genlab.core.errors import GenlabError
from genlab.modalities.text.safety import StreamFilter


def add_text_routes(app, server, modality) -> None:
    from genlab.modalities.text.generate import generate_text, stream_text

    TextRequest = server.request_model(modality, "TextRequest", {  # noqa: N806
        "n": (int, Field(1, ge=1, description="number of completions")),
        "seed": (int, Field(0, ge=0, le=2**62)),
        "stream": (bool, Field(False, description="server-sent events, one per piece of text")),
    })
    limits, metrics, text_filter = server.limits, server.metrics, server.text_filter

    @app.post("/v1/models/{name}/text")
    def text(name: str, req: TextRequest, key_id: str = Depends(server.caller)):  # type: ignore[valid-type]
        served = server.model(name, modality)
        mine, family = server.options(served, req)
        sampling = vars(family)

        for value, cap, what in ((req.n, limits.max_text_samples, "n"),
                                 (family.max_new_tokens, limits.max_new_tokens, "max_tokens"),
                                 (len(mine.prompt), limits.max_prompt_chars, "the prompt's length")):
            if value > cap:
                raise HTTPException(422, f"{what} must be at most {cap}")
        served.run.dataset.tokenizer.encode(mine.prompt)  # an unknown character: 400 now, also before a stream
        server.slot(key_id)
        if not req.stream:
            try:
                with served.lock, torch.inference_mode():
                    texts = generate_text(served.run, mine.prompt, req.n, req.seed, stop=mine.stop, **sampling)
            finally:
                server.release(key_id)
            server.count_text(served, texts)
            results = server.filter_texts(texts)
            return {"model": name, "prompt": mine.prompt, "texts": [r.text for r in results],
                    "filtered": [r.filtered for r in results]}

        def event(i: int, **fields) -> str:
            return f"data: {json.dumps({'index': i, **fields}, ensure_ascii=False)}\n\n"

        def events():
            filters = [StreamFilter(text_filter) for _ in range(req.n)] if text_filter is not None else None
            produced = [""] * req.n
            try:
                with served.lock, torch.inference_mode():
                    for pieces in stream_text(served.run, mine.prompt, req.seed, req.n, mine.stop, **sampling):
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
                server.count_text(served, produced)
                server.release(key_id)

        return StreamingResponse(events(), media_type="text/event-stream")
