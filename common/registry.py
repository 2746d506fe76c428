"""A registry of models by name, in the manner of timm.

A competition registers each model class with ``@register_model("textcnn", config=TextCNNConfig)``; the class is a
scikit-learn style estimator whose ``__init__`` takes exactly the config dataclass's fields. ``create_model`` builds
the typed config (unknown keys are an error) and instantiates the model; ``list_models`` enumerates names, which is
where the CLI's ``--model`` choices and the contract tests come from.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from dataclasses import dataclass
from typing import Any

from common.errors import UserError


@dataclass(frozen=True)
class ModelEntry:
    name: str
    cls: type
    config_cls: type | None
    module: str


_MODELS: dict[str, ModelEntry] = {}


def register_model(name: str, config: type | None = None):
    """Class decorator registering an estimator under ``name`` with its config dataclass."""

    def decorator(cls: type) -> type:
        if name in _MODELS and _MODELS[name].cls.__qualname__ != cls.__qualname__:
            raise ValueError(f"model {name!r} is already registered by {_MODELS[name].module}")
        _MODELS[name] = ModelEntry(name=name, cls=cls, config_cls=config, module=cls.__module__)
        cls.model_name = name
        return cls

    return decorator


def get_model_entry(name: str) -> ModelEntry:
    try:
        return _MODELS[name]
    except KeyError:
        known = ", ".join(list_models()) or "none registered"
        raise UserError(f"unknown model {name!r}; known models: {known}") from None


def list_models(pattern: str = "*", module: str | None = None) -> list[str]:
    """Sorted model names matching a glob ``pattern``, optionally only those defined under ``module``."""
    names = [
        n
        for n, e in _MODELS.items()
        if fnmatch.fnmatch(n, pattern)
        and (module is None or e.module == module or e.module.startswith(module + "."))
    ]
    return sorted(names)


def default_config(name: str) -> dict[str, Any]:
    """The model's default parameters as a plain (nested) dict."""
    from common.config import to_dict

    entry = get_model_entry(name)
    if entry.config_cls is None:
        return {}
    return to_dict(entry.config_cls())


def build_model_config(name: str, values: dict[str, Any] | None = None):
    """Model ``name``'s validated config from flat (``epochs``), dotted (``trainer.epochs``) or nested values."""
    from common.config import build_config

    entry = get_model_entry(name)
    return build_config(entry.config_cls, values or {}, source=f"model {name!r}")


def create_model(name: str, **cfg: Any):
    """Instantiate model ``name`` with config overrides ``cfg`` (flat, dotted or nested; validated)."""
    entry = get_model_entry(name)
    if entry.config_cls is None:
        return entry.cls(**cfg)
    config = build_model_config(name, cfg)
    return entry.cls(**{f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.init})
