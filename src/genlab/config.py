"""Typed run configuration: YAML recipes plus `key=value` overrides, with unknown keys reported as errors."""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from genlab.core.errors import GenlabError
from genlab.core.runs import atomic_write_text
from genlab.core.validate import choice, fraction, positive
from genlab.registry import family_class, modality_of_source


@dataclass
class AugmentConfig:
    """Image augmentation of training batches, drawn fresh each batch from the run's noise generator (so a
    resumed run sees the same batches); validation and test images are never augmented."""

    flip: float = 0.0  # probability of a horizontal flip (leave 0 for digits, letters, anything handed)
    translate: float = 0.0  # largest shift, as a fraction of the image side
    rotate: float = 0.0  # largest rotation, degrees
    scale: float = 0.0  # largest zoom in or out, as a fraction
    noise: float = 0.0  # standard deviation of Gaussian pixel noise (pixels in [0, 1])

    def validate(self) -> None:
        fraction("data.augment", {"flip": self.flip, "translate": self.translate, "scale": self.scale,
                                  "noise": self.noise})
        if not 0 <= self.rotate <= 180:
            raise GenlabError("data.augment.rotate must be between 0 and 180 degrees")

    @property
    def active(self) -> bool:
        return any((self.flip, self.translate, self.rotate, self.scale, self.noise))


@dataclass
class RetrievalConfig:
    """Answers grounded in a document index (genlab index build): the passages retrieved for the last user turn
    are placed in the conversation as a system turn, in training and at serving time alike."""

    index: str | None = None  # an index folder; None: no retrieval
    k: int = 2  # passages placed in the prompt
    method: str = "hybrid"  # bm25 | dense | hybrid (reciprocal-rank fusion)
    passage_chars: int = 600  # each passage cut to this many characters (the window holds passages and answer)
    min_score: float = 0.0  # abstain ("I don't know") when the best passage's BM25 score is below this; 0: never

    def validate(self) -> None:
        choice("data.retrieval.method", self.method, ("bm25", "dense", "hybrid"))
        positive("data.retrieval", {"k": self.k, "passage_chars": self.passage_chars})
        if self.min_score < 0:
            raise GenlabError("data.retrieval.min_score must be >= 0 (0: never abstain)")


