"""Model families; importing this package registers them (one file per family)."""

from genlab.models import ctgan, diffusion, gan, gpt, hf_causal_lm, lstm, tvae, vae  # noqa: F401
from genlab.models.base import DataSpec, GenerativeModel, Phase

__all__ = ["DataSpec", "GenerativeModel", "Phase"]
