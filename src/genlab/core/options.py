"""Options declared once: a dataclass field with its help, bounds and choices, from which the CLI builds its
flags, the server its request fields and the Python API its checks, so no surface types a list twice."""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from genlab.core.errors import GenlabError


def option(default: Any = None, help: str = "", *, ge: float | None = None, le: float | None = None,
           gt: float | None = None, choices: tuple[str, ...] | None = None, flags: tuple[str, ...] = (),
           http: str | None = None, max_items: int | None = None) -> Any:
    """A dataclass field that is also a user-facing option. `flags`: the CLI spellings (default --field-name);
    `http`: the request field name (default the field name)."""
    meta = {"help": help, "ge": ge, "le": le, "gt": gt, "choices": choices, "flags": flags, "http": http,
            "max_items": max_items}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class OptionSpec:
    name: str
    type: Any  # the field's type hint (e.g. int | None)
    default: Any
    help: str
    ge: float | None
    le: float | None
    gt: float | None
    choices: tuple[str, ...] | None
    flags: tuple[str, ...]
    http: str
    max_items: int | None

    @property
    def base(self) -> Any:
        """The type without None: int, float, str, bool, list[str], dict[str, str]."""
        args = [a for a in typing.get_args(self.type) if a is not type(None)]
        return args[0] if type(None) in typing.get_args(self.type) and len(args) == 1 else self.type

    @property
    def flag(self) -> str:
        return self.flags[0] if self.flags else "--" + self.name.replace("_", "-")


def option_specs(cls: type | None) -> list[OptionSpec]:
    """The options a dataclass declares, in order."""
    if cls is None:
        return []
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        m = f.metadata
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        out.append(OptionSpec(f.name, hints[f.name], default, m.get("help", ""), m.get("ge"), m.get("le"), m.get("gt"),
                              m.get("choices"), tuple(m.get("flags") or ()), m.get("http") or f.name,
                              m.get("max_items")))
    return out


def check_options(cls: type, values: dict[str, Any], spell: Callable[[str], str] = str,
                  owner: str = "this model") -> Any:
    """An instance of `cls` from `values` (unset keys keep their defaults), each checked against its declared
    type, bounds and choices; `spell(name)` writes an option the way the caller's surface does (--flag, field)."""
    specs = {s.name: s for s in option_specs(cls)}
    unknown = [k for k in values if k not in specs]
    if unknown:
        takes = ", ".join(spell(n) for n in specs) or "no options"
        raise GenlabError(f"{spell(unknown[0])} does not apply to {owner} (it takes: {takes})")
    for name, value in values.items():
        _check(specs[name], value, spell(name))
    return cls(**values)


def split_options(values: dict[str, Any], modality_options: type, family_options: type,
                  spell: Callable[[str], str] = str, owner: str = "this model") -> tuple[Any, Any]:
    """(modality options, family options) from one mapping of set options, each checked; an option neither
    declares is refused by name with the list of those that apply."""
    own = {s.name for s in option_specs(modality_options)}
    theirs = {s.name for s in option_specs(family_options)}
    if unknown := [k for k in values if k not in own | theirs]:
        takes = ", ".join(spell(n) for n in [*own, *theirs]) or "no options"
        raise GenlabError(f"{spell(unknown[0])} does not apply to {owner} (it takes: {takes})")
    return (check_options(modality_options, {k: v for k, v in values.items() if k in own}, spell, owner),
            check_options(family_options, {k: v for k, v in values.items() if k in theirs}, spell, owner))


def _check(spec: OptionSpec, value: Any, name: str) -> None:
    if value is None:
        if type(None) not in typing.get_args(spec.type) and spec.default is not None:
            raise GenlabError(f"{name} must be set")
        return
    base = spec.base
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    expected = typing.get_origin(base) or base
    if expected is float and not isinstance(value, float) or expected is int and (
            not isinstance(value, int) or isinstance(value, bool)) or expected in (str, bool, list, dict) and \
            not isinstance(value, expected):
        raise GenlabError(f"{name} must be {getattr(expected, '__name__', expected)}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise GenlabError(f"{name} must be a finite number, got {value!r}")
    if spec.ge is not None and value < spec.ge or spec.gt is not None and value <= spec.gt or \
            spec.le is not None and value > spec.le:
        if spec.ge is not None and spec.le is not None:
            raise GenlabError(f"{name} must be between {spec.ge:,} and {spec.le:,}, got {value!r}")
        low = f">= {spec.ge:,}" if spec.ge is not None else f"> {spec.gt:,}" if spec.gt is not None else ""
        high = f"<= {spec.le:,}" if spec.le is not None else ""
        raise GenlabError(f"{name} must be {' and '.join(x for x in (low, high) if x)}, got {value!r}")
    if spec.choices is not None and value not in spec.choices:
        raise GenlabError(f"{name} is {value!r}; choose one of: {', '.join(spec.choices)}")
    if spec.max_items is not None and len(value) > spec.max_items:
        raise GenlabError(f"{name} takes at most {spec.max_items} items")


@dataclass
class NoOptions:
    """What a family without sampling options declares."""