@dataclass
class DataConfig:
    source: str = "digits"  # images digits | idx | npz | folder; text txt | jsonl | fortune; chat; table
    path: str | list[str] | None = None  # file or folder (every source but digits); text: also a list of files
    val_fraction: float = 0.1  # share of the non-test items held out for validation
    test_fraction: float = 0.1  # ignored when the source ships its own test split (IDX t10k files)
    split_seed: int = 0  # seed of the train / validation / test split (fixed for the dataset)
    # tables and images: the last N items are the test split (a published split, e.g. CoIL 2000's 4,000 evaluation
    # customers) instead of test_fraction at random; val_fraction still comes at random from the rest
    test_last: int | None = None
    resize: int | None = None  # square side to resize to; images of mixed sizes are an error without it
    # images: transparent pixels (RGBA, LA, palette transparency) are composited over this colour (a name or
    # #rrggbb) before anything else; one rule for every file (genlab.modalities.image.data.flatten_alpha)
    background: str = "white"
    binarize: bool = False  # dynamic binarisation: pixels drawn as Bernoulli(intensity) each batch
    limit: int | None = None  # keep only the first N images / documents of the source (quick experiments)
    separator: str | None = None  # txt: split a file into documents on this string (e.g. "\n\n"); None: one
    tokenizer: str = "char"  # text: char | bpe (byte-level, trained on the training split) | pretrained (the base's)
    vocab_size: int = 4096  # text, bpe: vocabulary size
    block_size: int = 256  # text: context length in tokens
    # text, char: also take characters from these files (same format as source), so that a later fine-tune on
    # them finds every character in this run's vocabulary
    vocab_from: list[str] = field(default_factory=list)
    token_noise: float = 0.0  # text: chance each training input token is swapped for a unigram draw (Xie et al.)
    train_on: str = "assistant"  # chat: assistant (answers and their end-of-turn tokens train) | all (every token)
    packing: bool = True  # chat: several conversations per window, attention and positions restarting at each
    chat_template: str | None = None  # chat: a Jinja template file; None: the base model's, else genlab's
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)  # chat: answers grounded in an index
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # images: augmentation of training batches
    reward: str | None = None  # prompts: what completions are scored by (genlab.rewards: a built-in or module:function)
    schema: str | None = None  # tables: an edited schema YAML (genlab data schema); None: inferred from the data
    balance: bool = False  # tables: training-by-sampling (CTGAN): rows drawn per category, rare ones as often
    constraints: list[dict[str, Any]] = field(default_factory=list)  # tables: rules samples keep (tables.constraints)
    # tables: cell texts that mean "missing" besides empty cells (e.g. ["NA", "?"]), matched exactly; by default
    # only empty cells are missing, so a category spelled "None" or "NA" stays a category (tables.io)
    missing_values: list[Any] = field(default_factory=list)

    def validate(self) -> None:
        choice("data.tokenizer", self.tokenizer, ("char", "bpe", "pretrained"))
        choice("data.train_on", self.train_on, ("assistant", "all"))
        if self.vocab_from and self.tokenizer != "char":
            raise GenlabError("data.vocab_from applies to the char tokenizer (byte-level BPE already covers any text)")
        fraction("data", {"val_fraction": self.val_fraction, "test_fraction": self.test_fraction,
                          "token_noise": self.token_noise})
        positive("data", {"resize": self.resize, "limit": self.limit, "test_last": self.test_last,
                          "vocab_size": self.vocab_size, "block_size": self.block_size})
        _check_colour(self.background)
        if self.test_last is not None and self.source not in ("table", "digits", "idx", "npz", "folder"):
            raise GenlabError(f"data.test_last applies to tables and images; source {self.source!r} splits by "
                              "data.test_fraction")
        if self.missing_values and self.source != "table":
            raise GenlabError("data.missing_values applies to tables (data.source=table)")
        for value in self.missing_values:  # YAML reads null, TRUE, 007 as None, True, 7: the spelling is lost
            if not isinstance(value, str) or not value:
                raise GenlabError(f"data.missing_values lists cell texts exactly as written, quoted where YAML "
                                  f"would read something else (e.g. ['NA', 'null', 'TRUE', '-999']); got {value!r}")


def _check_colour(value: str) -> None:
    from PIL import ImageColor

    try:
        ImageColor.getrgb(value)
    except (ValueError, AttributeError):
        raise GenlabError(f"config key 'data.background' must be a colour name or #rrggbb, got {value!r}") from None


@dataclass
class PrivacyConfig:
    """Differentially private training (DP-SGD, Abadi et al. 2016) of the phases that read training rows; the
    noise is solved from the target epsilon for the planned steps (genlab.train.privacy)."""

    epsilon: float = 3.0  # the (epsilon, delta) guarantee to spend over train.steps
    delta: float = 1e-5  # should be well below 1 / training rows
    max_grad_norm: float = 1.0  # each row's gradient is clipped to this L2 norm before noise is added
    accountant: str = "rdp"  # rdp | prv (Opacus accountants; prv is tighter for many steps)
    # the schema's bounds and categories are public knowledge (not read off the private rows); required when the
    # schema was inferred from the data rather than written by the user with `public: true` in the file
    public_schema: bool = False

    def validate(self) -> None:
        choice("train.privacy.accountant", self.accountant, ("rdp", "prv"))
        positive("train.privacy", {"epsilon": self.epsilon, "max_grad_norm": self.max_grad_norm})
        if not 0 < self.delta < 1:
            raise GenlabError(f"config key 'train.privacy.delta' must be in (0, 1), got {self.delta}")


