"""Cross-check genlab's FID Inception-v3 against torch-fidelity's independent implementation.

No network here, so the released weights cannot be fetched: both networks load the same random state dict
(BatchNorm statistics randomised too) and see the same 299x299 input, and their 2048-d pool features and
fc outputs are compared. This checks module names, block wiring, pooling kinds and BatchNorm settings.

    pip install --no-deps torch-fidelity==0.4.0
    python bench/inception_crosscheck.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from image_metrics import torch_fidelity_modules  # noqa: E402

from genlab.modalities.image.inception import FIDInceptionV3, load_fid_inception  # noqa: E402


def main() -> None:
    torch_fidelity_modules()
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    torch.manual_seed(0)
    net = FIDInceptionV3()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "random-inception.pth"
        torch.save(state, path)
        ours = load_fid_inception(path)
        theirs = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                             feature_extractor_weights_path=str(path))
    x = torch.randint(0, 256, (4, 3, 299, 299), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        f_theirs, logits_unbiased = theirs(x)  # torch-fidelity scales as (x - 128) / 128
        f_ours, logits = ours(x.float() / 256)  # genlab scales as 2y - 1: y = x / 256 gives the same input
    result = {
        "max_abs_diff_features": float((f_ours - f_theirs).abs().max()),
        "max_abs_features": float(f_theirs.abs().max()),
        "max_abs_diff_logits_unbiased": float((logits - ours.fc.bias.detach() - logits_unbiased).abs().max()),
        "max_abs_logits": float(logits_unbiased.abs().max()),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
