"""What every autoregressive language-model family shares: next-token loss, per-token likelihood on the
test split, and text generation through `genlab.nn.decoding`. A family only builds its network."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from genlab.core.batch import Batch
from genlab.core.errors import GenlabError
from genlab.core.spec import DataSpec
from genlab.models.base import GenerativeModel, Phase
from genlab.nn.decoding import SamplingConfig


class LanguageModel(GenerativeModel):
    modality = "text"
    supports_likelihood = True
    sample_options = SamplingConfig
    supports_packing = False  # its network takes `segments` (attention and positions restart per conversation)

    def __init__(self, config, spec: DataSpec):
        super().__init__(config, spec)
        if spec.vocab_size < 2:
            raise GenlabError(f"the {self.family_name} family needs a text dataset (data.source txt, jsonl, fortune "
                              "or chat)")
        if spec.packed and not self.supports_packing:
            raise GenlabError(f"the {self.family_name} family cannot keep packed conversations apart: set "
                              "data.packing=false (one conversation per row)")
        self.net = self.build_net(config, spec)

    def build_net(self, config, spec: DataSpec) -> torch.nn.Module:
        raise NotImplementedError

    def phases(self) -> list[Phase]:
        return [Phase("lm", [self.net])]

    def token_nll(self, tokens: torch.Tensor, context: torch.Tensor | None = None,
                  segments: torch.Tensor | None = None) -> torch.Tensor:
        """Per-token negative log-likelihood (nats) of tokens[:, 1:] given the tokens before them (or given
        `context`, a corrupted copy of tokens[:, :-1], when training with token noise); `segments`: packed
        conversations kept apart."""
        inputs = tokens[:, :-1] if context is None else context
        logits = self.net(inputs) if segments is None else self.net(inputs, segments=segments)
        return F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten(), reduction="none").view(
            tokens.shape[0], -1)

    def batch_nll(self, batch: Batch, noisy: bool = False) -> torch.Tensor:
        """Mean NLL of the batch's trained targets (all of them, or those `batch.mask` weights)."""
        nll = self.token_nll(batch.x, batch.context if noisy else None, batch.segments)
        if batch.mask is None:
            return nll.mean()
        return (nll * batch.mask).sum() / batch.mask.sum().clamp(min=1)

    def phase_loss(self, phase: str, batch: Batch, noise: torch.Generator):
        loss = self.batch_nll(batch, noisy=True)
        return loss, {"loss": loss}

    @torch.no_grad()
    def validation_metrics(self, batch: Batch, noise: torch.Generator):
        return {"loss": self.batch_nll(batch)}

    @torch.no_grad()
    def test_likelihood(self, dataset, ec, binarize: bool, quiet: bool = True) -> dict:
        """Exact per-token NLL of the test split (val when there is no test split), each token predicted once
        with up to block_size tokens of context (chat: the answer tokens, masked as in training); perplexity and
        bits per token and per character."""
        from genlab.metrics.likelihood import summed

        split = dataset.likelihood_split()

        def score(batch):
            nll = self.token_nll(batch.x, segments=batch.segments)
            weight = torch.ones_like(nll) if batch.mask is None else batch.mask
            return {"nll": nll * weight, "tokens": weight}

        sums = summed(dataset.batches(split, 32), score, desc="token likelihood", quiet=quiet)
        total, count = sums.get("nll", 0.0), int(sums.get("tokens", 0))
        if count == 0:
            raise GenlabError("the test and validation splits hold no tokens to score")
        chars = dataset.characters(split)
        return {
            "split": split,
            "tokens": count,
            "characters": chars,
            "nll_nats_per_token": total / count,
            "perplexity": math.exp(total / count),
            "bits_per_token": total / count / math.log(2),
            "bits_per_character": total / max(1, chars) / math.log(2),
            "headline": {f"{split}_perplexity": math.exp(total / count),
                         f"{split}_bits_per_character": total / max(1, chars) / math.log(2)},
        }