@dataclass
class TrainConfig:
    steps: int = 1000  # optimisation steps (a GAN step runs every phase once)
    max_seconds: float | None = None  # wall-clock budget for the training loop; stops early when reached
    batch_size: int = 128  # the global batch: split over processes and train.accumulate
    # adam | adamw | muon (Muon for hidden matrices and conv filters, AdamW for the rest: genlab.train.muon)
    optimizer: str = "adam"
    lr: float = 1e-3  # peak learning rate (see schedule, warmup_steps)
    lr_by_phase: dict[str, float] = field(default_factory=dict)  # e.g. {discriminator: 4e-4}
    # muon: Muon's peak lr; None: the phase's lr (Muon's update is scaled to AdamW's RMS, 0.2 lr, so they compare)
    muon_lr: float | None = None
    muon_momentum: float = 0.95  # muon: Nesterov momentum of Muon's groups
    # muon: Newton-Schulz iterations per update (each costs ~3 products of a weight's size: on one CPU core with
    # small batches this is a visible share of a step; fewer steps orthogonalise less exactly)
    muon_ns_steps: int = 5
    # muon: Newton-Schulz precision, auto | fp32 | bf16 (auto: bf16 on CUDA and on CPUs with native bf16 products,
    # AVX512-BF16 / AMX, as modded-nanogpt; else fp32, since emulated bf16 is slower than fp32)
    muon_ns_precision: str = "auto"
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    betas_by_phase: dict[str, list[float]] = field(default_factory=dict)
    weight_decay: float = 0.0  # AdamW / Adam weight decay (see weight_decay_scope)
    # all (every parameter) | matrices (2+ dimensions only, as nanoGPT: no decay on norms and biases); measured
    # on shakespeare-char-gpt, matrices was not better (docs/benchmarks.md), so all stays the default
    weight_decay_scope: str = "all"
    # constant | cosine | linear (decay to min_lr_ratio * lr) | wsd (warm-up, stable, linear decay at the end)
    schedule: str = "constant"
    decay_fraction: float = 0.2  # wsd: share of train.steps in the final linear decay to min_lr_ratio
    warmup_steps: int = 0  # linear warm-up from 0 to lr over this many steps
    min_lr_ratio: float = 0.0  # cosine / linear / wsd schedules decay to this fraction of lr
    grad_clip: float | None = None
    ema_decay: float | None = None  # None: the family's default; 0 disables; EMA weights validate and sample
    val_every: int = 500  # validate every N steps (0: only at the end)
    val_at_start: bool = False  # validate before the first step too (fine-tuning: the un-tuned base's figure)
    val_batches: int | None = None  # None: the whole validation split
    early_stopping_metric: str | None = None  # a validation metric name, e.g. neg_elbo
    early_stopping_mode: str = "min"  # min | max
    patience: int | None = None  # validations without improvement before stopping; None: never stop
    checkpoint_every: int = 500  # write a resumable checkpoint every N steps (0: only at the end)
    keep_last: int = 2  # checkpoints kept on disk
    log_every: int = 50  # average and log the losses every N steps
    seed: int = 0  # initialisation, batch order and noise: the same seed trains the same weights
    threads: int | None = None  # torch intra-op threads, fixed for the run; None: the free CPUs, re-checked every 2 s
    accumulate: int = 1  # micro-batches per process per step (gradient accumulation; same global batch)
    # fp32 | bf16 (autocast of the forward pass) | auto (bf16 where it is native: a CUDA GPU that supports it, a CPU
    # with AVX512-BF16 / AMX; else fp32, since emulated bf16 is slower)
    precision: str = "fp32"
    device: str = "auto"  # auto (a GPU when PyTorch sees one, else the CPU) | cpu | cuda
    compile: bool = False  # torch.compile each phase's modules
    fsdp: bool = False  # shard parameters, gradients and optimizer state across processes (families with shard_units)
    # default (the family's own loss) | dpo (language models on data.source=prefs: direct preference optimisation)
    # | grpo (language models on data.source=prompts: group-relative policy optimisation against data.reward); both
    # compare with the starting weights, which LoRA keeps as the adapters switched off, a full fine-tune as a copy
    objective: str = "default"
    beta: float = 0.1  # dpo, grpo: strength of the pull towards the reference (grpo: weight of its KL penalty)
    # dpo: weight of the chosen completions' per-token NLL added to the loss (RPO, Pang et al. 2024; TRL's
    # rpo_alpha): DPO alone can push the chosen answers down with the rejected ones and drift into text neither
    # side looked like; 0 is plain DPO
    dpo_nll: float = 0.0
    group_size: int = 8  # grpo: completions sampled per prompt; rewards are normalised within each group
    clip: float = 0.2  # grpo: the policy ratio is clipped to [1 - clip, 1 + clip] (PPO's surrogate)
    completion_tokens: int = 64  # grpo: longest sampled completion, in tokens
    privacy: PrivacyConfig | None = None  # tables (tvae, ctgan): differentially private training; None: not private

    def validate(self) -> None:
        choice("train.optimizer", self.optimizer, ("adam", "adamw", "muon"))
        choice("train.muon_ns_precision", self.muon_ns_precision, ("auto", "fp32", "bf16"))
        choice("train.weight_decay_scope", self.weight_decay_scope, ("all", "matrices"))
        choice("train.schedule", self.schedule, ("constant", "cosine", "linear", "wsd"))
        choice("train.early_stopping_mode", self.early_stopping_mode, ("min", "max"))
        choice("train.precision", self.precision, ("fp32", "bf16", "auto"))
        choice("train.device", self.device, ("auto", "cpu", "cuda"))
        choice("train.objective", self.objective, ("default", "dpo", "grpo"))
        if self.group_size < 2:
            raise GenlabError(f"config key 'train.group_size' must be >= 2 (rewards are compared within a group), "
                              f"got {self.group_size}")
        positive("train", {"steps": self.steps, "batch_size": self.batch_size, "lr": self.lr,
                           "max_seconds": self.max_seconds, "keep_last": self.keep_last, "log_every": self.log_every,
                           "threads": self.threads, "patience": self.patience, "grad_clip": self.grad_clip,
                           "accumulate": self.accumulate, "beta": self.beta, "clip": self.clip,
                           "completion_tokens": self.completion_tokens,
                           "muon_ns_steps": self.muon_ns_steps})
        if self.dpo_nll < 0:
            raise GenlabError(f"config key 'train.dpo_nll' must be >= 0, got {self.dpo_nll}")
        fraction("train", {"ema_decay": self.ema_decay}, "; 0 disables EMA")
        fraction("train", {"muon_momentum": self.muon_momentum})
        if not 0 <= self.decay_fraction <= 1:
            raise GenlabError(f"config key 'train.decay_fraction' must be in [0, 1], got {self.decay_fraction}")
        positive("train", {"muon_lr": self.muon_lr})


