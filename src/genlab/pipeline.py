"""The Python API behind the CLI and the server: train, fine-tune, merge, open a run, generate from it and evaluate
it, whatever its modality (each step asks the run's Modality)."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from genlab.config import (
    LoraConfig,
    RunConfig,
    apply_override,
    build_eval,
    config_from_dict,
    load_config,
    read_recipe,
    save_config,
)
from genlab.core.errors import GenlabError
from genlab.core.options import split_options
from genlab.core.progress import bars_off, timed
from genlab.core.protocols import Dataset
from genlab.core.runs import (
    RunPaths,
    atomic_save_tensors,
    atomic_write_json,
    check_folder,
    existing_run,
    load_tensors,
    make_folder,
    read_json,
)
from genlab.modalities import infer_data, load_dataset
from genlab.modalities.image.samples import image_grid, png_bytes, save_samples, to_uint8  # noqa: F401 (Python API)
from genlab.models.base import GenerativeModel
from genlab.registry import family_class, modality_of_source
from genlab.train.distributed import World
from genlab.train.trainer import Trainer, build_model, data_spec

# Keys that may differ between the original run and a resumed one: the budget, and how the same global batch
# is computed (processes, micro-batches, sharding, compilation, threads), which leaves the training unchanged.
RESUMABLE_CHANGES = {("train", "steps"), ("train", "max_seconds"), ("train", "accumulate"), ("train", "fsdp"),
                     ("train", "compile"), ("train", "threads"), ("train", "device")}


def train(config_path: str | Path | None, overrides=(), runs_dir: str | Path = "runs", resume: bool = False,
          overwrite: bool = False) -> tuple[RunPaths, dict]:
    return train_config(load_config(config_path, overrides), runs_dir, resume, overwrite)


def train_config(cfg: RunConfig, runs_dir: str | Path = "runs", resume: bool = False,
                 overwrite: bool = False) -> tuple[RunPaths, dict]:
    """Train (or resume) the run `cfg` describes. Under torchrun every process calls this; rank 0 alone
    touches the run directory, the others wait for it."""
    world = World.current(cfg.train.device)
    run = RunPaths(check_folder(Path(runs_dir) / cfg.name, "run directory"))  # before minutes of loading
    existed = run.root.exists() and any(run.root.iterdir())
    resume = resume and not overwrite  # overwrite starts over
    world.barrier()  # every process has looked before rank 0 deletes or creates anything
    if existed and not overwrite:
        if not resume:
            raise GenlabError(f"run {run.root} already exists: continue it (--resume; resume=True in Python) or "
                              "start over (--overwrite; overwrite=True)")
        else:
            _check_same_config(run, cfg)
    dataset = load_dataset(cfg.data, run.root if resume else base_dir(cfg), cfg.train.privacy)
    if resume and run.dataset.is_file():
        old = read_json(run.dataset)["fingerprint"]
        if old != dataset.fingerprint:
            raise GenlabError(f"data changed since run {run.root} started (fingerprint {old} -> {dataset.fingerprint})")
    base = base_fingerprint(cfg)
    if resume and run.base.is_file() and read_json(run.base) != base:
        raise GenlabError(f"the base model of {run.root} changed since it started ({base['path']})")
    model = build_model(cfg, data_spec(dataset))
    if existed and overwrite and world.main:  # only now: bad data or a bad config leaves the old run as it was
        shutil.rmtree(run.root)
    world.barrier()
    fresh = not run.root.exists()
    if world.main:
        make_folder(run.root, "run directory")
    try:
        trainer = Trainer(cfg, run, dataset, model, world)  # checks data against the config (batch / block size)
        if world.main:
            save_config(cfg, run.config)
            atomic_write_json(run.dataset, dataset.describe())
            if base:
                atomic_write_json(run.base, base)
            dataset.save_artifacts(run.root)  # the tokenizer / table transform travels with the run
    except GenlabError:  # e.g. a batch larger than the data, a full disk
        if fresh and world.main:  # nothing was trained: leave no half-made run behind
            shutil.rmtree(run.root, ignore_errors=True)
        raise
    world.barrier()
    summary = trainer.fit(resume=resume)
    return run, summary


def finetune(base: str | Path, config_path: str | Path | None, overrides=(), runs_dir: str | Path = "runs",
             resume: bool = False, overwrite: bool = False, full: bool = False) -> tuple[RunPaths, dict]:
    """Train on a new corpus starting from `base`: a finished genlab run (its family, architecture and
    tokenizer) or a Hugging Face causal-LM directory (`save_pretrained` output: config.json, safetensors,
    tokenizer.json). LoRA adapters (lora.rank, default 8) train unless `full`, which trains every weight.
    The recipe supplies data, train and lora settings; the base's validation loss is measured first."""
    raw = read_recipe(config_path, overrides)
    base = Path(base)
    data = raw.setdefault("data", {}) or {}
    raw["data"] = data
    if data.get("tokenizer", "pretrained") != "pretrained":
        raise GenlabError(f"data.tokenizer={data['tokenizer']!r}: a fine-tune uses its base's tokenizer (leave it out)")
    if (base / "config.yaml").is_file():
        base_cfg = config_from_dict(yaml.safe_load(existing_run(base).config.read_text()))
        if base_cfg.lora.rank:
            raise GenlabError(f"{base} holds LoRA adapters only: merge them first (genlab merge {base} OUT) and "
                              "fine-tune the merged run")
        model = dataclasses.asdict(base_cfg.model)
        for key, mine, theirs in (("family", raw.get("family"), base_cfg.family),
                                  ("data.block_size", data.get("block_size"), base_cfg.data.block_size)):
            if mine is not None and mine != theirs:
                raise GenlabError(f"{key}={mine!r} differs from the base run's {theirs!r}; a fine-tune keeps it")
        if raw.get("model") and {**model, **raw["model"]} != model:
            raise GenlabError("the model section must match the base run's architecture (leave it out)")
        raw.update(family=base_cfg.family, model=model, init_from=str(base.resolve()))
        data["block_size"] = base_cfg.data.block_size
    elif (base / "config.json").is_file():
        if raw.get("family", "hf") != "hf":
            raise GenlabError(f"{base} is a Hugging Face model: family must be hf (or left out)")
        raw.update(family="hf", model={**(raw.get("model") or {}), "path": str(base.resolve())})
    else:
        raise GenlabError(f"{base} is neither a genlab run (config.yaml) nor a Hugging Face model directory "
                          "(config.json)")
    data["tokenizer"] = "pretrained"
    lora = raw.get("lora") or {}
    raw["lora"] = {**lora, "rank": 0} if full else {"rank": 8, **lora}
    raw.setdefault("train", {}).setdefault("val_at_start", True)
    return train_config(config_from_dict(raw), runs_dir, resume, overwrite)


