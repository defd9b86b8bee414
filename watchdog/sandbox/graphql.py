"""A small, strict recogniser of GraphQL operations for the sandbox stand-ins: not a GraphQL
engine, but enough to read the one operation a client sends and refuse what the real API would.

``parse`` accepts one operation written in this subset of the language,

    document  := [("query" | "mutation") [Name] ["(" ($var ":" Type ["=" value])* ")"]] selset
    selset    := "{" ([alias ":"] Name ["(" (Name ":" value)* ")"] [selset])+ "}"
    value     := $var | "string" | number | true | false | null | ENUM | "[" value* "]"
                 | "{" (Name ":" value)* "}"

with exactly one root field; variables are substituted while parsing, declared defaults
included. Fragments, directives, several operations or root fields, and anything else are a
``GraphQLError``.

A ``Schema`` (an excerpt of an introspected schema, types as ``"Name!"``/``"[Name!]!"`` strings)
then checks the root field as graphql-js's validation would, in its wording: unknown fields and
arguments, a built-in scalar argument of the wrong type, a missing required argument, arguments
on nested fields, a sub-selection on a scalar and an object without one. ``Schema.project``
keeps only what was selected, under its alias, from a resolved value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_SCALARS: dict[str, type] = {"String": str, "Int": int, "Boolean": bool}
_TOKEN = re.compile(
    r'(?P<skip>[\s,]+|#[^\n]*)|(?P<string>"(?:[^"\\\n]|\\.)*")|(?P<number>-?\d+(?:\.\d+)?)'
    r"|(?P<name>[_A-Za-z]\w*)|(?P<punct>\.\.\.|[!$():=@\[\]{}])"
)


class GraphQLError(Exception):
    """A document outside the subset, or one the schema rejects; the message is graphql-js's.
    A stand-in answers it as ``{"data": null, "errors": [{"message": ...}]}``."""


@dataclass(frozen=True, slots=True)
class Field:
    """One selected field: its arguments with variables substituted, and its sub-selections
    (None for a leaf)."""

    name: str
    alias: str | None
    arguments: dict[str, Any]
    selections: tuple[Field, ...] | None


def parse(text: str, variables: Mapping[str, Any]) -> tuple[str, Field]:
    """The operation's kind (``"query"`` or ``"mutation"``) and its one root field.

    :raises GraphQLError: ``text`` is outside the subset in the module docstring.
    """
    return _Parser(text, variables).operation()


@dataclass(frozen=True, slots=True)
class Schema:
    """``types``: type name → field → type, ``"Query"`` and ``"Mutation"`` included;
    ``arguments``: root field → argument → type."""

    types: Mapping[str, Mapping[str, str]]
    arguments: Mapping[str, Mapping[str, str]]

    def check(self, kind: str, field: Field) -> str:
        """The type of the root ``field`` of a ``kind`` operation, once it has passed.

        :raises GraphQLError: the field, an argument or a selection is not in the schema.
        """
        root = "Query" if kind == "query" else "Mutation"
        if field.name not in self.types[root]:
            raise GraphQLError(f'Cannot query field "{field.name}" on type "{root}".')
        self._check_arguments(root, field)
        gql_type = self.types[root][field.name]
        self._check_selection(gql_type, field)
        return gql_type

    def project(self, value: Any, gql_type: str, selections: Sequence[Field] | None) -> Any:
        """Keep only what was selected, under its alias, from a resolved value."""
        if value is None or selections is None:
            return value
        if isinstance(value, list):
            return [self.project(item, gql_type, selections) for item in value]
        named = gql_type.strip("[]!")
        return {
            (f.alias or f.name): named
            if f.name == "__typename"
            else self.project(value[f.name], self.types[named][f.name], f.selections)
            for f in selections
        }

    def _check_selection(self, gql_type: str, field: Field) -> None:
        named = gql_type.strip("[]!")
        if named not in self.types:
            if field.selections is not None:
                raise GraphQLError(
                    f'Field "{field.name}" must not have a selection since type "{gql_type}" '
                    "has no subfields."
                )
            return
        if field.selections is None:
            raise GraphQLError(
                f'Field "{field.name}" of type "{gql_type}" must have a selection of subfields. '
                f'Did you mean "{field.name} {{ ... }}"?'
            )
        for sub in field.selections:
            if sub.name == "__typename" and sub.selections is None:
                continue
            if sub.name not in self.types[named]:
                raise GraphQLError(f'Cannot query field "{sub.name}" on type "{named}".')
            if sub.arguments:
                raise GraphQLError(f'Unknown argument "{next(iter(sub.arguments))}" on "{named}".')
            self._check_selection(self.types[named][sub.name], sub)

    def _check_arguments(self, root: str, field: Field) -> None:
        declared = self.arguments[field.name]
        for key, value in field.arguments.items():
            if key not in declared:
                raise GraphQLError(f'Unknown argument "{key}" on field "{root}.{field.name}".')
            expected = _SCALARS.get(declared[key].rstrip("!"))
            if expected is not None and value is not None and type(value) is not expected:
                raise GraphQLError(f'Argument "{key}" expects type "{declared[key]}".')
        for key, gql_type in declared.items():
            if gql_type.endswith("!") and field.arguments.get(key) is None:
                raise GraphQLError(
                    f'Field "{field.name}" argument "{key}" of type "{gql_type}" is required, '
                    "but it was not provided."
                )


class _Parser:
    """Recursive descent over the subset in the module docstring."""

    def __init__(self, text: str, variables: Mapping[str, Any]) -> None:
        self._tokens: list[tuple[str, str]] = []
        end = 0
        for match in _TOKEN.finditer(text):
            if match.start() != end:
                break
            end = match.end()
            if match.lastgroup != "skip":
                self._tokens.append((match.lastgroup or "", match.group()))
        if end != len(text):
            raise GraphQLError(f'Syntax Error: Unexpected character: "{text[end]}".')
        self._variables = dict(variables)
        self._pos = 0

    def operation(self) -> tuple[str, Field]:
        kind = "query"
        if self._peek() in ("query", "mutation"):
            kind = self._take()
            if self._peek() not in ("{", "("):
                self._name()
            if self._peek() == "(":
                self._variable_definitions()
        fields = self._selection_set()
        if self._peek() is not None or len(fields) != 1:
            raise GraphQLError("This stand-in answers one operation with one root field.")
        return kind, fields[0]

    def _peek(self) -> str | None:
        return self._tokens[self._pos][1] if self._pos < len(self._tokens) else None

    def _take(self, expected: str | None = None) -> str:
        found = self._peek()
        if found is None or (expected is not None and found != expected):
            want = f'"{expected}"' if expected else "more"
            raise GraphQLError(f"Syntax Error: Expected {want}, found {found or '<EOF>'}.")
        self._pos += 1
        return found

    def _name(self) -> str:
        if self._pos < len(self._tokens) and self._tokens[self._pos][0] == "name":
            return self._take()
        raise GraphQLError(f"Syntax Error: Expected Name, found {self._peek() or '<EOF>'}.")

    def _variable_definitions(self) -> None:
        self._take("(")
        while self._peek() != ")":
            self._take("$")
            name = self._name()
            self._take(":")
            self._type()
            if self._peek() == "=":
                self._take("=")
                self._variables.setdefault(name, self._value())
        self._take(")")

    def _type(self) -> None:
        if self._peek() == "[":
            self._take("[")
            self._type()
            self._take("]")
        else:
            self._name()
        if self._peek() == "!":
            self._take("!")

    def _selection_set(self) -> tuple[Field, ...]:
        self._take("{")
        fields: list[Field] = []
        while self._peek() != "}":
            if self._peek() in ("...", "@"):
                raise GraphQLError("Fragments and directives are not supported by this stand-in.")
            alias, name = None, self._name()
            if self._peek() == ":":
                self._take(":")
                alias, name = name, self._name()
            arguments: dict[str, Any] = {}
            if self._peek() == "(":
                self._take("(")
                while self._peek() != ")":
                    key = self._name()
                    self._take(":")
                    arguments[key] = self._value()
                self._take(")")
            selections = self._selection_set() if self._peek() == "{" else None
            fields.append(Field(name, alias, arguments, selections))
        self._take("}")
        if not fields:
            raise GraphQLError("Syntax Error: Expected Name, found }.")
        return tuple(fields)

    def _value(self) -> Any:
        kind = self._tokens[self._pos][0] if self._pos < len(self._tokens) else ""
        lexeme = self._take()
        if lexeme == "$":
            return self._variables.get(self._name())
        if lexeme == "[":
            items: list[Any] = []
            while self._peek() != "]":
                items.append(self._value())
            self._take("]")
            return items
        if lexeme == "{":
            fields: dict[str, Any] = {}
            while self._peek() != "}":
                key = self._name()
                self._take(":")
                fields[key] = self._value()
            self._take("}")
            return fields
        if kind in ("string", "number"):
            return json.loads(lexeme)
        if kind == "name":
            return {"true": True, "false": False, "null": None}.get(lexeme, lexeme)
        raise GraphQLError(f"Syntax Error: Unexpected {lexeme}.")
