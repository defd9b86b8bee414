"""Secrets that come from the environment and never show themselves in reprs, logs or errors."""

from __future__ import annotations

from typing import Any

from pydantic import GetCoreSchemaHandler, SecretStr
from pydantic_core import core_schema

from watchdog.configfile import EnvRef


class Secret:
    """A token, password, DSN or webhook URL.

    Built from a YAML value after ``${VAR}`` expansion; when the variable was unset it holds
    the unresolved reference and ``reveal()`` fails naming the variable and the key, so only
    the code that needs the value fails.
    """

    __slots__ = ("_ref", "_value")

    def __init__(self, value: str | EnvRef) -> None:
        self._ref = value if isinstance(value, EnvRef) else None
        self._value = SecretStr("" if isinstance(value, EnvRef) else value)

    @property
    def is_set(self) -> bool:
        return self._ref is None

    def reveal(self) -> str:
        """The secret's value; raises ConfigError when its environment variable is unset."""
        if self._ref is not None:
            raise self._ref.error()
        return self._value.get_secret_value()

    def __repr__(self) -> str:
        return "Secret('**********')" if self.is_set else "Secret(<unset>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and (self._ref, self._value) == (other._ref, other._value)

    def __hash__(self) -> int:
        return hash(self._value)

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        def validate(value: Any) -> Secret:
            if isinstance(value, Secret):
                return value
            if isinstance(value, str | EnvRef):
                if isinstance(value, str) and not value:
                    raise ValueError("expected a non-empty secret, found an empty string")
                return cls(value)
            raise ValueError(f'expected a string (usually "${{ENV_VAR}}"), found {value!r}')

        return core_schema.no_info_plain_validator_function(
            validate,
            serialization=core_schema.plain_serializer_function_ser_schema(lambda s: repr(s)),
        )
