"""Completions sampled from a policy or its reference, scored by a reward: preference pairs for DPO (best of k
= chosen, worst = rejected) and the evaluation of a tuned run (mean reward, KL(policy || reference))."""

from __future__ import annotations

import json
import math
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from genlab.core.errors import GenlabError
from genlab.core.runs import atomic_write_bytes
from genlab.modalities.prefs.data import PairEncoder, encoder_of, read_prompts  # noqa: F401 (API)
from genlab.nn.decoding import SamplingConfig, generate_tokens


@dataclass
class Completions:
    """n completions of one prompt: the sampled ids (a final stop token included: it was sampled too) and text."""

    prompt_ids: list[int]
    ids: list[list[int]]
    texts: list[str]

    def batch(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(B x (T + 1) tokens, B x T weights: 1 on each sampled token) for scoring under any network."""
        width = len(self.prompt_ids) + max(1, max(len(i) for i in self.ids))
        x = np.zeros((len(self.ids), width), dtype=np.int64)
        w = np.zeros((len(self.ids), width), dtype=np.float32)
        for r, ids in enumerate(self.ids):
            row = self.prompt_ids + ids
            x[r, :len(row)] = row
            w[r, len(self.prompt_ids):len(row)] = 1.0
        return torch.from_numpy(x).to(device), torch.from_numpy(w[:, 1:]).to(device)


@torch.no_grad()
def sample_completions(net, encoder: PairEncoder, prompt: str, n: int, cfg: SamplingConfig,
                       generator: torch.Generator) -> Completions:
    """n completions of `prompt` by `net`, ending at EOT or the template's end of turn, at most cfg.max_new_tokens
    and never past the context window (so they score without a sliding window)."""
    prompt_ids = encoder.prompt_ids(prompt)
    room = net.block_size + 1 - len(prompt_ids)
    if room < 1:
        raise GenlabError(f"prompt {prompt[:40]!r} fills the model's {net.block_size}-token context")
    cfg = SamplingConfig(**{**vars(cfg), "max_new_tokens": min(cfg.max_new_tokens, room)})
    stop_ids, stop_strings = encoder.stops()
    ends = {encoder.tokenizer.eot_id, *stop_ids}
    device = next(net.parameters()).device
    start = torch.as_tensor(prompt_ids, dtype=torch.long, device=device).expand(n, -1).contiguous()
    produced: list[list[int]] = [[] for _ in range(n)]
    for new in generate_tokens(net, start, cfg, generator):
        for i, tok in enumerate(new.tolist()):
            if not produced[i] or produced[i][-1] not in ends:
                produced[i].append(tok)
        if all(p and p[-1] in ends for p in produced):
            break
    texts = []
    for ids in produced:
        text = encoder.tokenizer.decode(ids[:-1] if ids and ids[-1] in ends else ids)
        cut = min((text.find(s) for s in stop_strings if s in text), default=-1)
        texts.append(text[:cut] if cut >= 0 else text)
    return Completions(prompt_ids, produced, texts)


def completion_logp(model, net, completions: Completions) -> torch.Tensor:
    """Log-probability under `net` of each sampled completion given its prompt."""
    x, w = completions.batch(next(net.parameters()).device)
    return -(model.net_nll(net, x) * w).sum(1)


def build_prefs(run, reward, prompts: list[str], k: int, out: Path, seed: int = 0,
                sampling: SamplingConfig | None = None, pairs: int = 1) -> dict:
    """Sample k completions of each prompt from `run`, rank them by `reward` and write (prompt, chosen, rejected)
    to `out` as JSONL: the best with the worst, then (up to `pairs` per prompt) the second best with the second
    worst, ..., while the chosen one scores higher; prompts whose completions all score the same give no pair. A
    completion cut at the token limit is written like one that stopped (pairs hold whole answers)."""
    if k < 2:
        raise GenlabError(f"--k must be at least 2 (a pair needs two completions), got {k}")
    if not 1 <= pairs <= k // 2:
        raise GenlabError(f"--pairs must be between 1 and k / 2 = {k // 2} (each completion in one pair), "
                          f"got {pairs}")
    encoder = encoder_of(run.dataset)
    cfg = sampling or SamplingConfig()
    cfg.validate()
    generator = torch.Generator(device=run.model.device).manual_seed(seed)
    lines, ties, gaps = [], 0, []
    for prompt in prompts:
        done = sample_completions(run.model.net, encoder, prompt, k, cfg, generator)
        scores = reward.many([prompt] * k, done.texts)
        order = np.argsort(-np.asarray(scores), kind="stable")  # best first; ties keep their sampling order
        made = 0
        for best, worst in zip(order[:pairs], order[::-1][:pairs], strict=True):
            if scores[best] <= scores[worst]:
                break
            made += 1
            gaps.append(scores[best] - scores[worst])
            lines.append(json.dumps({"prompt": prompt, "chosen": done.texts[best], "rejected": done.texts[worst],
                                     "chosen_reward": scores[best], "rejected_reward": scores[worst]},
                                    ensure_ascii=False) + "\n")
        ties += made == 0
    if not lines:
        raise GenlabError(f"every prompt's {k} completions scored the same under reward {reward.name!r}: no pairs")
    atomic_write_bytes(Path(out), "".join(lines).encode())
    return {"pairs": len(lines), "prompts": len(prompts), "ties_skipped": ties,
            "mean_reward_gap": float(np.mean(gaps))}


def best_of_n(model, encoder: PairEncoder, prompts: list[str], reward, ns: list[int], cfg: SamplingConfig,
              seed: int = 0) -> dict[int, dict]:
    """Best-of-n sampling from the reference, the baseline a tuned policy is drawn against: for each n, the mean
    reward of the best of n reference completions, and its KL, log n - (n - 1) / n."""
    generator = torch.Generator(device=model.device).manual_seed(seed + 1)
    scores = []  # per prompt: max(ns) rewards of reference completions
    with model.reference_net() as ref:
        for prompt in prompts:
            done = sample_completions(ref, encoder, prompt, max(ns), cfg, generator)
            scores.append(reward.many([prompt] * len(done.texts), done.texts))
    return {n: {"reward": float(np.mean([max(s[:n]) for s in scores])), "kl": best_of_n_kl(n)} for n in ns}


def best_of_n_kl(n: int) -> float:
    """KL(best-of-n || reference) as usually quoted (Stiennon et al. 2020): log n - (n - 1) / n."""
    return math.log(n) - (n - 1) / n


@torch.no_grad()
def reward_and_kl(model, encoder: PairEncoder, prompts: list[str], reward, samples: int, cfg: SamplingConfig,
                  seed: int = 0, reference=None) -> dict:
    """Mean reward of the policy's completions and of the reference's, and the Monte Carlo estimate of
    KL(policy || reference) over whole completions: the mean of log pi(y|x) - log pi_ref(y|x), y ~ pi. The
    reference is the run's own unless another network over the same tokens is given."""
    generator = torch.Generator(device=model.device).manual_seed(seed)
    baseline = torch.Generator(device=model.device).manual_seed(seed + 1)  # its own: runs of one base compare
    log_ratios, mine, theirs = [], [], []
    for prompt in prompts:
        done = sample_completions(model.net, encoder, prompt, samples, cfg, generator)
        policy = completion_logp(model, model.net, done)
        with model.reference_net() if reference is None else nullcontext(reference) as ref:
            log_ratios += (policy - completion_logp(model, ref, done)).tolist()
            if reward is not None:
                base = sample_completions(ref, encoder, prompt, samples, cfg, baseline)
        if reward is not None:
            mine += reward.many([prompt] * samples, done.texts)
            theirs += reward.many([prompt] * samples, base.texts)
    kl = np.asarray(log_ratios)
    out = {"prompts": len(prompts), "samples_per_prompt": samples,
           "kl": {"mean": float(kl.mean()), "stderr": float(kl.std(ddof=1) / math.sqrt(len(kl))) if len(kl) > 1
                  else None}}
    if reward is not None:
        out["reward"] = {"name": reward.name, "policy_mean": float(np.mean(mine)),
                         "reference_mean": float(np.mean(theirs))}
    return out
