"""The configuration reference as a Markdown table, generated from the settings models.

``storywatch config reference`` prints it and the README embeds it, so the documented
keys, types and defaults cannot drift from the code.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _type_name(typing.get_args(tp)[0])
    if origin is typing.Literal:
        return " \\| ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return f"list[{_type_name(args[0])}]" if args else "list"
    if origin is dict:
        k, v = typing.get_args(tp)
        return f"dict[{_type_name(k)}, {_type_name(v)}]"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _default(field: FieldInfo) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    else:
        value = field.default
    if isinstance(value, BaseModel):
        return "(section)"
    if isinstance(value, PurePath):
        value = str(value)
    return f"`{value!r}`" if value not in ("", None) else ("`null`" if value is None else "`''`")


def _submodels(tp: Any) -> list[type[BaseModel]]:
    out: list[type[BaseModel]] = []
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    for arg in typing.get_args(tp):
        out.extend(_submodels(arg))
    return out


def rows(
    model: type[BaseModel], prefix: str = "", expand: Mapping[str, type[BaseModel]] | None = None
) -> list[tuple[str, str, str, str]]:
    """One row per key. ``expand`` documents free-form mappings (``dict[str, Any]``
    sections checked by a stage) with the model that stage validates them against."""
    expand = expand or {}
    out = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        subs = [expand[key]] if key in expand else _submodels(field.annotation)
        is_list = typing.get_origin(field.annotation) is list
        is_dict = typing.get_origin(field.annotation) is dict and key not in expand
        doc = " ".join((field.description or "").split()).replace("|", "\\|")
        out.append((key, _type_name(field.annotation), _default(field), doc))
        for sub in subs:
            sub_prefix = f"{key}[]." if is_list else f"{key}.<name>." if is_dict else f"{key}."
            if len(subs) > 1:
                kind = sub.model_fields.get("kind")
                tag = typing.get_args(kind.annotation)[0] if kind is not None else sub.__name__
                sub_prefix += f"({tag}) "
            out.extend(r for r in rows(sub, sub_prefix, expand) if not r[0].endswith("kind") or len(subs) == 1)
    return out


def markdown(model: type[BaseModel], expand: Mapping[str, type[BaseModel]] | None = None) -> str:
    lines = ["| key | type | default | notes |", "|---|---|---|---|"]
    lines += [f"| `{k}` | {t} | {d} | {n} |" for k, t, d, n in rows(model, expand=expand) if k != "base_dir"]
    return "\n".join(lines)
