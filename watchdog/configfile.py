"""Reading YAML files that people edit by hand, and saying precisely what is wrong with them.

Both the config and the rules file go through here, so every error looks the same:
``FILE:LINE: KEY.PATH: expected …, found …`` on one line.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from watchdog.errors import ConfigError

KeyPath = tuple[str | int, ...]
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class EnvRef:
    """A YAML string naming environment variables that were not set when the file was read.

    It stands in for the value so that only the code that needs the value fails, and the
    failure names the variable and the key.
    """

    template: str
    missing: tuple[str, ...]
    where: str

    def error(self) -> ConfigError:
        names = ", ".join(self.missing)
        return ConfigError(f"{self.where}: environment variable {names} is not set")


@dataclass
class Document:
    """A parsed YAML mapping, the line of each key, and the unset variables it referred to."""

    path: Path
    data: dict[str, Any]
    lines: dict[KeyPath, int] = field(default_factory=dict)
    unset: list[EnvRef] = field(default_factory=list)
    overrides: dict[KeyPath, str] = field(default_factory=dict)

    def where(self, key: KeyPath) -> str:
        """``config/watchdog.yaml:14: targets.backend.provider`` (the nearest known line), or
        the environment variable that overrides the key."""
        for end in range(len(key), 0, -1):
            if key[:end] in self.overrides:
                return f"{self.overrides[key[:end]]} (environment): {dotted(key)}"
        for end in range(len(key), -1, -1):
            if key[:end] in self.lines:
                return f"{self.path}:{self.lines[key[:end]]}: {dotted(key)}"
        return f"{self.path}: {dotted(key)}"


def dotted(key: Iterable[str | int]) -> str:
    """``("targets", "backend", "health", 0)`` → ``targets.backend.health[0]``."""
    text = ""
    for part in key:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "(top level)"


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys: a threshold written twice is a mistake."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first on line {seen[key] + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def _line_map(node: yaml.Node, key: KeyPath, out: dict[KeyPath, int]) -> None:
    out[key] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = (*key, str(key_node.value))
            _line_map(value_node, child, out)
            out[child] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _line_map(item, (*key, index), out)


def load(path: Path, what: str) -> Document:
    """Read a YAML mapping from ``path``; ``what`` says what the file should hold, for errors."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found (expected {what})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read {what}: {exc}") from None
    try:
        node = yaml.compose(text, Loader=_StrictLoader)
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise ConfigError(f"{at}: YAML syntax error: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: YAML syntax error: {exc}") from None
    if data is None:
        raise ConfigError(f"{path}: the file is empty (expected {what})")
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: expected {what} as a mapping at the top level, found {_kind(data)}"
        )
    doc = Document(path=path, data=data)
    if node is not None:
        _line_map(node, (), doc.lines)
    doc.data = _expand(data, (), doc, os.environ)
    return doc


def _expand(value: Any, key: KeyPath, doc: Document, environ: Any) -> Any:
    """Replace ``${VAR}`` with its value; leave an EnvRef where a variable is unset."""
    if isinstance(value, dict):
        return {k: _expand(v, (*key, str(k)), doc, environ) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, (*key, i), doc, environ) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value
    missing = tuple(dict.fromkeys(m for m in _ENV_REF.findall(value) if m not in environ))
    if missing:
        ref = EnvRef(template=value, missing=missing, where=doc.where(key))
        doc.unset.append(ref)
        return ref
    return _ENV_REF.sub(lambda m: environ[m.group(1)], value)


def _kind(value: Any) -> str:
    if isinstance(value, EnvRef):
        return f"unset environment variable {', '.join(value.missing)}"
    names = {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "nothing",
    }
    return names.get(type(value), type(value).__name__)


def _shown(value: Any) -> str:
    if isinstance(value, EnvRef):
        return _kind(value)
    if isinstance(value, dict | list):
        return _kind(value)
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def validation_errors(
    doc: Document, exc: ValidationError, known_keys: Callable[[KeyPath], list[str]]
) -> ConfigError:
    """Turn a pydantic ValidationError into one line per problem, with file, line and key.

    ``known_keys(parent)`` lists the keys allowed under ``parent``, for "did you mean".
    """
    problems = []
    for err in exc.errors(include_url=False):
        key = _document_key(doc.data, err["loc"])
        found = err.get("input")
        kind = err["type"]
        if kind == "extra_forbidden":
            allowed = known_keys(key[:-1])
            hint = _did_you_mean(str(key[-1]), allowed)
            expected = "one of " + ", ".join(allowed) if allowed else "no other keys"
            problems.append(f"{doc.where(key)}: unknown key (expected {expected}){hint}")
            continue
        if kind == "missing":
            problems.append(f"{doc.where(key)}: required key is missing")
            continue
        if isinstance(found, EnvRef):
            problems.append(
                f"{doc.where(key)}: environment variable {', '.join(found.missing)} is not set"
            )
            continue
        if kind == "union_tag_not_found":
            tag = str(err.get("ctx", {}).get("discriminator", "kind")).strip("'")
            problems.append(f"{doc.where(key)}: required key {tag!r} is missing")
            continue
        message = err["msg"].removeprefix("Value error, ").replace("Input should be", "expected")
        if kind == "union_tag_invalid":
            ctx = err.get("ctx", {})
            tag = str(ctx.get("tag", ""))
            options = [t.strip(" '") for t in str(ctx.get("expected_tags", "")).split(",")]
            hint = _did_you_mean(tag, options)
            tag_key = (*key, str(ctx.get("discriminator", "kind")).strip("'"))
            problems.append(
                f"{doc.where(tag_key)}: expected one of {', '.join(options)}, found {tag!r}{hint}"
            )
            continue
        if "found " in message:
            problems.append(f"{doc.where(key)}: {message}")
        else:
            problems.append(f"{doc.where(key)}: {message} (found {_shown(found)})")
    return ConfigError(problems)


_CONDITION_TAGS = ("leaf", "all-of", "any-of")  # watchdog.rules.schema.Condition's tags


def _document_key(data: Any, loc: tuple[str | int, ...]) -> KeyPath:
    """The key path as the person wrote it. pydantic puts the chosen member of a union into
    the location (``provider.render.token``); nobody wrote that, so it is dropped."""
    key: list[str | int] = []
    for part in loc:
        if isinstance(data, dict) and part not in data and data.get("kind") == part:
            continue
        if isinstance(data, dict) and part in _CONDITION_TAGS and part not in data:
            continue
        key.append(part)
        data = (
            data.get(part)
            if isinstance(data, dict)
            else (
                data[part]
                if isinstance(data, list) and isinstance(part, int) and part < len(data)
                else None
            )
        )
    return tuple(key)


def _did_you_mean(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
