"""The Python API behind the CLI: train a run, open a finished run, generate images from it."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

from genlab.config import LoraConfig, RunConfig, config_from_dict, load_config, read_recipe, save_config
from genlab.data import ImageDataset, TextDataset, load_dataset
from genlab.errors import GenlabError
from genlab.models.base import GenerativeModel
from genlab.registry import family_class
from genlab.runs import (
    RunPaths,
    atomic_save_tensors,
    atomic_write_bytes,
    atomic_write_json,
    check_folder,
    existing_run,
    load_tensors,
    make_folder,
    read_json,
)
from genlab.train.distributed import World
from genlab.train.trainer import Trainer, build_model, data_spec

MAX_SAMPLES = 100_000

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
    world.barrier()  # every process has looked before rank 0 deletes or creates anything
    if existed:
        if overwrite:
            if world.main:
                shutil.rmtree(run.root)
        elif not resume:
            raise GenlabError(f"run {run.root} already exists; pass --resume to continue it or --overwrite to restart")
        else:
            _check_same_config(run, cfg)
    dataset = load_dataset(cfg.data, run.root if resume else base_dir(cfg))
    if resume and run.dataset.is_file():
        old = read_json(run.dataset)["fingerprint"]
        if old != dataset.fingerprint:
            raise GenlabError(f"data changed since run {run.root} started (fingerprint {old} -> {dataset.fingerprint})")
    base = base_fingerprint(cfg)
    if resume and run.base.is_file() and read_json(run.base) != base:
        raise GenlabError(f"the base model of {run.root} changed since it started ({base['path']})")
    model = build_model(cfg, data_spec(dataset))
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
            if hasattr(dataset, "save_artifacts"):
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
    dataset: ImageDataset | TextDataset
    model: GenerativeModel


def open_run(path: str | Path) -> LoadedRun:
    """A trained run with its final weights loaded, in eval mode."""
    paths = existing_run(path)
    raw = yaml.safe_load(paths.config.read_text())
    cfg = config_from_dict(raw)
    dataset = load_dataset(cfg.data, paths.root)
    recorded = read_json(paths.dataset).get("fingerprint") if paths.dataset.is_file() else None
    if recorded and recorded != dataset.fingerprint:
        raise GenlabError(f"the data behind run {paths.root} changed (fingerprint {recorded} -> {dataset.fingerprint})")
    if paths.base.is_file() and read_json(paths.base) != base_fingerprint(cfg):
        raise GenlabError(f"run {paths.root} was fine-tuned from {read_json(paths.base)['path']}, whose weights "
                          "have changed since; its adapter only fits the original")
    model = build_model(cfg, data_spec(dataset))
    try:
        model.load_saved_state(load_tensors(paths.final_weights))
    except RuntimeError as exc:
        raise GenlabError(f"{paths.final_weights} does not match the run's config: {str(exc)[:300]}") from None
    model.eval()
    return LoadedRun(paths, cfg, dataset, model)


def sampling_options(run: LoadedRun, options: dict) -> dict:
    """The options that were set (not None); one clear error for any the run's family does not declare."""
    options = {k: v for k, v in options.items() if v is not None}
    unknown = [k for k in options if k not in run.model.sampling_options]
    if unknown:
        takes = ", ".join("--" + o.replace("_", "-") for o in run.model.sampling_options)
        raise GenlabError(f"--{unknown[0].replace('_', '-')} does not apply to the {run.config.family} family"
                          + (f" (it takes: {takes})" if takes else ""))
    return options


def generate(run: LoadedRun, n: int, label: int | None = None, seed: int = 0, batch_size: int = 500,
             **options) -> torch.Tensor:
    """n samples as float [0, 1] images; the same seed gives the same images.

    `options` are the family's sampling options (e.g. steps, guidance, sampler for diffusion); None means
    the run's default.
    """
    if isinstance(run.dataset, TextDataset):
        raise GenlabError(f"{run.paths.root} is a language model: generate text with --prompt (or generate_text)")
    if not 1 <= n <= MAX_SAMPLES:
        raise GenlabError(f"--n must be between 1 and {MAX_SAMPLES:,} (draw larger sets in several calls)")
    options = sampling_options(run, options)
    noise = torch.Generator().manual_seed(seed)
    labels = None if label is None else torch.tensor([label])
    parts = []
    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        parts.append(run.model.sample(m, None if labels is None else labels.expand(m), noise, **options))
    return torch.cat(parts)


