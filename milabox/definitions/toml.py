"""Reading TOML definition files (vendors, benchmarks) with one-line errors naming file and field."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from milabox.errors import ConfigError

_MISSING = object()
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
               list: "a list", dict: "a table"}


def read_toml(path: Path) -> dict[str, Any]:
    """Parse one TOML file.

    Args:
        path: the file.

    Returns:
        Its top-level table.

    Raises:
        ConfigError: the file is missing or is not valid TOML.
    """
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None


class Fields:
    """Typed access to one table of a definition file; every error names the file and the field."""

    def __init__(self, path: Path, table: dict[str, Any], prefix: str = "", prefixed: set[str] | None = None):
        # prefixed: the keys the prefix applies to (a variant's own keys); None means all of them
        self.path, self.table, self.prefix, self.prefixed = path, table, prefix, prefixed
        self.used: set[str] = set()

    def fail(self, key: str, what: str) -> ConfigError:
        local = self.prefixed is None or key.split(".")[0] in self.prefixed
        return ConfigError(f"{self.path}: field '{self.prefix if local else ''}{key}' {what}")

    def get(self, key: str, kind: type, default: Any = _MISSING, choices: tuple | None = None) -> Any:
        self.used.add(key)
        if key not in self.table:
            if default is _MISSING:
                raise self.fail(key, f"is missing (expected {_TYPE_NAMES[kind]})")
            return default
        value = self.table[key]
        ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise self.fail(key, f"is {value!r}; expected {_TYPE_NAMES[kind]}")
        if choices is not None and value not in choices:
            raise self.fail(key, f"is {value!r}; valid: {', '.join(map(str, choices))}")
        return value

    def strings(self, key: str, default: list[str] | None = None) -> list[str]:
        value = self.get(key, list, [] if default is None else default)
        if not all(isinstance(v, str) for v in value):
            raise self.fail(key, f"is {value!r}; expected a list of strings")
        return list(value)

    def sub(self, key: str, default: dict | None = None) -> Fields:
        return Fields(self.path, self.get(key, dict, {} if default is None else default),
                      f"{self.prefix}{key}.")

    def reject_unknown(self, extra_allowed: tuple[str, ...] = ()) -> None:
        unknown = sorted(set(self.table) - self.used - set(extra_allowed))
        if unknown:
            valid = ", ".join(sorted(self.used | set(extra_allowed)))
            raise self.fail(unknown[0], f"is not a known field; valid: {valid}")