def merge(run_path: str | Path, out: str | Path) -> RunPaths:
    """Fold a LoRA run's adapters into its base weights and write a standalone run at `out` (full weights, no
    adapters) that samples, evaluates and fine-tunes like any other run."""
    loaded = open_run(run_path)
    if not loaded.model.adapted:
        raise GenlabError(f"{run_path} has no LoRA adapters to merge (lora.rank is 0)")
    target = RunPaths(check_folder(Path(out), "merged run folder"))
    if target.root.exists() and any(target.root.iterdir()):
        raise GenlabError(f"{target.root} already exists and is not empty")
    loaded.model.merge_lora()
    cfg = loaded.config
    cfg.lora, cfg.init_from = LoraConfig(), None
    cfg.train.objective = "default"  # the reference (the base) is not kept: a merged DPO run has none to compare
    target.root.mkdir(parents=True, exist_ok=True)
    save_config(cfg, target.config)
    atomic_write_json(target.dataset, read_json(loaded.paths.dataset))
    loaded.dataset.save_artifacts(target.root)
    if base := base_fingerprint(cfg):
        atomic_write_json(target.base, base)
    atomic_save_tensors(target.final_weights, loaded.model.saved_state(),
                        metadata={"family": cfg.family, "merged_from": str(loaded.paths.root)})
    return target


