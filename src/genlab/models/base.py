"""The model-family protocol: what the family-agnostic trainer, sampler and evaluator rely on."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from genlab.core.batch import Batch
from genlab.core.errors import GenlabError
from genlab.core.options import NoOptions, option_specs
from genlab.core.spec import DataSpec
from genlab.nn.noise import randint


@dataclass
class Phase:
    """One optimisation step of a training iteration: its own optimizer over `modules`, run `repeats` times.

    A VAE has one phase; a GAN has a discriminator phase (repeated n_critic times) then a generator phase.
    Each repeat draws a fresh batch. `private`: the phase reads training rows, so under train.privacy it trains
    by DP-SGD and spends budget; a phase that is not private gets no training row at all under train.privacy.
    """

    name: str
    modules: list[nn.Module]
    repeats: int = 1
    private: bool = False

    def parameters(self) -> list[nn.Parameter]:
        """The phase's trainable parameters (frozen ones, e.g. a base under LoRA adapters, are left out)."""
        return [p for m in self.modules for p in m.parameters() if p.requires_grad]


class GenerativeModel(nn.Module):
    """Base class of every family. Subclasses set `config_class` and implement the methods below."""

    family_name: str = ""
    modality: str = ""  # the registry name of the kind of data it models (what its eval keys follow)
    config_class: type
    supports_likelihood: bool = False
    default_ema_decay: float = 0.0  # used when train.ema_decay is not set
    eval_options: type | None = None  # dataclass of the family's own `eval.*` keys (e.g. IWAE samples)
    sample_options: type = NoOptions  # dataclass of the keyword options `sample` takes (core.options fields)
    accepts_conditions: bool = False  # tables: `sample` takes a condition vector (TableDataset.condition_vector)
    lora_targets: tuple[str, ...] = ()  # modules LoRA adapts when lora.targets is not set
    # train.optimizer=muon: module-name suffixes whose matrices AdamW trains instead of Muon (output heads);
    # embeddings and every tensor of fewer than 2 dimensions go to AdamW anyway (genlab.train.muon.muon_split)
    muon_exclude: tuple[str, ...] = ()

    def __init__(self, config, spec: DataSpec):
        super().__init__()
        self.config, self.spec = config, spec
        self._adapter_keys: set[str] | None = None  # set by add_lora: the only tensors a run then stores

    @classmethod
    def pretrained_dir(cls, config) -> str | None:
        """Where a family built on pretrained weights finds them and their tokenizer; None: trained from scratch."""
        return None

    def shard_units(self) -> list[nn.Module]:
        """Modules FSDP shards one by one (train.fsdp), innermost first; the last is the one whose forward
        every loss and metric calls."""
        raise GenlabError(f"the {self.family_name} family does not support train.fsdp; its default data "
                          "parallelism (DDP) needs no option")

    # -- fine-tuning -----------------------------------------------------------------------------------------
    def default_lora_targets(self) -> list[str]:
        if not self.lora_targets:
            raise GenlabError(f"the {self.family_name} family has no default LoRA targets; set lora.targets")
        return list(self.lora_targets)

    def add_lora(self, cfg) -> None:
        """Freeze every weight and add LoRA adapters (a LoraConfig) to the target layers."""
        from genlab.nn.lora import inject_lora

        self._adapter_keys = set(inject_lora(self, cfg.rank, cfg.alpha, cfg.dropout,
                                             cfg.targets or self.default_lora_targets()))

    def merge_lora(self) -> None:
        """Fold the adapters into the weights: a plain model again, whose outputs match the adapted one."""
        from genlab.nn.lora import merge_lora

        merge_lora(self)
        self._adapter_keys = None

    def make_private(self) -> None:
        """Called once before private training (train.privacy): a family whose phases declare `private` prepares
        its other phases to read no training row; the rest refuse."""
        if not any(p.private for p in self.phases()):
            raise GenlabError(f"the {self.family_name} family has no private training (train.privacy); tables: use "
                              "tvae or ctgan")

    def calibrate(self, dataset) -> None:
        """Called by the trainer with the run's dataset before the optimizers and EMA take the weights: a family
        that fits data statistics into its state (latent diffusion's latent scale) does it here, deterministically
        (a resume recomputes the same value, then loads the checkpoint's); most families do nothing."""

    def set_objective(self, train) -> None:
        """Choose what phase_loss minimises (train.objective of the TrainConfig `train`); called once the starting
        weights are in place, so an objective that compares against them (dpo, grpo) can keep them as its
        reference."""
        if train.objective != "default":
            raise GenlabError(f"train.objective={train.objective} tunes language models; the {self.family_name} family "
                              "trains its own loss (leave train.objective at default)")

    @property
    def adapted(self) -> bool:
        return self._adapter_keys is not None

    def saved_state(self) -> dict[str, torch.Tensor]:
        """The tensors a run stores: all of them, or under LoRA only the adapters (the frozen base is where the
        run started from, so a checkpoint stays small)."""
        state = self.state_dict()
        if self._adapter_keys is None:
            return state
        return {k: v for k, v in state.items() if k in self._adapter_keys}

    def load_saved_state(self, state: dict[str, torch.Tensor]) -> None:
        """Inverse of saved_state; raises RuntimeError (as load_state_dict does) when the tensors do not fit."""
        if self._adapter_keys is None:
            self.load_state_dict(state)
            return
        if set(state) != self._adapter_keys:
            odd = sorted(set(state) ^ self._adapter_keys)
            raise RuntimeError(f"expected the LoRA adapter tensors; mismatched keys include {odd[:3]}")
        self.load_state_dict(state, strict=False)

    @property
    def device(self) -> torch.device:
        """Where the weights are (the CPU unless the trainer moved them to a GPU)."""
        first = next(self.parameters(), None)
        return first.device if first is not None else torch.device("cpu")

    @property
    def sampling_options(self) -> tuple[str, ...]:
        """The names of the options `sample` takes."""
        return tuple(s.name for s in option_specs(self.sample_options))

    @property
    def conditional(self) -> bool:
        return bool(getattr(self.config, "conditional", False))

    def phases(self) -> list[Phase]:
        raise NotImplementedError

    def phase_loss(self, phase: str, batch: Batch,
                   noise: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The scalar to minimise in `phase`, and named terms to log (each checked for NaN/inf)."""
        raise NotImplementedError

    def forward(self, phase: str, batch: Batch, noise: torch.Generator):
        """phase_loss as the module's forward, so DistributedDataParallel can wrap the whole model."""
        return self.phase_loss(phase, batch, noise)

    @torch.no_grad()
    def validation_metrics(self, batch: Batch, noise: torch.Generator) -> dict[str, torch.Tensor]:
        """Per-image means on a validation batch; the trainer averages them over the split."""
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, n: int, labels: torch.Tensor | None = None, noise: torch.Generator | None = None) -> torch.Tensor:
        """n images as float32 in [0, 1], N x C x H x W."""
        raise NotImplementedError

    def test_likelihood(self, dataset, ec, binarize: bool, quiet: bool = True) -> dict:
        """Test-set likelihood figures (families with `supports_likelihood`), with a `headline` dict for the CLI."""
        raise NotImplementedError(f"{self.family_name} has no likelihood")

    def family_metrics(self, dataset, ec, quiet: bool = True) -> dict:
        """Test-set figures of the family's own beyond its likelihood and its modality's metrics (the autoencoder's
        reconstruction PSNR), which the modality's evaluation stores under "family_metrics", with a `headline` dict for
        the CLI; {} (nothing) for most families."""
        return {}

    # -- image editing (genlab edit): diffusion runs inpaint, img2img and invert / decode; cyclegan transfers --------
    def cannot_edit(self, what: str) -> GenlabError:
        return GenlabError(f"the {self.family_name} family cannot {what}; image editing needs a diffusion run "
                           "(inpaint, img2img, transfer between two diffusion runs) or a cyclegan run (transfer)")

    def inpaint(self, images: torch.Tensor, mask: torch.Tensor, labels=None, **options) -> torch.Tensor:
        """Fill the region where `mask` is 0 (1 = known, kept) of [0, 1] N x C x H x W `images`."""
        raise self.cannot_edit("inpaint")

    def img2img(self, images: torch.Tensor, strength: float, labels=None, **options) -> torch.Tensor:
        """SDEdit: re-imagine `images` (strength 0 keeps them, 1 ignores them)."""
        raise self.cannot_edit("edit images (img2img)")

    def invert(self, images: torch.Tensor, labels=None, steps: int | None = None) -> torch.Tensor:
        """The noise x_T that decodes back to `images` (DDIM inversion)."""
        raise self.cannot_edit("invert images to noise (transfer between two diffusion runs)")

    def decode_from_noise(self, x_t: torch.Tensor, labels=None, steps: int | None = None) -> torch.Tensor:
        """Images decoded deterministically from noise (the inverse of `invert`)."""
        raise self.cannot_edit("decode noise (transfer between two diffusion runs)")

    def transfer(self, images: torch.Tensor, direction: str = "a2b") -> torch.Tensor:
        """Translate `images` to the other domain (an image-to-image family)."""
        raise self.cannot_edit("transfer images on its own (genlab edit transfer RUN_A --to RUN_B takes two "
                               "diffusion runs)")

    def check_images(self, images: torch.Tensor, what: str = "images") -> torch.Tensor:
        """`images` as float N x C x H x W in [0, 1] on the model's device; one clear error when they are not
        of the run's shape."""
        spec = self.spec
        want = (spec.channels, spec.height, spec.width)
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or tuple(images.shape[1:]) != want:
            got = "x".join(map(str, images.shape)) if isinstance(images, torch.Tensor) else type(images).__name__
            raise GenlabError(f"{what} must be N x {'x'.join(map(str, want))} (N x C x H x W, the run's "
                              f"{'grey' if spec.channels == 1 else 'colour'} {spec.height}x{spec.width} images), "
                              f"got {got}")
        if images.shape[0] == 0:
            raise GenlabError(f"{what}: no images")
        images = images.float()
        if not torch.isfinite(images).all() or images.min() < 0 or images.max() > 1:
            raise GenlabError(f"{what} must hold values in [0, 1]")
        return images.to(self.device)

    def sample_labels(self, n: int, labels: torch.Tensor | None,
                      noise: torch.Generator | None) -> torch.Tensor | None:
        """Labels to condition on: the ones given, uniform random ones for a conditional model, else None."""
        if labels is not None:
            if not self.conditional:
                raise GenlabError(f"this {self.family_name} model is not class-conditional: it takes no label")
            labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1).expand(n) if labels.numel() == 1 else labels
            if labels.min() < 0 or labels.max() >= self.spec.num_classes:
                raise GenlabError(f"label must be in 0..{self.spec.num_classes - 1}")
            return labels.long().to(self.device)
        if self.conditional:
            return randint(self.spec.num_classes, (n,), noise, device=self.device)
        return None


def class_embedding(config, spec: DataSpec, dim: int) -> nn.Embedding | None:
    """An embedding table for conditional families; an error when the data has no labels."""
    if not getattr(config, "conditional", False):
        return None
    if spec.num_classes < 2:
        raise GenlabError("model.conditional=true needs a labelled dataset with at least 2 classes")
    return nn.Embedding(spec.num_classes, dim)
