"""HTTP request bodies generated from the option dataclasses (genlab.core.options), so a field's type, bounds,
choices and help are declared once for the CLI, the server and the Python API."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from genlab.core.options import OptionSpec, option_specs

STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)  # NaN and Infinity in a body are 422, never a 500


def _annotation(spec: OptionSpec, optional: bool) -> Any:
    base = spec.base
    if spec.choices:
        base = Literal[tuple(spec.choices)]
    return base | None if optional or spec.default is None else base


def request_fields(option_classes, unset_by_default: bool = False) -> dict[str, tuple]:
    """pydantic field definitions for the options of `option_classes`, under their HTTP names. With
    `unset_by_default` every field defaults to None, meaning "the model's default" (family options)."""
    fields: dict[str, tuple] = {}
    for cls in option_classes:
        for spec in option_specs(cls):
            default = None if unset_by_default else spec.default
            limits = {k: getattr(spec, k) for k in ("ge", "le", "gt") if getattr(spec, k) is not None}
            if spec.max_items is not None:
                limits["max_length"] = spec.max_items
            if isinstance(default, (list, dict)):
                field = Field(default_factory=type(default), description=spec.help, **limits)
            else:
                field = Field(default, description=spec.help, **limits)
            fields[spec.http] = (_annotation(spec, unset_by_default), field)
    return fields


def request_model(name: str, common: dict[str, tuple], option_classes, family_classes) -> type[BaseModel]:
    """A strict request body: `common` fields, the modality's options and every served family's options."""
    return create_model(name, __config__=STRICT, **common, **request_fields(option_classes),
                        **request_fields(family_classes, unset_by_default=True))


def split_request(req: BaseModel, modality_options: type | None, family_options: type,
                  family_fields: set[str]) -> tuple[Any, Any, list[str]]:
    """(modality options, family options, the family-option fields set in the request that this family does not
    take) from a request body; `family_fields`: every served family's option fields. Without `modality_options`
    (a body of another format, e.g. OpenAI's) the first is None."""
    body = req.model_dump()
    mine = {s.name: body[s.http] for s in option_specs(modality_options)}
    specs = option_specs(family_options)
    family = {s.name: body[s.http] for s in specs if body.get(s.http) is not None}
    foreign = sorted(k for k in family_fields - {s.http for s in specs} if body.get(k) is not None)
    return modality_options(**mine) if modality_options else None, family_options(**family), foreign
