"""The family-agnostic trainer with EMA, checkpoints and exact resume."""

from genlab.train.trainer import Trainer, build_model

__all__ = ["Trainer", "build_model"]