def sample_rows(run: LoadedRun, n: int, seed: int = 0, conditions: dict | None = None):
    """n synthetic rows of a table run as a DataFrame, keeping the run's data.constraints (what they rejected
    is in rows.attrs["constraints"]); `conditions`: {column: value} for one categorical column, fed to the
    generator's condition input (ctgan)."""
    if run.dataset.modality != "table":
        raise GenlabError(f"{run.paths.root} is not a table run")
    if conditions and "conditions" not in run.model.sampling_options:
        raise GenlabError(f"conditions need a conditional table family (ctgan); {run.config.family} samples are "
                          "unconditional")
    options = {"conditions": run.dataset.condition_vector(conditions)} if conditions else {}
    rows, stats = run.dataset.sample_rows(lambda count, s: generate(run, count, seed=s, **options), n, seed)
    rows.attrs["constraints"] = stats
    return rows


def to_uint8(images: torch.Tensor) -> np.ndarray:
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def image_grid(images: torch.Tensor, ncol: int | None = None, pad: int = 1) -> np.ndarray:
    """N x C x H x W float [0, 1] -> one H' x W' (x 3) uint8 picture."""
    arr = to_uint8(images)
    n, c, h, w = arr.shape
    ncol = ncol or int(np.ceil(np.sqrt(n)))
    nrow = int(np.ceil(n / ncol))
    grid = np.full((c, nrow * (h + pad) + pad, ncol * (w + pad) + pad), 255, np.uint8)
    for i in range(n):
        r, col = divmod(i, ncol)
        grid[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + col * (w + pad): pad + col * (w + pad) + w] = arr[i]
    return grid[0] if c == 1 else grid.transpose(1, 2, 0)


def png_bytes(picture: np.ndarray, scale: int = 1) -> bytes:
    import io

    from PIL import Image

    im = Image.fromarray(picture)
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def save_samples(images: torch.Tensor, out: str | Path, labels: torch.Tensor | None = None,
                 ncol: int | None = None) -> Path:
    out = Path(out)
    if out.suffix == ".png":
        atomic_write_bytes(out, png_bytes(image_grid(images, ncol), scale=max(1, 64 // images.shape[-1])))
    elif out.suffix == ".npz":
        import io

        buf = io.BytesIO()
        arrays = {"images": to_uint8(images)}
        if labels is not None:
            arrays["labels"] = labels.numpy()
        np.savez_compressed(buf, **arrays)
        atomic_write_bytes(out, buf.getvalue())
    else:
        raise GenlabError(f"--out must end in .png or .npz, got {out.name}")
    return out


def _text_run(run: LoadedRun) -> TextDataset:
    if not isinstance(run.dataset, TextDataset):
        raise GenlabError(f"--prompt and text generation need a language model; this run is {run.config.family}")
    return run.dataset


def stream_text(run: LoadedRun, prompt: str = "", seed: int = 0, n: int = 1, stop: list[str] | None = None,
                **sampling):
    """Yield the new text of `n` continuations of `prompt` piece by piece (one string per sample per step)
    as tokens are generated; stops at `max_new_tokens`, at end of document, or after a `stop` string."""
    from genlab.nn.decoding import SamplingConfig, generate_tokens

    ds = _text_run(run)
    cfg = SamplingConfig(**sampling_options(run, sampling))
    cfg.validate()
    if not 1 <= n <= 1000:
        raise GenlabError("--n must be between 1 and 1,000 for text")
    ids = ds.tokenizer.encode(prompt) if prompt else []
    start = torch.tensor([ds.tokenizer.eot_id, *ids], dtype=torch.long)  # a new document begins
    prompt_ids = start.expand(n, -1).contiguous()
    generator = torch.Generator().manual_seed(seed)
    done = [False] * n
    emitted = [0] * n
    produced: list[list[int]] = [[] for _ in range(n)]
    for new in generate_tokens(run.model.net, prompt_ids, cfg, generator):
        pieces = []
        for i, tok in enumerate(new.tolist()):
            if done[i] or tok == ds.tokenizer.eot_id:
                done[i] = True
                pieces.append("")
                continue
            produced[i].append(tok)
            text = ds.tokenizer.decode(produced[i])
            if stop:
                cut = min((text.find(s) for s in stop if s in text), default=-1)
                if cut >= 0:
                    text, done[i] = text[:cut], True
            if text.endswith("\ufffd") and not done[i]:  # an incomplete UTF-8 sequence: wait for its bytes
                pieces.append("")
                continue
            pieces.append(text[emitted[i]:])
            emitted[i] = len(text)
        yield pieces
        if all(done):
            return


def generate_text(run: LoadedRun, prompt: str = "", n: int = 1, seed: int = 0, **sampling) -> list[str]:
    """`n` continuations of `prompt` (without the prompt)."""
    out = [""] * n
    for pieces in stream_text(run, prompt, seed, n, **sampling):
        out = [a + b for a, b in zip(out, pieces, strict=True)]
    return out
