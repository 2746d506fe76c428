"""Typed configs: a dataclass per model, a YAML overlay, ``--set key=value`` overrides, and the resolved config
written beside the artefacts.

Values given as strings (from ``--set``) are coerced to the field's declared type; YAML values are checked the
same way. An unknown key is a :class:`~common.errors.UserError` that lists the known keys.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from common.atomic import write_text
from common.errors import UserError


def parse_overrides(items: Iterable[str] | None) -> dict[str, Any]:
    """``["lr=1e-3", "epochs=3"]`` -> ``{"lr": "1e-3", "epochs": "3"}`` (values stay strings until coerced)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--set expects key=value, got {item!r}")
        out[key] = value
    return out


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(
            f"{path}: expected a mapping of key: value at the top level, got {type(data).__name__}"
        )
    return data


def coerce(value: Any, annotation: Any, key: str) -> Any:
    """Coerce ``value`` (often a string from the command line) to ``annotation``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, key)
            except UserError as exc:
                errors.append(str(exc))
        raise UserError(errors[0] if errors else f"config key {key!r}: cannot use {value!r}")
    if origin is typing.Literal:
        choices = typing.get_args(annotation)
        for choice in choices:
            if value == choice or (isinstance(value, str) and value == str(choice)):
                return choice
        raise UserError(f"config key {key!r}: {value!r} is not one of {list(choices)}")
    if origin in (list, tuple):
        (item_type, *_) = typing.get_args(annotation) or (Any,)
        if isinstance(value, str):
            parsed = yaml.safe_load(value) if value.strip().startswith("[") else value.split(",")
            value = [] if value.strip() == "" else parsed
        if not isinstance(value, list | tuple):
            raise UserError(f"config key {key!r}: expected a list, got {value!r}")
        items = [coerce(v, item_type, key) for v in value]
        return tuple(items) if origin is tuple else items
    if annotation is Any:
        return yaml.safe_load(value) if isinstance(value, str) else value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise UserError(f"config key {key!r}: expected true/false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool):
            raise UserError(f"config key {key!r}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            as_float = float(value)
        except (TypeError, ValueError):
            raise UserError(f"config key {key!r}: expected an integer, got {value!r}") from None
        if not as_float.is_integer():
            raise UserError(f"config key {key!r}: expected an integer, got {value!r}")
        return int(as_float)
    if annotation is float:
        if isinstance(value, bool):
            raise UserError(f"config key {key!r}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise UserError(f"config key {key!r}: expected a number, got {value!r}") from None
    if annotation is str:
        if isinstance(value, str | int | float):
            return str(value)
        raise UserError(f"config key {key!r}: expected a string, got {value!r}")
    return value


def build_config(cls: type, values: Mapping[str, Any] | None = None, source: str = "config"):
    """Instantiate dataclass ``cls`` from ``values``, coercing types and rejecting unknown keys."""
    values = dict(values or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise UserError(f"unknown config key(s) {unknown} for {source}; known keys: {sorted(fields)}")
    kwargs = {k: coerce(v, hints[k], k) for k, v in values.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise UserError(f"invalid config for {source}: {exc}") from None


def resolve(
    cls: type, yaml_path: str | os.PathLike | None = None, overrides: Iterable[str] | Mapping | None = None
):
    """Defaults <- YAML file <- ``--set`` overrides, as a typed dataclass instance."""
    values: dict[str, Any] = {}
    if yaml_path:
        values.update(load_yaml(yaml_path))
    if isinstance(overrides, Mapping):
        values.update(overrides)
    else:
        values.update(parse_overrides(overrides))
    return build_config(cls, values, source=cls.__name__)


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)


def save_config(config: Any, path: str | os.PathLike) -> Path:
    """Write the resolved config as YAML (atomically)."""
    data = to_dict(config)
    return write_text(path, yaml.safe_dump(_plain(data), sort_keys=True))


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj
