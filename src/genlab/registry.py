"""Name -> class lookup for model families, so configs and the trainer never import a family by hand."""

from __future__ import annotations

from typing import Any

from genlab.errors import GenlabError

_FAMILIES: dict[str, type] = {}


def register_family(name: str):
    """Class decorator: make a model family available under `family: <name>` in configs."""

    def decorate(cls: type) -> type:
        if name in _FAMILIES:
            raise ValueError(f"family {name!r} registered twice")
        cls.family_name = name
        _FAMILIES[name] = cls
        return cls

    return decorate


def family_class(name: str) -> Any:
    import genlab.models  # noqa: F401  (registers the built-in families)

    if name not in _FAMILIES:
        raise GenlabError(f"unknown model family {name!r}; choose one of: {', '.join(sorted(_FAMILIES))}")
    return _FAMILIES[name]


def family_names() -> list[str]:
    import genlab.models  # noqa: F401

    return sorted(_FAMILIES)