def base_dir(cfg: RunConfig) -> str | None:
    """The folder a run starts from (a genlab run or a pretrained model), which also holds its tokenizer."""
    return cfg.init_from or family_class(cfg.family).pretrained_dir(cfg.model)


def base_fingerprint(cfg: RunConfig) -> dict | None:
    """Path and SHA-256 of the weights a run starts from: an adapter is only valid on the exact base."""
    folder = base_dir(cfg)
    if folder is None:
        return None
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise GenlabError(f"{folder} holds no .safetensors weights to start from (pickled .bin checkpoints are "
                          "never loaded; convert them with save_pretrained(safe_serialization=True))")
    digest = hashlib.sha256()
    for f in files:
        with f.open("rb") as fh:
            while chunk := fh.read(1 << 22):
                digest.update(chunk)
    return {"path": str(folder), "sha256": digest.hexdigest()[:16]}


def _check_same_config(run: RunPaths, cfg: RunConfig) -> None:
    if not run.config.is_file():
        return
    old = config_from_dict(yaml.safe_load(run.config.read_text())).to_dict()  # keys added since: defaults
    new = cfg.to_dict()
    for section in set(old) | set(new):
        a, b = old.get(section), new.get(section)
        if isinstance(a, dict) and isinstance(b, dict):
            for key in set(a) | set(b):
                if a.get(key) != b.get(key) and (section, key) not in RESUMABLE_CHANGES:
                    allowed = ", ".join(f"{s}.{k}" for s, k in sorted(RESUMABLE_CHANGES))
                    raise GenlabError(f"cannot resume {run.root}: {section}.{key} changed ({a.get(key)!r} -> "
                                      f"{b.get(key)!r}); only {allowed} may change")
        elif a != b:
            raise GenlabError(f"cannot resume {run.root}: {section} changed ({a!r} -> {b!r})")


@dataclass
class LoadedRun:
    paths: RunPaths
    config: RunConfig
    dataset: Dataset
    model: GenerativeModel

    @property
    def modality(self):
        """The run's Modality: what loads, samples, writes, evaluates and serves its kind of data."""
        return run_modality(self.config)


def open_run(path: str | Path, index: str | Path | None = None) -> LoadedRun:
    """A trained run with its final weights loaded, in eval mode. `index`: a retrieval index (genlab index build)
    its answers are grounded in (chat runs; data.retrieval sets k, method and the abstention score)."""
    paths = existing_run(path)
    raw = yaml.safe_load(paths.config.read_text())
    cfg = config_from_dict(raw)
    dataset = load_dataset(cfg.data, paths.root, cfg.train.privacy)
    recorded = read_json(paths.dataset).get("fingerprint") if paths.dataset.is_file() else None
    if recorded and recorded != dataset.fingerprint:
        raise GenlabError(f"the data behind run {paths.root} changed (fingerprint {recorded} -> {dataset.fingerprint})")
    if paths.base.is_file() and read_json(paths.base) != base_fingerprint(cfg):
        raise GenlabError(f"run {paths.root} was trained from {read_json(paths.base)['path']}, whose weights "
                          "have changed since; the run only fits the original (a fine-tune's adapter, a latent "
                          "diffusion model's autoencoder)")
    model = build_model(cfg, data_spec(dataset))
    try:
        model.load_saved_state(load_tensors(paths.final_weights))
    except RuntimeError as exc:
        raise GenlabError(f"{paths.final_weights} does not match the run's config: {str(exc)[:300]}") from None
    model.eval()
    run = LoadedRun(paths, cfg, dataset, model)
    if index is not None:
        attach_index(run, index)
    return run


def attach_index(run: LoadedRun, index: str | Path, strict: bool = True) -> bool:
    """Ground `run`'s answers in the retrieval index `index`; a run that cannot use one is an error (`strict`)
    or left as it is (returns False)."""
    attach = getattr(run.dataset, "attach_index", None)
    if attach is None:
        if strict:
            raise GenlabError(f"--index grounds chat answers; {run.paths.root} is {run.modality.model_noun}")
        return False
    attach(index, run.config.data.retrieval)
    return True


