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
from genlab.nn.decoding import SamplingConfig, generate_tokens


class LanguageModel(GenerativeModel):
    modality = "text"
    supports_likelihood = True
    sample_options = SamplingConfig
    supports_packing = False  # its network takes `segments` (attention and positions restart per conversation)
    muon_exclude = ("lm_head",)  # the output head (per-token scores) trains with AdamW under train.optimizer=muon

    def __init__(self, config, spec: DataSpec):
        super().__init__(config, spec)
        if spec.vocab_size < 2:
            raise GenlabError(f"the {self.family_name} family needs a text dataset (data.source txt, jsonl, fortune "
                              "or chat)")
        if spec.packed and not self.supports_packing:
            raise GenlabError(f"the {self.family_name} family cannot keep packed conversations apart: set "
                              "data.packing=false (one conversation per row)")
        self.net = self.build_net(config, spec)
        self.objective = "default"
        self.train_options = None  # the TrainConfig of a dpo / grpo run (beta, group_size, clip, ...)
        self._frozen: list[torch.nn.Module] = []  # the starting network without LoRA (a list: no submodule)

    def set_objective(self, train) -> None:
        """`dpo` and `grpo` keep the starting network as the reference: under LoRA it is the same network with
        the adapters off (no extra memory); a full fine-tune keeps a frozen copy (one more set of weights, with
        no gradients and no optimizer state)."""
        self.objective, self.train_options = train.objective, train
        self._frozen = [] if train.objective == "default" or self.adapted else [
            copy.deepcopy(self.net).requires_grad_(False).eval()]

    @property
    def beta(self) -> float:
        return self.train_options.beta

    @property
    def has_reference(self) -> bool:
        return self.objective != "default"

    @contextlib.contextmanager
    def reference_net(self):
        """The reference policy's network (the starting weights), in eval mode, for the duration of the block."""
        if not self.adapted and not self._frozen:
            raise GenlabError("this run has no reference model: it was not trained with train.objective=dpo or grpo")
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

    @contextlib.contextmanager
    def without_dropout(self):
        """The policy in eval mode for the block (gradients still flow): DPO's and GRPO's log-probs are compared
        with the reference's, taken without dropout, so the policy's must be too (TRL's disable_dropout)."""
        training = self.net.training
        self.net.eval()
        try:
            yield
        finally:
            self.net.train(training)

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
            with self.without_dropout():
                return -(self.token_nll(batch.x, segments=batch.segments) * batch.mask).sum(1)
        with torch.no_grad(), self.reference_net() as net:
            return -(self.net_nll(net, batch.x, segments=batch.segments) * batch.mask).sum(1)

    def dpo_terms(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Direct preference optimisation (Rafailov et al. 2023) on rows (chosen, rejected, chosen, ...):
        -log sigmoid(beta * (policy - reference log-ratio of chosen minus that of rejected)), plus train.dpo_nll
        times the chosen completions' per-token NLL. Its value is log 2 while the policy is the reference and
        dpo_nll is 0; both log-probs are taken without dropout (see without_dropout). Logged beside it: the mean
        log-ratio of the chosen and of the rejected completions (a falling chosen log-ratio is DPO's drift)."""
        if batch.x.shape[0] % 2:
            raise GenlabError("a preference batch holds (chosen, rejected) row pairs: make train.batch_size / "
                              "(processes x train.accumulate) a whole number of pairs")
        policy = self.sequence_logp(batch)
        ratio = policy - self.sequence_logp(batch, reference=True)
        margin = self.beta * (ratio[0::2] - ratio[1::2])
        loss = -F.logsigmoid(margin).mean()
        if self.train_options.dpo_nll:
            tokens = batch.mask[0::2].sum(1).clamp(min=1)
            loss = loss - self.train_options.dpo_nll * (policy[0::2] / tokens).mean()
        return loss, {"loss": loss, "reward_margin": margin.mean().detach(),
                      "reward_accuracy": (margin > 0).float().mean(),
                      "chosen_logratio": ratio[0::2].mean().detach(), "rejected_logratio": ratio[1::2].mean().detach()}

    @torch.no_grad()
    def rollout(self, prompt: list[int], n: int, generator: torch.Generator) -> list[list[int]]:
        """n completions of the token ids `prompt` sampled from the policy (eval mode), each ending with its
        stop token when it stopped, at most train.completion_tokens and never past the context window."""
        score = self.spec.score
        room = self.spec.block_size + 1 - len(prompt)
        cfg = SamplingConfig(max_new_tokens=max(1, min(self.train_options.completion_tokens, room)))
        start = torch.as_tensor(prompt, dtype=torch.long, device=self.device).expand(n, -1).contiguous()
        produced: list[list[int]] = [[] for _ in range(n)]
        with self.without_dropout():
            for new in generate_tokens(self.net, start, cfg, generator):
                for i, tok in enumerate(new.tolist()):
                    if not produced[i] or produced[i][-1] not in score.stop_ids:
                        produced[i].append(tok)
                if all(p[-1] in score.stop_ids for p in produced):
                    break
        return produced

    def grpo_terms(self, batch: Batch, noise: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Group-relative policy optimisation (Shao et al. 2024): per prompt, train.group_size completions from
        the policy, rewards normalised within the group as advantages, PPO's clipped surrogate per token, and
        beta times the k3 estimate of KL(policy || reference) per token; each completion's tokens averaged. The
        policy's log-probs are taken in eval mode, as the rollouts and the reference's are: with dropout on, the
        KL term would compare a noisy policy with a clean reference and be far from 0 even at the start."""
        score, opts = self.spec.score, self.train_options
        if score is None:
            raise GenlabError("train.objective=grpo samples completions of prompts and scores them: data.source="
                              "prompts with data.reward")
        generator = torch.Generator(device=self.device).manual_seed(
            int(torch.randint(2**62, (1,), generator=noise)))  # the run's noise: a resume samples the same
        losses, rewards, kls = [], [], []
        for row in batch.x:
            prompt = row[row >= 0].tolist()
            completions = self.rollout(prompt, opts.group_size, generator)
            reward = torch.tensor(score(prompt, completions), dtype=torch.float32, device=self.device)
            advantage = (reward - reward.mean()) / (reward.std() + 1e-4)
            width = len(prompt) + max(len(c) for c in completions)
            x = torch.full((len(completions), width), self.spec.score.stop_ids[0], dtype=torch.long)
            w = torch.zeros(len(completions), width)
            for i, c in enumerate(completions):
                x[i, :len(prompt) + len(c)] = torch.tensor(prompt + c)
                w[i, len(prompt):len(prompt) + len(c)] = 1.0
            x, w = x.to(self.device), w[:, 1:].to(self.device)
            with self.without_dropout():  # the log-probs of the policy that sampled, compared with the reference's
                logp = -self.token_nll(x)
            with torch.no_grad(), self.reference_net() as net:
                ref = -self.net_nll(net, x)
            ratio = torch.exp(logp - logp.detach())  # one update per rollout: 1, with the policy's gradient
            a = advantage[:, None]
            surrogate = torch.minimum(ratio * a, ratio.clamp(1 - opts.clip, 1 + opts.clip) * a)
            kl = torch.exp(ref - logp) - (ref - logp) - 1
            per_token = -(surrogate - opts.beta * kl)
            losses.append(((per_token * w).sum(1) / w.sum(1).clamp(min=1)).mean())
            rewards.append(reward.mean())
            kls.append(((logp - ref).detach() * w).sum(1).mean())
        loss = torch.stack(losses).mean()
        return loss, {"loss": loss, "reward": torch.stack(rewards).mean(), "kl": torch.stack(kls).mean()}

    def phase_loss(self, phase: str, batch: Batch, noise: torch.Generator):
        if self.objective == "dpo":
            return self.dpo_terms(batch)
        if self.objective == "grpo":
            return self.grpo_terms(batch, noise)
        loss = self.batch_nll(batch, noisy=True)
        return loss, {"loss": loss}

    @torch.no_grad()
    def validation_metrics(self, batch: Batch, noise: torch.Generator):
        if self.objective == "dpo":
            return self.dpo_terms(batch)[1]
        if self.objective == "grpo":
            terms = self.grpo_terms(batch, noise)[1]
            return {"reward": terms["reward"], "kl": terms["kl"]}
        return {"loss": self.batch_nll(batch)}

    @torch.no_grad()
    def test_likelihood(self, dataset, ec, binarize: bool, quiet: bool = True) -> dict:
        """Exact per-token NLL of the test split (val when there is no test split), each token predicted once
        with up to block_size tokens of context (chat: the answer tokens, masked as in training); perplexity and
        bits per token and per character."""
        from genlab.metrics.likelihood import summed

        split = dataset.likelihood_split()
        if split is None:  # prompts alone (online optimisation): no text to score
            return {"split": None, "note": "the data holds prompts only: no completions to score", "headline": {}}

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
