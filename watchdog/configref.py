"""The configuration reference, generated from the settings models: one markdown row per key,
so the README's table (checked against this by a test) can never drift from the code.

``python -m watchdog.configref`` prints it.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from datetime import timedelta
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from watchdog.durations import format_duration
from watchdog.secrets import Secret
from watchdog.settings import Settings

_SCALARS = {str: "text", int: "integer", float: "number", bool: "true/false", Path: "path"}


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The config models an annotation holds (a section, a list or map of them, a union)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models(arg)]


def _kind(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _kind(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        kinds = [_kind(a) for a in get_args(annotation) if a is not type(None)]
        return " or ".join(dict.fromkeys(kinds))
    if origin is Literal:
        return " \\| ".join(f"`{a}`" for a in get_args(annotation))
    if origin is list:
        return f"list of {_kind(get_args(annotation)[0])}"
    if origin is dict:
        return f"map of {_kind(get_args(annotation)[1])}"
    if annotation is timedelta:
        return "duration"
    if annotation is Secret:
        return "secret (`${VAR}`)"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return " \\| ".join(f"`{m.value}`" for m in annotation)
    return _SCALARS.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if value is None or value == [] or value == {} or value is PydanticUndefined:
        return ""
    if isinstance(value, BaseModel):
        return ""
    if isinstance(value, timedelta):
        return f"`{format_duration(value)}`"
    if isinstance(value, Secret):
        return "set" if value.is_set else ""
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def _variant(model: type[BaseModel]) -> str:
    """``(kind: render)`` for one model of a union told apart by its ``kind``."""
    kind = model.model_fields.get("kind")
    return f"(kind: {_kind(kind.annotation)}) " if kind is not None else ""


def rows(model: type[BaseModel] = Settings, prefix: str = "", variant: str = "") -> Iterator[str]:
    for name, field in model.model_fields.items():
        key = f"{prefix}{field.alias or name}"
        annotation = field.annotation
        origin = get_origin(annotation)
        description = (field.description or "").replace("|", "\\|").replace("\n", " ")
        what = f"{variant}{description}".strip()
        yield f"| `{key}` | {_kind(annotation)} | {_default(field)} | {what} |"
        inner = ".<name>." if origin is dict else "[]." if origin is list else "."
        models = _models(annotation)
        for sub in models:
            yield from rows(sub, f"{key}{inner}", _variant(sub) if len(models) > 1 else "")


def reference() -> str:
    """Every key, deduplicated (provider kinds share some keys), in the order met."""
    body = "\n".join(dict.fromkeys(rows()))
    return "| key | type | default | what |\n| --- | --- | --- | --- |\n" + body + "\n"


if __name__ == "__main__":
    print(reference(), end="")
