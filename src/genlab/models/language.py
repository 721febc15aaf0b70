"""What every autoregressive language-model family shares: next-token loss, per-token likelihood on the
test split, and text generation through `genlab.nn.decoding`. A family only builds its network."""

from __future__ import annotations

import contextlib
import copy
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
        self.objective, self.beta = "default", 0.1
        self._frozen: list[torch.nn.Module] = []  # dpo without LoRA: the starting network (a list: no submodule)

    def set_objective(self, objective: str, beta: float) -> None:
        """`dpo` keeps the starting network as the reference: under LoRA it is the same network with the adapters
        off (no extra memory); a full fine-tune keeps a frozen copy (one more set of weights, no gradients and
        no optimizer state for it)."""
        self.objective, self.beta = objective, beta
        self._frozen = [] if objective == "default" or self.adapted else [
            copy.deepcopy(self.net).requires_grad_(False).eval()]

    @property
    def has_reference(self) -> bool:
        return self.objective == "dpo"

    @contextlib.contextmanager
    def reference_net(self):
        """The reference policy's network (the starting weights), in eval mode, for the duration of the block."""
        if not self.adapted and not self._frozen:
            raise GenlabError("this run has no reference model: it was not trained with train.objective=dpo")
        if self.adapted:
            from genlab.nn.lora import adapters_disabled

            training = self.net.training
            self.net.eval()
            try:
                with adapters_disabled(self.net) as net:
                    yield net
            finally:
                self.net.train(training)
        else:
            frozen = self._frozen[0]
            first = next(self.net.parameters())
            yield frozen.to(first.device)

    def build_net(self, config, spec: DataSpec) -> torch.nn.Module:
        raise NotImplementedError

    def phases(self) -> list[Phase]:
        return [Phase("lm", [self.net])]

    def token_nll(self, tokens: torch.Tensor, context: torch.Tensor | None = None,
                  segments: torch.Tensor | None = None) -> torch.Tensor:
        """Per-token negative log-likelihood (nats) of tokens[:, 1:] given the tokens before them (or given
        `context`, a corrupted copy of tokens[:, :-1], when training with token noise); `segments`: packed
        conversations kept apart."""
        return self.net_nll(self.net, tokens, context, segments)

    @staticmethod
    def net_nll(net, tokens: torch.Tensor, context: torch.Tensor | None = None,
                segments: torch.Tensor | None = None) -> torch.Tensor:
        """token_nll under `net` (the policy's, or the reference's)."""
        inputs = tokens[:, :-1] if context is None else context
        logits = net(inputs) if segments is None else net(inputs, segments=segments)
        return F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten(), reduction="none").view(
            tokens.shape[0], -1)

    def batch_nll(self, batch: Batch, noisy: bool = False) -> torch.Tensor:
        """Mean NLL of the batch's trained targets (all of them, or those `batch.mask` weights)."""
        nll = self.token_nll(batch.x, batch.context if noisy else None, batch.segments)
        if batch.mask is None:
            return nll.mean()
        return (nll * batch.mask).sum() / batch.mask.sum().clamp(min=1)

    def sequence_logp(self, batch: Batch, reference: bool = False) -> torch.Tensor:
        """Log-probability of each row's weighted tokens (a completion given its prompt), under the policy or,
        without gradients, under the reference."""
        if batch.mask is None:
            raise GenlabError("train.objective=dpo needs preference pairs: data.source=prefs")
        if not reference:
            return -(self.token_nll(batch.x, segments=batch.segments) * batch.mask).sum(1)
        with torch.no_grad(), self.reference_net() as net:
            return -(self.net_nll(net, batch.x, segments=batch.segments) * batch.mask).sum(1)

    def dpo_terms(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Direct preference optimisation (Rafailov et al. 2023) on rows (chosen, rejected, chosen, ...):
        -log sigmoid(beta * (policy - reference log-ratio of chosen minus that of rejected)). Its value is log 2
        while the policy is the reference."""
        if batch.x.shape[0] % 2:
            raise GenlabError("a preference batch holds (chosen, rejected) row pairs: make train.batch_size / "
                              "(processes x train.accumulate) a whole number of pairs")
        ratio = self.sequence_logp(batch) - self.sequence_logp(batch, reference=True)
        margin = self.beta * (ratio[0::2] - ratio[1::2])
        loss = -F.logsigmoid(margin).mean()
        return loss, {"loss": loss, "reward_margin": margin.mean().detach(),
                      "reward_accuracy": (margin > 0).float().mean()}

    def phase_loss(self, phase: str, batch: Batch, noise: torch.Generator):
        if self.objective == "dpo":
            return self.dpo_terms(batch)
        loss = self.batch_nll(batch, noisy=True)
        return loss, {"loss": loss}

    @torch.no_grad()
    def validation_metrics(self, batch: Batch, noise: torch.Generator):
        if self.objective == "dpo":
            return self.dpo_terms(batch)[1]
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
