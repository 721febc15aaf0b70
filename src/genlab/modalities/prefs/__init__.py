"""Preferences: JSONL pairs (`prompt`, `chosen`, `rejected`, data.source=prefs) that tune a language-model run with
train.objective=dpo, and prompts with a reward (data.source=prompts, data.reward) that tune one online with
train.objective=grpo; `genlab data prefs` writes pairs by ranking sampled completions with a reward
(genlab.rewards), and evaluation reports the tuned run's mean reward and KL(policy || reference) on held-out
prompts. Samples are those of the tuned run's kind: chat answers when its base has a chat template, else text
continuations."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genlab.core.errors import GenlabError
from genlab.core.options import option
from genlab.core.textfiles import first_jsonl_record
from genlab.core.validate import positive


@dataclass
class PrefsEval:
    reward: str = ""  # the reward to report (a built-in or module:function, genlab.rewards); empty: data.reward if set
    n_prompts: int = 20  # held-out prompts (test split, else validation) the policy and reference complete
    prompts: str = ""  # a prompts file (.txt lines or JSONL `prompt`) to evaluate on instead: one held-out set
    # shared by runs tuned on different data (a DPO run's pairs and a GRPO run's prompts)
    reference: str = ""  # a language-model run to measure KL and the reference reward against instead of the run's
    # own reference: the first base after rounds of tuning (each round's reference is the round before)
    samples_per_prompt: int = 4  # completions of each prompt, for the mean reward and the KL estimate
    completion_tokens: int = 64  # longest completion, in tokens
    seed: int = 0

    def validate(self) -> None:
        positive("eval", {"n_prompts": self.n_prompts, "samples_per_prompt": self.samples_per_prompt,
                          "completion_tokens": self.completion_tokens})


@dataclass
class PrefsSampling:
    prompt: str = option("", "the prompt each completion answers")
    stop: list[str] = option([], "end a completion at this string (repeatable)", max_items=4)


def reference_run(run, path: str):
    """Another run to compare `run`'s policy with: a language model over the same tokens."""
    from genlab.pipeline import open_run

    other = open_run(path)
    mine, theirs = run.dataset.tokenizer, getattr(other.dataset, "tokenizer", None)
    if theirs is None or mine.vocab_size != theirs.vocab_size or any(
            mine.decode([i]) != theirs.decode([i]) for i in range(mine.vocab_size)):
        raise GenlabError(f"eval.reference={path}: not a language model with {run.paths.root}'s tokenizer")
    return other


