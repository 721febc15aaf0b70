"""POST /v1/models/NAME/images: a PNG grid or base64 PNGs, micro-batched per model."""

import base64
from typing import Literal

import torch
from fastapi import Depends, HTTPException
from fastapi.responses import Response
from pydantic import Field


def add_image_routes(app, server, modality) -> None:
    from genlab.modalities.image.batching import ImageBatcher
    from genlab.modalities.image.samples import generate_images, image_grid, png_bytes, to_uint8

    if server.batching is not None:
        for served in server.served(modality):
            served.batcher = ImageBatcher(served, server.batching[0], server.batching[1],
                                          server.metrics.batch_requests.observe)
    ImageRequest = server.request_model(modality, "ImageRequest", {  # noqa: N806
        "n": (int, Field(16, ge=1, description="number of images")),
        "seed": (int, Field(0, ge=0, le=2**62)),
        "format": (Literal["png", "json"], Field("png", description="one PNG grid, or JSON with a PNG per image")),
    })

    @app.post("/v1/models/{name}/images", responses={200: {"content": {"image/png": {}}}})
    def images(name: str, req: ImageRequest, key_id: str = Depends(server.caller)):  # type: ignore[valid-type]
        served = server.model(name, modality)
        if req.n > server.limits.max_images:
            raise HTTPException(422, f"n must be at most {server.limits.max_images}")
        mine, family = server.options(served, req)
        options = {k: v for k, v in vars(family).items() if v is not None}
        if mine.label is not None:  # checked per request, so one bad request fails no batch
            served.run.model.sample_labels(1, torch.tensor([mine.label]), None)
        server.slot(key_id)
        try:
            if served.batcher is not None:
                pictures = served.batcher.submit(req.n, req.seed, mine.label, options)
            else:
                with served.lock, torch.inference_mode():
                    pictures = generate_images(served.run.model, req.n, mine.label, req.seed, family)
        finally:
            server.release(key_id)
        server.metrics.images.labels(name).inc(req.n)
        if req.format == "png":
            return Response(png_bytes(image_grid(pictures)), media_type="image/png")
        encoded = [base64.b64encode(png_bytes(p[0] if p.shape[0] == 1 else p.transpose(1, 2, 0))).decode()
                   for p in to_uint8(pictures)]
        return {"model": name, "n": req.n, "seed": req.seed, "images": encoded}
