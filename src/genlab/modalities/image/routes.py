"""POST /v1/models/NAME/images: a PNG grid or base64 PNGs, micro-batched per model; POST
/v1/models/NAME/edits/{inpaint,img2img,transfer}: an uploaded image edited by the run."""

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


def add_edit_routes(app, server, modality) -> None:
    """POST /v1/models/NAME/edits/{inpaint,img2img,transfer}: a JSON body with base64 PNGs (`image`, and `mask` for
    inpainting: white = fill), answered with the edited image as a PNG. Each decoded upload is at most
    limits.max_upload_bytes and limits.max_upload_pixels; it must be the run's size unless `resize` is true. A
    corrupt or wrong-sized image or mask is a 400 naming the problem, an oversized one a 413."""
    from pydantic import create_model

    from genlab.modalities.image import edit
    from genlab.serve.requests import STRICT

    common = {
        "image": (str, Field(..., description="the image: base64 of a PNG (or another format PIL reads)")),
        "resize": (bool, Field(False, description="resize the image (and mask) to the run's size")),
        "seed": (int, Field(0, ge=0, le=2**62)),
    }
    diffusion = {
        "label": (int | None, Field(None, ge=0, le=1_000_000, description="class (conditional runs)")),
        "steps": (int | None, Field(None, ge=1, le=1000, description="network calls (default: the run's)")),
        "guidance": (float | None, Field(None, ge=0, le=100, description="guidance scale (with label)")),
    }
    InpaintRequest = create_model("InpaintRequest", __config__=STRICT, **common, **diffusion,  # noqa: N806
                                  mask=(str | None, Field(None, description="base64 PNG mask, white = fill")),
                                  shape=(str | None, Field(None, max_length=100, description=(
                                      "instead of mask: centre:F, box:x0,y0,x1,y1 or strokes:SEED"))),
                                  jump_length=(int, Field(10, ge=1, le=1000)),
                                  jump_n_sample=(int, Field(1, ge=1, le=20)))
    Img2ImgRequest = create_model("Img2ImgRequest", __config__=STRICT, **common, **diffusion,  # noqa: N806
                                  strength=(float, Field(..., ge=0, le=1)))
    TransferRequest = create_model(  # noqa: N806
        "TransferRequest", __config__=STRICT, **common,
        to=(str | None, Field(None, max_length=200, description="a second served diffusion model (domain B)")),
        direction=(Literal["a2b", "b2a"], Field("a2b", description="cyclegan: which generator")),
        steps=(int | None, Field(None, ge=1, le=1000)), label=(int | None, Field(None, ge=0, le=1_000_000)),
        to_label=(int | None, Field(None, ge=0, le=1_000_000)), refine=(int, Field(0, ge=0, le=10)))

    def upload(text: str, what: str) -> bytes:
        limit = server.limits.max_upload_bytes
        if len(text) > limit * 4 // 3 + 4:
            raise HTTPException(413, f"{what} is over {limit} bytes")
        try:
            data = base64.b64decode(text, validate=True)
        except ValueError:
            raise HTTPException(400, f"{what} is not valid base64") from None
        if len(data) > limit:
            raise HTTPException(413, f"{what} is over {limit} bytes")
        return data

    def run_edit(name: str, req, key_id: str, work):
        served = server.model(name, modality)
        spec = served.run.model.spec
        size, pixels = (spec.height, spec.width), server.limits.max_upload_pixels
        image = edit.read_image(upload(req.image, "image"), spec.channels, size, req.resize, "the image", pixels)
        prepared = work(served, image, size, pixels)
        server.slot(key_id)
        try:
            with served.lock, torch.inference_mode():
                out = prepared()
        finally:
            server.release(key_id)
        server.metrics.images.labels(name).inc(1)
        return Response(edit.image_png(out), media_type="image/png")

    png = {200: {"content": {"image/png": {}}}}

    @app.post("/v1/models/{name}/edits/inpaint", responses=png)
    def inpaint(name: str, req: InpaintRequest, key_id: str = Depends(server.caller)):  # type: ignore[valid-type]
        def work(served, image, size, pixels):
            if (req.mask is None) == (req.shape is None):
                raise HTTPException(422, "give one of mask (base64 PNG, white = fill) or shape")
            known = (edit.read_mask(upload(req.mask, "mask"), size, req.resize, "the mask", pixels)
                     if req.mask is not None else edit.shape_mask(req.shape, size))
            return lambda: edit.inpaint(served.run, image, known, req.label, steps=req.steps, guidance=req.guidance,
                                        jump_length=req.jump_length, jump_n_sample=req.jump_n_sample, seed=req.seed)
        return run_edit(name, req, key_id, work)

    @app.post("/v1/models/{name}/edits/img2img", responses=png)
    def img2img(name: str, req: Img2ImgRequest, key_id: str = Depends(server.caller)):  # type: ignore[valid-type]
        def work(served, image, size, pixels):
            return lambda: edit.img2img(served.run, image, req.strength, req.label, steps=req.steps,
                                        guidance=req.guidance, seed=req.seed)
        return run_edit(name, req, key_id, work)

    @app.post("/v1/models/{name}/edits/transfer", responses=png)
    def transfer(name: str, req: TransferRequest, key_id: str = Depends(server.caller)):  # type: ignore[valid-type]
        def work(served, image, size, pixels):
            target = None if req.to is None else server.model(req.to, modality)
            if target is None and req.refine:
                raise HTTPException(422, "refine applies to transfer between two diffusion models (to)")

            def both():
                if target is None or target is served:
                    return edit.transfer(served.run, image, None if target is None else target.run, req.direction,
                                         req.steps, req.label, req.to_label, req.refine)
                with target.lock:
                    return edit.transfer(served.run, image, target.run, req.direction, req.steps, req.label,
                                         req.to_label, req.refine)
            return both
        return run_edit(name, req, key_id, work)

    for path in ("inpaint", "img2img", "transfer"):
        server.accept_uploads(f"/v1/models/{{name}}/edits/{path}")
