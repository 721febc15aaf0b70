"""The one training loop for every family: phases, optimizers, EMA, validation, checkpoints, exact resume.

It never asks which family it is training: a model declares its phases (optimizer groups and how often
each runs) and returns a loss per phase; everything else here is shared.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from genlab.config import RunConfig
from genlab.core.errors import DiskFull, GenlabError, TrainingDiverged
from genlab.core.progress import bars_off
from genlab.core.progress import quiet as progress_quiet
from genlab.core.runs import RunPaths, atomic_save_tensors, atomic_write_json, disk_full
from genlab.core.spec import DataSpec
from genlab.core.threads import ThreadGovernor
from genlab.models.base import GenerativeModel
from genlab.registry import family_class
from genlab.train.checkpoint import CheckpointStore, optimizer_from_flat, optimizer_to_flat
from genlab.train.distributed import (
    World,
    data_parallel,
    full_model_state,
    full_optimizer_state,
    load_full_model_state,
    load_full_optimizer_state,
    native_bf16,
    shard_model,
)
from genlab.train.ema import EMA, weights_swapped
from genlab.train.log import NullLog, RunLog
from genlab.train.muon import Muon, muon_split

VAL_NOISE_SEED = 12345
PROGRESS_LINE_SECONDS = 10.0  # without a progress bar, a line this often at most


def data_spec(dataset) -> DataSpec:
    return dataset.spec()


def build_model(cfg: RunConfig, spec: DataSpec) -> GenerativeModel:
    """The family's model with weights initialised from the run's seed, or from the run named by `init_from`;
    with `lora.rank` > 0 those weights freeze and LoRA adapters are added. The process-wide RNG is left as it
    was (the initialisation draws from a forked copy)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)
        model = family_class(cfg.family)(cfg.model, spec)
    if cfg.init_from:
        from genlab.core.runs import existing_run, load_tensors

        base = existing_run(cfg.init_from)
        try:
            model.load_saved_state(load_tensors(base.final_weights))  # no adapters yet: all the stored tensors
        except RuntimeError as exc:
            raise GenlabError(f"the weights of {base.root} do not fit this model (an adapter-only run must be "
                              f"merged first: genlab merge): {str(exc)[:300]}") from None
    if cfg.lora.rank:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.train.seed + 3)  # the adapters' initialisation, as repeatable as the model's
            model.add_lora(cfg.lora)
    model.set_objective(cfg.train)  # after init_from and LoRA: the starting weights are the reference
    return model


def decay_groups(phase, weight_decay: float, scope: str = "all") -> list[dict]:
    """Parameter groups for weight decay: every trainable parameter (`all`), or, as nanoGPT does, only those
    of 2+ dimensions (`matrices`: matmul weights and embeddings; no decay on norms and biases)."""
    params = phase.parameters()
    decayed = [p for p in params if scope == "all" or p.dim() >= 2]
    kept = [p for p in params if scope != "all" and p.dim() < 2]
    return [{"params": decayed, "weight_decay": weight_decay}, {"params": kept, "weight_decay": 0.0}]


def muon_optimizer(model: GenerativeModel, phase, tc, lr: float, betas: tuple[float, float]) -> Muon:
    """train.optimizer=muon: Muon (lr train.muon_lr, else the phase's lr) for the phase's matrices by the rule of
    genlab.train.muon.muon_split (the family's `muon_exclude` names module suffixes left out), AdamW (the phase's lr
    and betas, weight_decay_scope as for adamw) for the rest; decoupled weight decay train.weight_decay on both."""
    muon, adam = muon_split(model, phase.modules, model.muon_exclude)
    muon_lr = lr if tc.muon_lr is None else tc.muon_lr
    groups = [{"params": muon, "use_muon": True, "lr": muon_lr, "weight_decay": tc.weight_decay}]
    rest = set(map(id, adam))
    groups += [{**g, "params": [p for p in g["params"] if id(p) in rest]}
               for g in decay_groups(phase, tc.weight_decay, tc.weight_decay_scope)]
    groups = [g for g in groups if g["params"]]
    opt = Muon(groups, lr=lr, momentum=tc.muon_momentum, ns_steps=tc.muon_ns_steps,
               ns_precision=tc.muon_ns_precision, betas=betas)
    for group in opt.param_groups:
        group["base_lr"] = group["lr"]
    return opt


