"""The reference of every config key (type, default, meaning), generated from the config dataclasses so the
documentation cannot drift from the code: `genlab config keys [FAMILY]` and docs/config.md."""

from __future__ import annotations

import dataclasses
import inspect
import io
import tokenize
import typing

from genlab.config import DataConfig, LoraConfig, TrainConfig
from genlab.core.options import option_specs
from genlab.registry import family_class, modality, names

SECTIONS = (("data", DataConfig), ("train", TrainConfig), ("lora", LoraConfig))


def field_comments(cls: type) -> dict[str, str]:
    """The comment of each field in the class source: on its line (`name: type = default  # meaning`), or on
    the comment lines just above it."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    comments: dict[str, str] = {}
    field, above = None, []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            text = tok.string.lstrip("# ").strip()
            if field is not None:
                comments.setdefault(field, text)
            elif tok.start[1] == 4:
                above.append(text)
        elif tok.type == tokenize.NAME and tok.start[1] == 4 and field is None:
            field = tok.string
            if above:
                comments[field] = " ".join(above)
        elif tok.type == tokenize.NEWLINE:
            field, above = None, [] if field is not None else above
    return comments


def type_name(hint) -> str:
    text = getattr(hint, "__name__", None) if not typing.get_args(hint) else None
    return text or str(hint).replace("typing.", "")


def rows(prefix: str, cls: type) -> list[tuple[str, str, str, str]]:
    """(key, type, default, meaning) for every field of a config dataclass, nested ones flattened."""
    hints, comments = typing.get_type_hints(cls), field_comments(cls)
    helps = {s.name: s.help for s in option_specs(cls)} if cls is not None else {}
    out = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        optional = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(optional) == 1 and dataclasses.is_dataclass(optional[0]):  # an optional section: off by default
            out.append((prefix + f.name, "section | None", "None", comments.get(f.name, "")))
            out += rows(f"{prefix}{f.name}.", optional[0])
            continue
        if dataclasses.is_dataclass(hint):
            out += rows(f"{prefix}{f.name}.", hint)
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "")
        out.append((prefix + f.name, type_name(hint), repr(default), helps.get(f.name) or comments.get(f.name, "")))
    return out


def family_rows(family: str) -> list[tuple[str, str, str, str]]:
    """The keys only `family` has: its model section and the eval keys of its modality plus its own."""
    cls = family_class(family)
    out = rows("model.", cls.config_class)
    if cls.modality:
        out += rows("eval.", modality(cls.modality).eval_options)
    if cls.eval_options is not None:
        out += rows("eval.", cls.eval_options)
    return out


def markdown(families: list[str] | None = None) -> str:
    lines = ["# Config keys", "", "Generated from the config dataclasses by `genlab config keys --markdown`; a test "
             "fails when this file and the code differ. Set a key in a recipe's YAML or as `key=value` on the "
             "command line; an unknown key is an error that lists the valid ones.", ""]

    def table(title: str, entries) -> None:
        lines.extend([f"## {title}", "", "| key | type | default | meaning |", "|---|---|---|---|"])
        lines.extend(f"| `{k}` | {t.replace('|', '&#124;')} | `{d}` | {m.replace('|', '&#124;')} |"
                     for k, t, d, m in entries)
        lines.append("")

    if families is None:
        for section, cls in SECTIONS:
            table(f"`{section}`: every run", rows(f"{section}.", cls))
    for family in families or names("family"):
        table(f"family `{family}`", family_rows(family))
    return "\n".join(lines)
