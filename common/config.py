"""One config tree, validated once when it is built.

A run's configuration is a tree of dataclasses: the contest's data config (``data``) and the model's config
(``model``), which holds the shared :class:`common.trainer.TrainerConfig` as its ``trainer`` field (pretraining holds
the same one). Each key is declared in exactly one dataclass; a test checks that no key is declared twice.

On the command line keys stay flat (``--set epochs=3 split=official dropout=0.2``): :func:`build_tree` finds the one
place each key lives (``epochs`` -> ``model.trainer.epochs``, ``split`` -> ``data.split``). A dotted key
(``trainer.lr``, ``data.split``) names the place explicitly. A YAML file (``--config``) may be flat or nested.

Values are validated by pydantic against each field's annotation (``Annotated[int, Field(ge=1)]``, ``Literal``,
finite floats) when the tree is built, so a bad value is a one-line :class:`~common.errors.UserError` before any
file is written. The dataclasses stay plain ``dataclasses.dataclass`` (pydantic validates them without owning
them), which keeps scikit-learn's estimator contract: a model class is a dataclass of its config.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar

import yaml
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError

from common.atomic import write_text
from common.errors import UserError

# ------------------------------------------------------------------------------------------------ field types
PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
#: a share in [0, 1)
Fraction = Annotated[float, Field(ge=0, lt=1)]
Probability = Annotated[float, Field(ge=0, le=1)]


class ConfigBase:
    """Base of every config dataclass: pydantic validates them with finite floats and no unknown keys."""

    __pydantic_config__: ClassVar = ConfigDict(allow_inf_nan=False, extra="forbid", strict=False)


def trainer_defaults(**overrides):
    """``trainer: TrainerConfig = trainer_defaults(epochs=5, lr=2e-3)``: a model's own trainer defaults (the keys
    stay declared once, in TrainerConfig)."""
    from common.trainer import TrainerConfig

    return dataclasses.field(default_factory=functools.partial(TrainerConfig, **overrides))


# ------------------------------------------------------------------------------------------------ reading
def parse_overrides(items: Iterable[str] | None) -> dict[str, Any]:
    """``["lr=1e-3", "epochs=3"]`` -> ``{"lr": "1e-3", "epochs": "3"}`` (values stay strings until validated)."""
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
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(
            f"{path}: expected a mapping of key: value at the top level, got {type(data).__name__}"
        )
    return data


# ------------------------------------------------------------------------------------------------ the tree
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def _strip(annotation: Any) -> Any:
    """The type under ``Annotated[...]``."""
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _dataclass_of(annotation: Any) -> type | None:
    annotation = _strip(annotation)
    return annotation if isinstance(annotation, type) and dataclasses.is_dataclass(annotation) else None


def leaves(sections: Mapping[str, type]) -> dict[tuple[str, ...], Any]:
    """Every leaf key of the tree as a path (``("model", "trainer", "lr")``) -> its annotation."""
    out: dict[tuple[str, ...], Any] = {}

    def walk(cls: type, prefix: tuple[str, ...]) -> None:
        hints = _hints(cls)
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            sub = _dataclass_of(hints[f.name])
            if sub is not None:
                walk(sub, prefix + (f.name,))
            else:
                out[prefix + (f.name,)] = hints[f.name]

    for name, cls in sections.items():
        walk(cls, (name,))
    return out


def duplicate_keys(sections: Mapping[str, type]) -> dict[str, list[str]]:
    """Leaf names declared in more than one place of the tree (must be empty: one declaration per key)."""
    seen: dict[str, list[str]] = {}
    for path in leaves(sections):
        seen.setdefault(path[-1], []).append(".".join(path))
    return {k: v for k, v in seen.items() if len(v) > 1}


def _flatten_input(values: Mapping[str, Any], known_prefixes: set[str], prefix: str = "") -> dict[str, Any]:
    """A (possibly nested) mapping from YAML or code as dotted keys; only mappings under a section or a nested
    config field are descended into, other mappings are values."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and dotted.rpartition(".")[2] in known_prefixes:
            out.update(_flatten_input(value, known_prefixes, dotted + "."))
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            out.update(_flatten_input(to_dict(value), known_prefixes, dotted + "."))
        else:
            out[dotted] = value
    return out


def _match(key: str, paths: Iterable[tuple[str, ...]]) -> list[tuple[str, ...]]:
    parts = tuple(key.split("."))
    return [p for p in paths if p[-len(parts) :] == parts]


def _precoerce(value: Any, annotation: Any) -> Any:
    """What pydantic's lax mode does not take from a command-line string: ``none`` for an optional value, a comma
    list (``2,3,5``) or YAML list for a list, YAML for ``Any``."""
    if not isinstance(value, str):
        return value
    annotation = _strip(annotation)
    origin = typing.get_origin(annotation)
    args = [_strip(a) for a in typing.get_args(annotation)]
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        if value.strip().lower() in ("none", "null", "~", ""):
            return None
        others = [a for a in args if a is not type(None)]
        return _precoerce(value, others[0]) if len(others) == 1 else value
    if origin in (list, tuple):
        text = value.strip()
        if text.startswith("["):
            return yaml.safe_load(text)
        return [] if not text else [v.strip() for v in text.split(",")]
    if annotation is Any:
        return yaml.safe_load(value)
    return value


