"""Typed configuration plumbing shared by models, data and training.

Configs are frozen dataclasses. ``build(cls, mapping, section)`` checks every key and the type of
every value against the dataclass and names the key and what was expected on error;
``apply_overrides`` turns ``--set section.key=value`` strings (values in TOML syntax) into a nested
dict merged over the run file.
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from typing import Any, Mapping


def _check_value(key: str, value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_value(key, value, arg)
            except (TypeError, ValueError) as e:
                errors.append(str(e))
        raise TypeError(errors[0] if errors else f"{key}: unexpected value {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{key} must be a list, got {type(value).__name__} {value!r}")
        item = args[0] if args else Any
        return tuple(_check_value(f"{key}[{i}]", v, item) for i, v in enumerate(value))
    if origin in (dict, Mapping, typing.Mapping) or hint in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise TypeError(f"{key} must be a table, got {type(value).__name__}")
        return dict(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{key} must be a number, got {type(value).__name__} {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{key} must be an integer, got {type(value).__name__} {value!r}")
        return value
    if hint in (bool, str):
        if not isinstance(value, hint):
            raise TypeError(f"{key} must be a {hint.__name__}, got {type(value).__name__} {value!r}")
        return value
    return value


def build(cls, mapping: Mapping[str, Any], section: str):
    """Instantiate dataclass ``cls`` from ``mapping``, rejecting unknown keys and wrong types."""
    if not isinstance(mapping, Mapping):
        raise TypeError(f"[{section}] must be a table, got {type(mapping).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(mapping) - set(fields))
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(f'{section}.{k}' for k in unknown)}; "
                         f"allowed in [{section}]: {', '.join(sorted(fields))}")
    hints = typing.get_type_hints(cls)
    values = {k: _check_value(f"{section}.{k}", v, hints[k]) for k, v in mapping.items()}
    return cls(**values)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=3e-4"`` -> (["train", "lr"], 3e-4); the value is TOML (strings may be bare)."""
    if "=" not in text:
        raise ValueError(f"--set expects section.key=value, got {text!r}")
    key, raw = text.split("=", 1)
    path = key.strip().split(".")
    if len(path) < 2 or not all(path):
        raise ValueError(f"--set key must look like section.key, got {key!r}")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # a bare string such as state_init=previous
    return path, value


def apply_overrides(base: Mapping[str, Any], overrides: list[str]) -> dict[str, Any]:
    """A deep copy of ``base`` with every ``section.key=value`` override applied."""
    out = _deep_copy(base)
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"--set {text!r}: {part!r} is not a table")
        node[path[-1]] = value
    return out


def _deep_copy(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in d.items()}


def load_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: not valid TOML: {e}") from None


def field_docs(cls) -> dict[str, str]:
    """The docstring line written under each field of a config dataclass (read from its source)."""
    import ast
    import inspect
    import textwrap

    docs = {}
    for klass in reversed([k for k in cls.__mro__ if dataclasses.is_dataclass(k)]):  # inherited fields too
        body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body
        for node, nxt in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)):
                docs[node.target.id] = " ".join(str(nxt.value.value).split())
    return docs


def describe(cls, section: str, skip: tuple[str, ...] = ()) -> str:
    """Help text: one line per field, ``section.name = default  doc``."""
    lines = []
    for f in (f for f in dataclasses.fields(cls) if f.name not in skip):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        lines.append(f"  {section}.{f.name} = {default!r}\n      {field_docs(cls).get(f.name, '')}")
    return "\n".join(lines)
