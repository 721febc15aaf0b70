"""PSNR and SSIM of edited images against the originals, and OpenCV's Telea inpainting as a baseline.

Runs in its own venv (numpy, opencv-python-headless, scikit-image; no genlab import), called by bench/editing.py:

    /tmp/cv/bin/python bench/edit_scores.py ARRAYS.npz      # prints JSON; writes ARRAYS-telea.npz if masked

ARRAYS.npz: `original` (N x C x H x W float in [0, 1]), optionally `known` (N x 1 x H x W, 1 = kept pixel), and
`method:NAME` arrays like `original`. With `known`, scores cover the filled region only (the kept pixels are
equal by construction); SSIM there is the mean of scikit-image's SSIM map (Gaussian window, sigma 1.5, as in
Wang et al. 2004) over the filled pixels. PSNR is per image, then averaged.
"""

import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from skimage.metrics import structural_similarity


def hwc(x: np.ndarray) -> np.ndarray:
    return x.transpose(1, 2, 0)


def telea(original: np.ndarray, known: np.ndarray) -> np.ndarray:
    out = np.empty_like(original)
    for i in range(original.shape[0]):
        image = np.rint(hwc(original[i]) * 255).astype(np.uint8)
        hole = ((known[i, 0] < 0.5) * 255).astype(np.uint8)
        out[i] = cv2.inpaint(image, hole, 3, cv2.INPAINT_TELEA).transpose(2, 0, 1) / 255.0
    return out


def score(original: np.ndarray, edited: np.ndarray, region: np.ndarray) -> dict:
    psnr, ssim = [], []
    for a, b, r in zip(original, edited, region, strict=True):
        a, b = hwc(a).astype(np.float64), hwc(np.clip(b, 0, 1)).astype(np.float64)
        where = r[0] > 0.5
        mse = float(((a - b) ** 2)[where].mean())
        psnr.append(10 * np.log10(1 / max(mse, 1e-12)))
        _, full = structural_similarity(a, b, channel_axis=-1, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                        use_sample_covariance=False, full=True)
        ssim.append(float(full[where].mean()))
    return {"psnr_db": round(float(np.mean(psnr)), 2), "psnr_sd": round(float(np.std(psnr)), 2),
            "ssim": round(float(np.mean(ssim)), 4)}


def main() -> None:
    path = Path(sys.argv[1])
    arrays = dict(np.load(path))
    original = arrays.pop("original").astype(np.float64)
    known = arrays.pop("known", None)
    methods = {k.removeprefix("method:"): v for k, v in arrays.items()}
    extra = {}
    if known is not None:
        t0 = time.perf_counter()
        methods["OpenCV Telea"] = telea(original, known)
        extra["OpenCV Telea"] = {"seconds": round(time.perf_counter() - t0, 2)}
        np.savez_compressed(path.with_name(path.stem + "-telea.npz"), images=methods["OpenCV Telea"].astype(np.float32))
        region = 1.0 - known
    else:
        region = np.ones((original.shape[0], 1, *original.shape[2:]))
    print(json.dumps({name: {**score(original, edited, region), **extra.get(name, {})}
                      for name, edited in methods.items()}))


if __name__ == "__main__":
    main()