def _set(tree: dict, path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        tree = tree.setdefault(part, {})
    tree[path[-1]] = value


def _deep_update(base: dict, new: Mapping) -> dict:
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _deep_update(base[key], value)
        else:
            base[key] = value
    return base


@functools.cache
def _adapter(cls: type) -> TypeAdapter:
    return TypeAdapter(cls)


def _describe_error(exc: ValidationError, source: str, prefix: tuple[str, ...] = ()) -> str:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in prefix + tuple(first["loc"]))
    msg = first["msg"].removeprefix("Value error, ")
    got = first.get("input")
    got = "" if isinstance(got, dict) else f" (got {got!r})"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{source}: invalid value for {loc}: {msg}{got}{more}"


def validate(cls: type, values: Mapping[str, Any] | None = None, source: str = "config", prefix=()):
    """An instance of dataclass ``cls`` from a complete or partial nested mapping (defaults fill the rest),
    validated by pydantic; a bad value is a one-line :class:`UserError` naming the key."""
    tree = _deep_update(to_dict(_default(cls)), dict(values or {}))
    try:
        return _adapter(cls).validate_python(tree)
    except ValidationError as exc:
        raise UserError(_describe_error(exc, source, prefix)) from None


def _default(cls: type):
    try:
        return cls()
    except (TypeError, ValueError) as exc:  # pragma: no cover - a config without defaults is a bug
        raise RuntimeError(f"{cls.__name__} must build from its defaults: {exc}") from None


def build_tree(
    sections: Mapping[str, type],
    values: Mapping[str, Any] | None = None,
    source: str = "config",
) -> dict[str, Any]:
    """Route flat, dotted or nested ``values`` to the one place each key is declared, then validate each section;
    returns ``{section: dataclass instance}``."""
    paths = leaves(sections)
    prefixes = set(sections) | {p for path in paths for p in path[:-1]}
    flat = _flatten_input(values or {}, prefixes)
    routed: dict[str, Any] = {}
    unknown = []
    for key, value in flat.items():
        matches = _match(key, paths)
        if not matches:
            unknown.append(key)
            continue
        if len(matches) > 1:
            where = ", ".join(".".join(m) for m in matches)
            raise UserError(
                f"{source}: key {key!r} is ambiguous ({where}); write it dotted, e.g. {where.split(', ')[0]}"
            )
        path = matches[0]
        _set(routed, path, _precoerce(value, paths[path]))
    if unknown:
        known = sorted({p[-1] for p in paths})
        raise UserError(f"unknown config key(s) {sorted(unknown)} for {source}; known keys: {known}")
    return {
        name: validate(cls, routed.get(name, {}), source, prefix=() if len(sections) == 1 else (name,))
        for name, cls in sections.items()
    }


def build_config(cls: type, values: Mapping[str, Any] | None = None, source: str = "config"):
    """One dataclass (and whatever it nests) from flat, dotted or nested ``values``."""
    return build_tree({"config": cls}, values, source)["config"]


def resolve(
    cls: type, yaml_path: str | os.PathLike | None = None, overrides: Iterable[str] | Mapping | None = None
):
    """Defaults <- YAML file <- ``--set`` overrides, as a validated dataclass instance."""
    values: dict[str, Any] = {}
    if yaml_path:
        values.update(load_yaml(yaml_path))
    extra = overrides if isinstance(overrides, Mapping) else parse_overrides(overrides)
    flat = _flatten_input(values, _all_prefixes({"config": cls}))
    flat.update(extra)
    return build_config(cls, flat, source=cls.__name__)


def _all_prefixes(sections: Mapping[str, type]) -> set[str]:
    return set(sections) | {p for path in leaves(sections) for p in path[:-1]}


def flat_keys(config: Any) -> dict[str, Any]:
    """A config instance as ``{leaf name: value}`` (names are unique in a tree)."""
    out: dict[str, Any] = {}
    for key, value in to_dict(config).items():
        if isinstance(value, dict) and dataclasses.is_dataclass(getattr(config, key, None)):
            out.update(flat_keys(getattr(config, key)))
        else:
            out[key] = value
    return out


def to_dict(config: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {
            f.name: (to_dict(v) if dataclasses.is_dataclass(v := getattr(config, f.name)) else _plain(v))
            for f in dataclasses.fields(config)
            if f.init
        }
    return dict(config)


def save_config(config: Any, path: str | os.PathLike) -> Path:
    """Write the resolved config as YAML (atomically)."""
    return write_text(path, dump_yaml(to_dict(config)))


def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(_plain(data), sort_keys=False)


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        return obj.item()  # numpy scalars (e.g. from Optuna or numpy maths)
    return obj