@dataclass
class LoraConfig:
    """Low-rank adapters (Hu et al. 2021, via PEFT): W x + (alpha / rank) B A x with only A and B trained."""

    rank: int = 0  # 0: no adapters, every parameter trains
    alpha: float = 16.0  # adapter scale: the update is (alpha / rank) B A x
    dropout: float = 0.05  # dropout on the adapters' input
    targets: list[str] | None = None  # module names to adapt (suffix match); None: the family's default

    def validate(self) -> None:
        if self.rank < 0:
            raise GenlabError(f"config key 'lora.rank' must be >= 0 (0 disables LoRA), got {self.rank}")
        positive("lora", {"alpha": self.alpha})
        fraction("lora", {"dropout": self.dropout})
        if self.targets is not None and not self.targets:
            raise GenlabError("lora.targets must name at least one module (or be null for the family's default)")


@dataclass
class RunConfig:
    name: str = "run"
    family: str = "vae"
    data: DataConfig = field(default_factory=DataConfig)
    model: Any = None  # the family's own config dataclass
    init_from: str | None = None  # a finished genlab run whose weights (and tokenizer) this run starts from
    lora: LoraConfig = field(default_factory=LoraConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: Any = None  # the modality's evaluation options plus the family's likelihood options (eval_options_class)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read a YAML recipe (or start from defaults), apply `a.b=value` overrides, validate every key."""
    return config_from_dict(read_recipe(path, overrides))


def read_recipe(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """The raw mapping of a YAML recipe with `a.b=value` overrides applied (not validated yet)."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise GenlabError(f"config file not found: {path}")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise GenlabError(f"config {path} is not valid YAML: {exc}".replace("\n", " ")) from None
        if not isinstance(raw, dict):
            raise GenlabError(f"config {path} must be a mapping of keys to values")
    for item in overrides:
        apply_override(raw, item)
    return raw


def config_from_dict(raw: dict[str, Any]) -> RunConfig:
    """A validated RunConfig; the `model` section is typed by the family, `eval` by the modality and family."""
    raw = dict(raw)
    model_raw = raw.pop("model", None) or {}
    eval_raw = raw.pop("eval", None) or {}
    cfg = _build(RunConfig, raw, "")
    family = family_class(cfg.family)
    modality = modality_of_source(cfg.data.source)
    modality.check_data(cfg.data)
    cfg.model = _build(family.config_class, model_raw, "model.")
    cfg.eval = build_eval(modality, family, eval_raw)
    return cfg


def build_eval(modality: Any, family: Any, raw: dict[str, Any]) -> Any:
    """The `eval` section of a run: its modality's options and its family's (e.g. IWAE samples for a VAE)."""
    return _build(eval_options_class(modality.eval_options, getattr(family, "eval_options", None)), raw, "eval.")


@functools.cache
def eval_options_class(*parts: type | None) -> type:
    """One dataclass holding the fields of `parts`; its validate() runs each part's."""
    parts = tuple(p for p in parts if p is not None)
    fields = [(f.name, typing.get_type_hints(p)[f.name], f) for p in parts for f in dataclasses.fields(p)]

    def validate(self) -> None:
        for part in parts:
            obj = part(**{f.name: getattr(self, f.name) for f in dataclasses.fields(part)})
            if hasattr(obj, "validate"):
                obj.validate()

    return dataclasses.make_dataclass("EvalConfig", fields, namespace={"validate": validate})


def apply_override(raw: dict[str, Any], item: str) -> None:
    if "=" not in item:
        raise GenlabError(f"override {item!r} must look like key=value, e.g. train.steps=200")
    key, _, text = item.partition("=")
    try:
        value = yaml.safe_load(text) if text else None
    except yaml.YAMLError:
        value = text
    node = raw
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise GenlabError(f"override {key!r}: {part!r} is not a section")
    node[parts[-1]] = value


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise GenlabError(f"config section {prefix.rstrip('.') or 'top level'} must be a mapping")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in raw if k not in names]
    if unknown:
        raise GenlabError(
            f"unknown config key {prefix + str(unknown[0])!r}; valid keys here: "
            + ", ".join(prefix + n for n in names)
        )
    values = {}
    for key, value in raw.items():
        hint = hints[key]
        optional = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(optional) == 1 and dataclasses.is_dataclass(optional[0]) and value is not None:
            hint = optional[0]  # an optional section (train.privacy): absent or null means off
        if dataclasses.is_dataclass(hint):
            values[key] = _build(hint, value if value is not None else {}, f"{prefix}{key}.")
        elif key in ("model", "eval") and cls is RunConfig:
            values[key] = value
        else:
            values[key] = _coerce(value, hint, prefix + key)
    try:
        obj = cls(**values)
    except (TypeError, ValueError) as exc:
        raise GenlabError(f"config {prefix.rstrip('.') or 'top level'}: {exc}") from None
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate()
    return obj


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check `value` against a type hint; numbers written as strings (YAML's `1e-3`) become numbers."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except GenlabError as exc:
                errors.append(str(exc))
        raise GenlabError(errors[0])
    if origin is list:
        if not isinstance(value, list):
            raise GenlabError(f"config key {key!r} must be a list, got {value!r}")
        return [_coerce(v, args[0], key) for v in value] if args else value
    if origin is dict:
        if not isinstance(value, dict):
            raise GenlabError(f"config key {key!r} must be a mapping, got {value!r}")
        return {str(k): _coerce(v, args[1], f"{key}.{k}") for k, v in value.items()} if args else value
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(float(value)) if float(value).is_integer() else _fail(key, hint, value)
            except ValueError:
                pass
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, str):
            return value
    return _fail(key, hint, value)


def _fail(key: str, hint: Any, value: Any) -> Any:
    name = getattr(hint, "__name__", str(hint))
    raise GenlabError(f"config key {key!r} must be {name}, got {value!r}")


def save_config(cfg: RunConfig, path: Path) -> None:
    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
