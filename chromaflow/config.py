"""Typed option trees: dataclasses to and from plain dicts and TOML, with their docs as comments.

Every component owns a frozen options dataclass whose docstring documents its
fields in an ``Attributes:`` block.  This module turns such dataclasses (nested
ones included) into plain dicts and TOML text, and back with type checks, so
one function serves ``--config run.toml``, ``chromaflow config`` and the
configuration stored beside each output:

* :func:`to_dict` / :func:`from_dict`: dataclass <-> dict of TOML types
  (``None`` is left out; tuples become lists; paths become strings);
* :func:`field_docs`: ``{field: one-line doc}`` from the docstring;
* :func:`toml_table` / :func:`toml_value`: TOML text of one table with
  comments.

Unknown keys and values of the wrong type raise :class:`ConfigError` with the
dotted key in its one-line message.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from functools import lru_cache
from pathlib import Path
from typing import Any

from chromaflow.errors import InputError


class ConfigError(InputError):
    """A configuration file or value that cannot be used (one line, with the key)."""


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@lru_cache(maxsize=None)
def field_docs(cls: type) -> dict[str, str]:
    """``{field: doc}`` read from the ``Attributes:`` block of ``cls``'s docstring (first sentence kept whole)."""
    doc = cls.__doc__ or ""
    lines = doc.splitlines()
    out: dict[str, str] = {}
    inside = False
    current: list[str] | None = None
    names: list[str] = []
    indent = None
    for line in lines:
        stripped = line.strip()
        if stripped == "Attributes:":
            inside, indent = True, None
            continue
        if not inside:
            continue
        if not stripped:
            continue
        lead = len(line) - len(line.lstrip())
        if indent is None:
            indent = lead
        if lead < indent:
            break
        m = re.match(r"^([A-Za-z_][\w, ]*):\s*(.*)$", stripped) if lead == indent else None
        if m:
            if current is not None:
                for n in names:
                    out[n] = " ".join(current)
            names = [n.strip() for n in m.group(1).split(",")]
            current = [m.group(2)]
        elif current is not None:
            current.append(stripped)
    if current is not None:
        for n in names:
            out[n] = " ".join(current)
    return {k: re.sub(r"``|:(?:class|func|meth|attr|mod):`~?([^`]*)`", lambda m: m.group(1) or "", v)
            for k, v in out.items()}


def to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass instance as a dict of TOML types (nested dataclasses as dicts, ``None`` left out)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = _plain(getattr(obj, f.name))
        if value is not None:
            out[f.name] = value
    return out


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_dict(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def from_dict(cls: type, data: dict[str, Any], where: str = "", base: Any = None) -> Any:
    """Build ``cls`` from ``data``, checking keys and types.

    Args:
        cls: a dataclass type.
        data: its fields (nested dataclasses as dicts); missing ones keep the
            defaults, or the values of ``base``.
        where: dotted prefix of the table for error messages.
        base: an instance of ``cls`` whose values stand where ``data`` is silent.

    Raises:
        ConfigError: an unknown key, a value of the wrong type, or a value the
            dataclass itself refuses.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a table, got {_tname(data)}")
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key {_key(where, unknown[0])} (known: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, value in data.items():
        key = _key(where, name)
        current = getattr(base, name) if base is not None else None
        kwargs[name] = _convert(hints[name], value, key, current)
    try:
        if base is not None:
            return dataclasses.replace(base, **kwargs)
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError, InputError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{where or 'config'}: {msg}") from None


def _key(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _tname(value: Any) -> str:
    return {dict: "a table", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number"}.get(type(value), type(value).__name__)


def _convert(tp: Any, value: Any, key: str, current: Any = None) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if value is None and type(None) in args:
            return None
        errors = []
        for a in options:
            try:
                return _convert(a, value, key, current)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key, base=current)
    if tp is Any:
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {_tname(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
        return tuple(_convert(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if tp is Path:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{key}: expected a path (string), got {value!r}")
        return Path(value)
    raise ConfigError(f"{key}: cannot read a value of type {tp}")  # pragma: no cover - a typing bug of ours


# --------------------------------------------------------------------- TOML text

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def toml_key(key: str) -> str:
    return key if _BARE.match(key) else json.dumps(key)


def toml_value(value: Any) -> str:
    """One value as TOML (strings, booleans, numbers, lists, inline tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, (str, Path)):
        return json.dumps(str(value), ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def toml_table(name: str | None, cls: type, values: dict[str, Any], comment: bool = True,
               prefix: str = "", lead: str | None = None) -> list[str]:
    """TOML lines of one table: ``[name]``, then each field with its doc as a comment.

    Fields of ``cls`` missing from ``values`` (``None`` values) are written
    as commented-out keys, so a reader sees every option.  Nested dataclass
    fields become sub-tables ``[name.field]``.  ``prefix`` is put before every
    line (``"# "`` comments a whole table out).
    """
    docs = field_docs(cls) if comment else {}
    hints = _hints(cls)
    lines: list[str] = []
    if lead:
        lines.extend(f"{prefix}# {line}" for line in _wrap(lead))
    if name:
        lines.append(f"{prefix}[{name}]")
    nested = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = hints[f.name]
        sub = _dataclass_of(tp)
        if sub is not None and isinstance(values.get(f.name), dict):
            nested.append((f.name, sub, values[f.name]))
            continue
        if comment and f.name in docs:
            lines.extend(f"{prefix}# {line}" for line in _wrap(docs[f.name]))
        if f.name in values:
            lines.append(f"{prefix}{toml_key(f.name)} = {toml_value(values[f.name])}")
        else:
            lines.append(f"{prefix}# {toml_key(f.name)} =   (unset)")
    for fname, sub, vals in nested:
        lines.append("")
        child = f"{name}.{fname}" if name else fname
        lines.extend(toml_table(child, sub, vals, comment, prefix))
    return lines


def _dataclass_of(tp: Any) -> type | None:
    if dataclasses.is_dataclass(tp):
        return tp
    for a in typing.get_args(tp):
        if dataclasses.is_dataclass(a):
            return a
    return None


def _wrap(text: str, width: int = 96) -> list[str]:
    words, lines, line = text.split(), [], ""
    for w in words:
        if line and len(line) + 1 + len(w) > width:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}" if line else w
    if line:
        lines.append(line)
    return lines


def load_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file.

    Raises:
        ConfigError: a missing or unreadable file, or bad TOML (with the line).
    """
    import tomllib

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {p}: {exc.strerror or exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
