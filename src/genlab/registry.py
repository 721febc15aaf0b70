"""Name -> class for every pluggable concept: model families, modalities, rewards and image feature extractors.

Built-in entries are "module:attribute" strings resolved on first use, so the registry imports none of what it
names and sits below all of it; user code adds its own with `register` (or the `register_family` decorator).
A new modality is one package plus one line here; a new family is one file plus one line here.
"""

from __future__ import annotations

import importlib
from typing import Any

from genlab.core.errors import GenlabError

_ENTRIES: dict[str, dict[str, Any]] = {
    "family": {
        "vae": "genlab.models.vae:VAE",
        "gan": "genlab.models.gan:GAN",
        "cyclegan": "genlab.models.cyclegan:CycleGAN",
        "diffusion": "genlab.models.diffusion:Diffusion",
        "autoencoder": "genlab.models.autoencoder:Autoencoder",
        "gpt": "genlab.models.gpt:GPTLanguageModel",
        "lstm": "genlab.models.lstm:LSTMFamily",
        "hf": "genlab.models.hf_causal_lm:HFCausalLM",
        "ctgan": "genlab.models.ctgan:CTGAN",
        "tvae": "genlab.models.tvae:TVAE",
    },
    "modality": {
        "image": "genlab.modalities.image:ImageModality",
        "chat": "genlab.modalities.chat:ChatModality",
        "text": "genlab.modalities.text:TextModality",
        "prefs": "genlab.modalities.prefs:PrefsModality",
        "table": "genlab.modalities.table:TableModality",
    },
    "reward": {  # factories of (prompt, completion) -> float (genlab.rewards)
        "regular_verse": "genlab.rewards.builtin:regular_verse",
        "sentiment": "genlab.rewards.builtin:sentiment",
        "length": "genlab.rewards.builtin:length",
        "keyword": "genlab.rewards.builtin:keyword",
        "classifier": "genlab.rewards.builtin:classifier",
    },
    "extractor": {
        "classifier": "genlab.modalities.image.features:ClassifierFeatures",
        "ssl": "genlab.modalities.image.ssl:SSLFeatures",
        "inception": "genlab.modalities.image.inception:InceptionFeatures",
    },
}


def register(kind: str, name: str, target: Any) -> None:
    """Make `target` (a class, or a "module:attribute" string) available as `name` of `kind`."""
    entries = _ENTRIES.setdefault(kind, {})
    if name in entries and entries[name] is not target:
        raise ValueError(f"{kind} {name!r} registered twice")
    entries[name] = target


def unregister(kind: str, name: str) -> None:
    _ENTRIES.get(kind, {}).pop(name, None)


def lookup(kind: str, name: str) -> Any:
    entries = _ENTRIES.get(kind, {})
    if name not in entries:
        what = {"family": "model family", "extractor": "feature extractor"}.get(kind, kind)
        raise GenlabError(f"unknown {what} {name!r}; choose one of: {', '.join(sorted(entries))}")
    target = entries[name]
    if isinstance(target, str):
        module, _, attribute = target.partition(":")
        target = entries[name] = getattr(importlib.import_module(module), attribute)
        if kind == "family":
            target.family_name = name
    return target


def names(kind: str) -> list[str]:
    return sorted(_ENTRIES.get(kind, {}))


def register_family(name: str):
    """Class decorator for a family defined outside genlab: `family: <name>` in configs then builds it."""

    def decorate(cls: type) -> type:
        cls.family_name = name
        register("family", name, cls)
        return cls

    return decorate


def family_class(name: str) -> Any:
    return lookup("family", name)


def family_names() -> list[str]:
    return names("family")


_MODALITIES: dict[str, Any] = {}


def modality(name: str) -> Any:
    """The Modality object registered as `name` (one instance per process)."""
    target = lookup("modality", name)
    if _MODALITIES.get(name, (None,))[0] is not target:
        _MODALITIES[name] = (target, target() if isinstance(target, type) else target)
    return _MODALITIES[name][1]


def modality_of_source(source: str) -> Any:
    """The modality whose loaders read `data.source`."""
    for name in names("modality"):
        found = modality(name)
        if source in found.sources:
            return found
    known = sorted(s for n in names("modality") for s in modality(n).sources)
    raise GenlabError(f"config key 'data.source' is {source!r}; choose one of: {', '.join(known)}")