def quiet() -> bool:
    """No progress bars: under CI, with GENLAB_QUIET, or when stderr is not a terminal."""
    return bars_off(progress_quiet())


def lr_factor(step: int, cfg) -> float:
    """Warm-up then constant, cosine or linear decay to min_lr_ratio, or wsd (warm-up, stable at 1, then a linear
    decay to min_lr_ratio over the last decay_fraction of train.steps), as a function of the step alone."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "wsd":
        decay = round(cfg.decay_fraction * cfg.steps)
        start = max(cfg.warmup_steps, cfg.steps - decay)
        if step < start or decay == 0:
            return 1.0
        progress = min(1.0, (step - start) / max(1, cfg.steps - start))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * (1 - progress)
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    shape = 0.5 * (1 + math.cos(math.pi * progress)) if cfg.schedule == "cosine" else 1 - progress
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * shape


class Trainer:
    def __init__(self, cfg: RunConfig, run: RunPaths, dataset, model: GenerativeModel, world: World | None = None):
        """`dataset`: any genlab dataset (images, text): it provides train_stream and validation_batches.
        `world`: the processes training together (torchrun); by default the one torchrun set up, or just this."""
        tc = cfg.train
        self.cfg, self.tc, self.run, self.dataset, self.model = cfg, tc, run, dataset, model
        self.world = world or World.current(tc.device)
        self.device = self.world.device
        # train.precision: bf16 autocast of the forward pass; auto where bf16 is native (distributed.native_bf16)
        self.bf16 = self.tc.precision == "bf16" or (self.tc.precision == "auto" and native_bf16(self.device))
        self.threads = ThreadGovernor(tc.threads)  # train.threads, else the CPUs others leave free, kept up to date
        model.to(self.device)  # before optimizers, EMA and wrappers see the parameters
        model.calibrate(dataset)  # data statistics the family keeps in its state (before EMA copies it)
        self.phases = model.phases()
        names = [p.name for p in self.phases]
        for key, given in (("train.lr_by_phase", tc.lr_by_phase), ("train.betas_by_phase", tc.betas_by_phase)):
            if unknown := [k for k in given if k not in names]:
                raise GenlabError(f"{key} names phase {unknown[0]!r}; the {cfg.family} family's phases are: "
                                  + ", ".join(names))
        self._trainable = {id(p) for p in model.parameters() if p.requires_grad}
        ema_decay = model.default_ema_decay if tc.ema_decay is None else tc.ema_decay
        if tc.fsdp:
            if ema_decay > 0 or model.adapted or len(self.phases) > 1:
                raise GenlabError("train.fsdp shards one-phase models without EMA or LoRA; set train.ema_decay=0")
            if tc.optimizer == "muon":
                raise GenlabError("train.optimizer=muon orthogonalises whole weight matrices, which train.fsdp splits "
                                  "across processes; use train.fsdp=false (DDP: every process holds whole matrices) "
                                  "or train.optimizer=adamw")
            model.shard_units()  # the family says whether it can be sharded, also on one process
        self.sharded = tc.fsdp and self.world.size > 1  # one process has nothing to shard across
        if self.sharded:
            shard_model(model)
        self.optimizers = {p.name: self._optimizer(p) for p in self.phases}
        self._phase_params = {p.name: set(map(id, p.parameters())) for p in self.phases}
        self.ema = EMA(model, ema_decay) if ema_decay > 0 else None
        self.stream = dataset.train_stream(tc.batch_size, tc.seed, cfg.data.binarize)
        self.privacy = self._privacy_engine() if tc.privacy is not None else None
        if tc.batch_size % (self.world.size * tc.accumulate):
            raise GenlabError(f"train.batch_size={tc.batch_size} must be divisible by processes x train.accumulate "
                              f"({self.world.size} x {tc.accumulate})")
        self.noise = torch.Generator().manual_seed(tc.seed + 1)
        torch.manual_seed(tc.seed + 2)  # dropout draws from the process-wide generator (saved in checkpoints)
        if self.world.size > 1:  # each process its own noise and dropout (the model itself starts identical)
            self._fork_rngs()
        if tc.compile:
            for phase in self.phases:
                for module in phase.modules:
                    module.compile()
        self.ddp = self.world.size > 1 and not self.sharded  # FSDP reduces gradients itself
        self.forward = {p.name: data_parallel(model, p.parameters(), self.device) if self.ddp else model
                        for p in self.phases}
        self.store = CheckpointStore(run.checkpoints, tc.keep_last)
        self.step = 0
        self.elapsed = 0.0
        self.best: dict[str, Any] = {"value": None, "step": None, "bad_validations": 0}
        self.start_metrics: dict[str, float] | None = None  # train.val_at_start: the figures before training
        self.last_validation: dict[str, float] = {}

    def _privacy_engine(self):
        """train.privacy: DP-SGD on the phases the family declares private (genlab.train.privacy). The data's
        train stream must Poisson-sample rows (it says at what rate); the noise is calibrated for every private
        step the run plans."""
        from genlab.train.privacy import PrivacyEngine

        tc = self.tc
        private = [p for p in self.phases if p.private]
        rate = getattr(self.stream, "sample_rate", None)
        if not private or rate is None:
            raise GenlabError(f"train.privacy: the {self.cfg.family} family on {self.cfg.data.source} data has no "
                              "private training; use a table family (tvae, ctgan) on data.source=table")
        if self.world.size > 1 or tc.accumulate > 1 or tc.fsdp:
            raise GenlabError("train.privacy trains on one process without train.accumulate or train.fsdp")
        if tc.early_stopping_metric is not None:
            raise GenlabError("train.privacy keeps the last weights: choosing the best by validation rows would "
                              "read them without budget (unset train.early_stopping_metric)")
        for phase in private:
            PrivacyEngine.check_modules(phase)
        self.model.make_private()
        steps = tc.steps * sum(p.repeats for p in private)
        return PrivacyEngine(tc.privacy, rate, steps, expected_batch=float(tc.batch_size), seed=tc.seed + 4)

    def _fork_rngs(self) -> None:
        """Derive this process's noise and dropout streams from the shared ones and its rank, so processes do
        not draw the same noise for different examples; deterministic, so a resume gives the same streams."""
        rank = self.world.rank
        self.noise.manual_seed(int(torch.randint(2**62, (1,), generator=self.noise)) + rank)
        torch.manual_seed(int(torch.randint(2**62, (1,))) + rank)

    def _optimizer(self, phase) -> torch.optim.Optimizer:
        tc = self.tc
        lr = tc.lr_by_phase.get(phase.name, tc.lr)
        betas = tuple(tc.betas_by_phase.get(phase.name, tc.betas))
        if tc.optimizer == "muon":
            return muon_optimizer(self.model, phase, tc, lr, betas)
        cls = torch.optim.AdamW if tc.optimizer == "adamw" else torch.optim.Adam
        opt = cls(decay_groups(phase, tc.weight_decay, tc.weight_decay_scope), lr=lr, betas=betas)
        for group in opt.param_groups:
            group["base_lr"] = lr
        return opt

    # -- checkpoints: what the run stores (full tensors, also under FSDP, where every process takes part) ----
    def model_state(self) -> dict[str, torch.Tensor]:
        return full_model_state(self.model) if self.sharded else self.model.saved_state()

    def load_model_state(self, state: dict[str, torch.Tensor]) -> None:
        if self.sharded:
            load_full_model_state(self.model, state)
        else:
            self.model.load_saved_state(state)

    def optimizer_state(self, opt: torch.optim.Optimizer) -> dict:
        return full_optimizer_state(self.model, opt) if self.sharded else opt.state_dict()

    def load_optimizer_state(self, opt: torch.optim.Optimizer, state: dict) -> None:
        if self.sharded:
            load_full_optimizer_state(self.model, opt, state)
        else:
            opt.load_state_dict(state)

    def save_checkpoint(self) -> Path:
        tensors = {f"model.{k}": v for k, v in self.model_state().items()}
        if self.ema is not None:
            tensors.update({f"ema.{k}": v for k, v in self.ema.state_dict().items()})
        optim_meta = {}
        for name, opt in self.optimizers.items():
            flat, meta = optimizer_to_flat(name, self.optimizer_state(opt))
            tensors.update(flat)
            optim_meta[name] = meta
        tensors["rng.noise"] = self.noise.get_state()
        if self.privacy is not None:
            tensors["rng.privacy"] = self.privacy.generator.get_state()
        tensors["rng.torch"] = torch.get_rng_state()
        if self.device.type == "cuda":  # dropout on a GPU draws from the GPU's generator
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        state = {"step": self.step, "elapsed_seconds": self.elapsed, "stream": self.stream.state(),
                 "optimizers": optim_meta, "best": self.best, "family": self.cfg.family,
                 "start_metrics": self.start_metrics}
        if self.privacy is not None:
            state["privacy"] = self.privacy.state()
        if not self.world.main:  # every process holds the same weights and optimizer state; one writes them
            return self.store.root
        return self.store.save(self.step, tensors, state)

    def load_checkpoint(self, path: Path) -> None:
        tensors, state = self.store.load(path)
        model_sd = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
        try:
            self.load_model_state(model_sd)
        except RuntimeError as exc:
            raise GenlabError(f"checkpoint {path} does not fit this model/config: {str(exc)[:300]}") from None
        if self.ema is not None:
            self.ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
        for name, opt in self.optimizers.items():
            self.load_optimizer_state(opt, optimizer_from_flat(name, tensors, state["optimizers"][name]))
        self.noise.set_state(tensors["rng.noise"])
        if self.privacy is not None:
            if "privacy" not in state:
                raise GenlabError(f"checkpoint {path} was written without train.privacy; it cannot resume privately")
            self.privacy.generator.set_state(tensors["rng.privacy"])
            self.privacy.load_state(state["privacy"])
        torch.set_rng_state(tensors["rng.torch"])
        if self.device.type == "cuda" and "rng.cuda" in tensors:
            torch.cuda.set_rng_state(tensors["rng.cuda"], self.device)
        self.stream.load_state(state["stream"])
        self.step, self.elapsed, self.best = state["step"], state["elapsed_seconds"], state["best"]
        self.start_metrics = state.get("start_metrics")
        if self.world.size > 1:
            self._fork_rngs()

    # -- the loop ----------------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train to train.steps (or a stop rule); `resume` continues from the latest checkpoint. A full disk
        is one clear error that names the last good checkpoint, which stays intact."""
        try:
            return self._fit(resume)
        except DiskFull as exc:
            latest = self.store.latest()
            then = (f"continue with --resume from the last good checkpoint {latest} (intact)" if latest
                    else "rerun with --resume (no checkpoint was written yet: it starts over)")
            raise disk_full(exc.folder, exc.needed, exc.what, then) from None

    def _fit(self, resume: bool) -> dict[str, Any]:
        tc = self.tc
        if resume and (latest := self.store.latest()) is not None:
            self.load_checkpoint(latest)
        log = RunLog(self.run.log, self.run.tensorboard, resume_step=self.step) if self.world.main else NullLog()
        if tc.val_at_start and self.step == 0:
            self._validate(log)
            self.start_metrics = self.last_validation
        multi_phase = len(self.phases) > 1
        sums: dict[str, torch.Tensor] = {}
        counts: dict[str, int] = {}
        stop_reason = "steps"
        self.model.train()
        lines = quiet() and not progress_quiet() and self.world.main  # stderr is no terminal, but not told quiet
        told = time.monotonic()
        bar = tqdm(total=tc.steps, initial=self.step, disable=quiet() or not self.world.main,
                   desc=f"train {self.cfg.name}",
                   dynamic_ncols=True)
        try:
            while self.step < tc.steps:
                if tc.max_seconds is not None and self.world.agree(self.elapsed >= tc.max_seconds):
                    stop_reason = "max_seconds"
                    break
                t0 = time.perf_counter()
                factor = lr_factor(self.step, tc)
                for phase in self.phases:
                    opt = self.optimizers[phase.name]
                    for group in opt.param_groups:
                        group["lr"] = group["base_lr"] * factor
                    if multi_phase:
                        wanted = self._phase_params[phase.name]
                        for p in self.model.parameters():
                            p.requires_grad_(id(p) in wanted)  # wanted holds trainable parameters only
                    for _ in range(phase.repeats):
                        opt.zero_grad(set_to_none=True)
                        for terms in self._phase_step(phase):
                            for k, v in terms.items():
                                sums[k] = sums.get(k, 0.0) + v.detach()
                                counts[k] = counts.get(k, 0) + 1
                        if tc.grad_clip:
                            torch.nn.utils.clip_grad_norm_(phase.parameters(), tc.grad_clip)
                        opt.step()
                if self.ema is not None:
                    self.ema.update(self.model, self.step)
                self.step += 1
                self.elapsed += time.perf_counter() - t0
                self.threads.update()
                bar.update(1)
                if self.step % tc.log_every == 0 or self.step == tc.steps:
                    means = self.world.mean({k: float(v) / counts[k] for k, v in sums.items()})
                    means["lr_factor"] = factor
                    log.write(self.step, "train", means)
                    bar.set_postfix({k: f"{v:.4g}" for k, v in list(means.items())[:3]})
                    if lines and time.monotonic() - told >= PROGRESS_LINE_SECONDS:  # no bar: a line now and then
                        told = time.monotonic()
                        shown = ", ".join(f"{k} {v:.4g}" for k, v in list(means.items())[:3])
                        print(f"train {self.cfg.name}: step {self.step}/{tc.steps}, {self.elapsed:.0f} s; {shown}",
                              file=sys.stderr, flush=True)
                    sums, counts = {}, {}
                if tc.val_every and self.step % tc.val_every == 0:
                    if self._validate(log):
                        stop_reason = "early_stopping"
                        break
                if tc.checkpoint_every and self.step % tc.checkpoint_every == 0:
                    self.save_checkpoint()
        finally:
            bar.close()
            for p in self.model.parameters():
                p.requires_grad_(id(p) in self._trainable)
        if tc.val_every and self.step % tc.val_every != 0 and stop_reason != "early_stopping":
            self._validate(log)
        self.save_checkpoint()
        log.close()
        return self._finish(stop_reason)

    def _phase_step(self, phase) -> list[dict[str, torch.Tensor]]:
        """Gradients of one repeat of `phase`; the terms of each micro-batch. Under train.privacy a private phase
        takes DP-SGD's noisy clipped gradient of a Poisson batch, and any other phase a batch with no row in it."""
        if self.privacy is None:
            parts = self.world.shard(self.stream.next(self.noise), self.tc.accumulate)
            return [self._loss(phase.name, part, last=i == len(parts) - 1)[1] for i, part in enumerate(parts)]
        if not phase.private:
            return [self._loss(phase.name, self.dataset.public_batch(self.tc.batch_size), last=True)[1]]
        batch = self.stream.next(self.noise).to(self.device)
        return [self.privacy.step(phase.parameters(), batch, lambda rows: self._forward(phase.name, rows))]

    def _forward(self, phase: str, batch):
        cast = torch.autocast(self.device.type, torch.bfloat16) if self.bf16 else contextlib.nullcontext()
        with cast:
            loss, terms = self.forward[phase](phase, batch, self.noise)
        self._check_finite(phase, loss, terms)
        return loss, terms

    def _loss(self, phase: str, batch, last: bool):
        """Forward and backward of one micro-batch (its loss scaled by 1 / train.accumulate); processes
        average gradients (DDP) on the last micro-batch only."""
        forward, parts = self.forward[phase], self.tc.accumulate
        batch = batch.to(self.device)
        sync = forward.no_sync() if self.ddp and not last else contextlib.nullcontext()
        with sync:
            loss, terms = self._forward(phase, batch)
            (loss / parts).backward()
        return loss, terms

    def _check_finite(self, phase: str, loss: torch.Tensor, terms: dict[str, torch.Tensor]) -> None:
        values = torch.stack([loss.detach(), *[t.detach().float() for t in terms.values()]])
        if bool(torch.isfinite(values).all()):
            return
        bad = next((k for k, v in terms.items() if not torch.isfinite(v).all()), "loss")
        latest = self.store.latest()
        where = f"last good checkpoint: {latest}" if latest else "no checkpoint was written yet"
        raise TrainingDiverged(
            f"training diverged at step {self.step + 1}: loss term {bad!r} of phase {phase!r} is "
            f"{float(terms.get(bad, loss).detach())}; {where}. Try a lower train.lr or set train.grad_clip"
        )

    @torch.no_grad()
    def _validate(self, log: RunLog) -> bool:
        """Validation metrics (EMA weights when enabled); returns True when early stopping says stop."""
        tc = self.tc
        metrics = self.last_validation = self.validation_metrics()
        log.write(self.step, "val", metrics)
        name = tc.early_stopping_metric
        if name is None:
            return False
        if name not in metrics:
            raise GenlabError(f"train.early_stopping_metric={name!r} is not a validation metric of this family; "
                              f"choose one of: {', '.join(metrics)}")
        value, best = metrics[name], self.best["value"]
        improved = best is None or (value < best if tc.early_stopping_mode == "min" else value > best)
        if improved:
            self.best = {"value": value, "step": self.step, "bad_validations": 0}
            weights = self.sampling_weights()  # every process: FSDP gathers the shards
            if self.world.main:
                atomic_save_tensors(self.run.checkpoints / "best.safetensors", weights)
        else:
            self.best["bad_validations"] += 1
        return tc.patience is not None and self.best["bad_validations"] >= tc.patience

    def validation_metrics(self) -> dict[str, float]:
        ds, tc = self.dataset, self.tc
        noise = torch.Generator().manual_seed(VAL_NOISE_SEED)
        binarize = VAL_NOISE_SEED if self.cfg.data.binarize else None
        totals: dict[str, float] = {}
        n = 0
        self.model.eval()
        with weights_swapped(self.model, self.ema.state_dict() if self.ema else None):
            for i, batch in enumerate(ds.validation_batches(max(tc.batch_size, 256), binarize)):
                if tc.val_batches is not None and i >= tc.val_batches:
                    break
                b = batch.x.shape[0]
                for k, v in self.model.validation_metrics(batch.to(self.device), noise).items():
                    totals[k] = totals.get(k, 0.0) + float(v) * b
                n += b
        self.model.train()
        return {k: v / n for k, v in totals.items()} if n else {}

    def sampling_weights(self) -> dict[str, torch.Tensor]:
        return dict(self.ema.state_dict() if self.ema is not None else self.model_state())

    def _finish(self, stop_reason: str) -> dict[str, Any]:
        """Write model.safetensors: the best validated weights when early stopping tracks a metric, else the last."""
        best_path = self.run.checkpoints / "best.safetensors"
        if self.tc.early_stopping_metric and self.best["step"] is not None:
            source = f"best at step {self.best['step']}"
            if self.world.main:
                from genlab.core.runs import load_tensors

                atomic_save_tensors(self.run.final_weights, load_tensors(best_path), {"family": self.cfg.family})
        else:
            source = f"last (step {self.step})"
            weights = self.sampling_weights()
            if self.world.main:
                atomic_save_tensors(self.run.final_weights, weights, {"family": self.cfg.family})
        summary = {"steps": self.step, "stop_reason": stop_reason, "train_seconds": round(self.elapsed, 3),
                   "weights": source + (" with EMA" if self.ema else ""), "best": self.best,
                   "parameters": sum(p.numel() for p in self.model.parameters()),
                   "trainable_parameters": sum(p.numel() for p in self.model.parameters() if id(p) in self._trainable)}
        if self.last_validation:
            summary["validation"] = self.last_validation  # the latest, from the last weights
        if self.start_metrics is not None:
            summary["validation_at_start"] = self.start_metrics
        if self.world.size > 1:
            summary["processes"] = self.world.size
        if self.privacy is not None:
            summary["privacy"] = self.privacy.summary()  # the epsilon actually spent (a max_seconds stop spends less)
        if self.world.main:
            atomic_write_json(self.run.summary, summary)
        self.world.barrier()  # every process returns once the run's files are written
        return summary