class PrefsModality:
    name = "prefs"
    sources = ("prefs", "prompts")
    folder_contents = None  # preference data is one JSONL file, prompts one file
    eval_options = PrefsEval
    sample_options = PrefsSampling
    output_suffixes = (".txt", ".jsonl")
    model_noun = "a preference-tuned language model"
    endpoint = "prefs"  # not served yet (see add_routes)

    @property
    def max_samples(self) -> int:
        from genlab.modalities.text.generate import MAX_TEXTS

        return MAX_TEXTS

    def check_data(self, data) -> None:
        if isinstance(data.path, list):
            raise GenlabError(f"data.source={data.source} reads one file (data.path), not a list")
        if data.reward is not None and data.source != "prompts":
            raise GenlabError("data.reward scores completions of prompts (data.source=prompts); preference pairs "
                              "are already ranked")
        for key, value, default in (("token_noise", data.token_noise, 0.0), ("separator", data.separator, None),
                                    ("vocab_from", data.vocab_from, []), ("train_on", data.train_on, "assistant"),
                                    ("packing", data.packing, True)):
            if value != default:
                raise GenlabError(f"data.{key} does not apply to preference pairs")
        if data.augment.active:
            raise GenlabError("data.augment applies to images")

    def load(self, data, run_dir: Path | None = None):
        from genlab.modalities.prefs.data import load_prefs_dataset, load_prompts_dataset

        return (load_prefs_dataset if data.source == "prefs" else load_prompts_dataset)(data, run_dir)

    def infer(self, target: str) -> dict | None:
        """A .jsonl file whose first record has `prompt`, `chosen` and `rejected`."""
        record = first_jsonl_record(target)
        if isinstance(record, dict) and {"prompt", "chosen", "rejected"} <= set(record):
            return {"source": "prefs", "path": str(Path(target).expanduser())}
        return None

    def audit(self, data, out: Path, eval_options: Any, quiet: bool = True) -> dict:
        raise GenlabError("genlab data audit does not read preference pairs yet")

    def clean(self, data, operations: list[str], out: Path, drop_ids: Path | None = None) -> dict:
        raise GenlabError("genlab data clean does not write preference versions: edit the JSONL file")

    def _kind(self, run):
        from genlab.registry import modality

        return modality("chat" if run.dataset.template is not None else "text")

    def _options(self, run, options: PrefsSampling):
        kind = self._kind(run)
        fields = {"prompt": options.prompt, "stop": options.stop}
        return kind, kind.sample_options(**{k: v for k, v in fields.items() if k in vars(kind.sample_options())})

    def generate(self, run, n: int, seed: int, options: PrefsSampling, family_options: Any) -> list[str]:
        kind, theirs = self._options(run, options)
        return kind.generate(run, n, seed, theirs, family_options)

    def print_samples(self, run, n: int, seed: int, options: PrefsSampling, family_options: Any, echo) -> None:
        kind, theirs = self._options(run, options)
        kind.print_samples(run, n, seed, theirs, family_options, echo)

    def write_samples(self, run, samples: list[str], out: Path, options: PrefsSampling) -> None:
        from genlab.registry import modality

        text = modality("text")
        text.write_samples(run, samples, out, text.sample_options(prompt=options.prompt, stop=options.stop))

    def evaluate(self, run, options: PrefsEval, quiet: bool = True) -> dict:
        import time

        from genlab.modalities.prefs.data import encoder_of, read_prompts
        from genlab.modalities.prefs.sampling import reward_and_kl
        from genlab.nn.decoding import SamplingConfig
        from genlab.rewards import load_reward

        if not run.model.has_reference:
            raise GenlabError(f"{run.paths.root} was not trained with train.objective=dpo or grpo: it has no "
                              "reference")
        ds = run.dataset
        if options.prompts:
            split, prompts = options.prompts, read_prompts(options.prompts)[: options.n_prompts]
        else:
            split = "test" if len(ds.splits["test"]) else "val"
            prompts = ds.split_prompts(split)[: options.n_prompts]
        if not prompts:
            raise GenlabError("the test and validation splits hold no prompts to evaluate on: give eval.prompts")
        t0 = time.perf_counter()
        name = options.reward or run.config.data.reward
        reward = load_reward(name) if name else None
        reference = reference_run(run, options.reference) if options.reference else None
        found = reward_and_kl(run.model, encoder_of(ds), prompts, reward, options.samples_per_prompt,
                              SamplingConfig(max_new_tokens=options.completion_tokens), options.seed,
                              reference=reference and reference.model.net)
        if reference is not None:
            found["reference_run"] = str(reference.paths.root)
        return {"policy": {"split": split, **found},
                "timings_seconds": {"reward_and_kl": round(time.perf_counter() - t0, 3)}}

    def headline(self, metrics: dict) -> dict:
        policy = metrics.get("policy") or {}
        out = {}
        if "reward" in policy:
            r = policy["reward"]
            out[f"mean reward {r['name']} (policy / reference)"] = [round(r["policy_mean"], 4),
                                                                     round(r["reference_mean"], 4)]
        if "kl" in policy:
            out["KL(policy || reference), nats per completion"] = round(policy["kl"]["mean"], 4)
        return out

    def add_routes(self, app, server) -> None:
        """None yet: the text and chat routes accept their own modality's runs only, so a tuned run is sampled with
        genlab sample (or served after training it again on its base's data source)."""