def generate(run: LoadedRun, n: int, label: int | None = None, seed: int = 0, **options):
    """n samples of any run in its modality's own type: images (float N x C x H x W in [0, 1]), texts, or rows
    (a DataFrame); the same seed gives the same samples. `options` are the modality's (label, prompt, stop,
    conditions) and the family's (e.g. steps, guidance for diffusion; temperature for language models); None
    keeps the run's default."""
    modality = run.modality
    if label is not None:
        options["label"] = label
    options = {k: v for k, v in options.items() if v is not None}
    mine, theirs = split_options(options, modality.sample_options, run.model.sample_options,
                                 owner=f"the {run.config.family} family ({modality.model_noun})")
    return modality.generate(run, n, seed, mine, theirs)


def generate_text(run: LoadedRun, prompt: str = "", n: int = 1, seed: int = 0, **sampling) -> list[str]:
    """`n` continuations of `prompt` (without the prompt) from a language-model run."""
    return generate(run, n, seed=seed, prompt=prompt, **sampling)


def stream_text(run: LoadedRun, prompt: str = "", seed: int = 0, n: int = 1, stop: list[str] | None = None,
                **sampling):
    """The new text of `n` continuations of `prompt`, piece by piece as tokens are generated."""
    from genlab.modalities.text.generate import stream_text as stream

    return stream(run, prompt, seed, n, stop, **sampling)


def sample_rows(run: LoadedRun, n: int, seed: int = 0, conditions: dict | None = None):
    """n synthetic rows of a table run as a DataFrame (what constraints rejected is in rows.attrs)."""
    return generate(run, n, seed=seed, conditions=conditions)


def evaluate_run(run: LoadedRun, quiet: bool = True, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """Every metric that applies to a run, written to metrics.json: the family's test-set likelihood where it
    has one, then its modality's metrics. `overrides`: `eval.key=value` settings for this evaluation only."""
    cfg, ds, model = run.config, run.dataset, run.model
    if overrides:
        cfg.eval = eval_overridden(cfg, overrides)
    metrics: dict = {"family": cfg.family, "dataset_fingerprint": ds.fingerprint, "timings_seconds": {},
                     "eval": dataclasses.asdict(cfg.eval)}
    if model.supports_likelihood:
        with timed(metrics["timings_seconds"], "likelihood", quiet):
            metrics["likelihood"] = model.test_likelihood(ds, cfg.eval, cfg.data.binarize, bars_off(quiet))
    part = run.modality.evaluate(run, cfg.eval, quiet)
    metrics["timings_seconds"].update(part.pop("timings_seconds", {}))
    metrics.update(part)
    atomic_write_json(run.paths.metrics, metrics)
    return metrics


def eval_overridden(cfg: RunConfig, overrides) -> object:
    """The run's eval options with `eval.key=value` overrides (any other key is an error)."""
    raw = {"eval": dataclasses.asdict(cfg.eval)}
    for item in overrides:
        if not str(item).startswith("eval."):
            raise GenlabError(f"{item!r}: genlab eval takes eval.* settings only (e.g. eval.n_samples=200); "
                              "the rest of a run's config is fixed by its training")
        apply_override(raw, item)
    return build_eval(run_modality(cfg), family_class(cfg.family), raw["eval"])


def run_modality(cfg: RunConfig):
    return modality_of_source(cfg.data.source)


def load_target(target: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """A recipe (.yaml / .yml), or a dataset given directly: a name such as `digits` or a path whose loader
    is inferred (genlab.modalities.infer_data); `a.b=value` overrides apply either way."""
    if str(target).endswith((".yaml", ".yml")):
        return load_config(target, overrides)
    raw: dict = {"data": infer_data(str(target))}
    for item in overrides:
        apply_override(raw, item)
    return config_from_dict(raw)
