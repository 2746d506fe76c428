"""A registry of models by name, in the manner of timm.

A competition registers each model class with ``@register_model("textcnn", config=TextCNNConfig)``; the class is a
scikit-learn style estimator whose ``__init__`` takes exactly the config dataclass's fields. ``create_model`` builds
the typed config (unknown keys are an error) and instantiates the model; ``list_models`` enumerates names, which is
where the CLI's ``--model`` choices and the contract tests come from.

Names are unique within a competition (its package, ``competitions.<name>``): two contests may each have a
``cnn``. Code that knows its contest passes ``where=`` (any module of it, e.g. ``competition.models_module``); a
bare name is enough while only one contest registers it.
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


_MODELS: dict[tuple[str, str], ModelEntry] = {}


def namespace(module: str) -> str:
    """The package a model's names are unique in: ``competitions.<name>`` for a contest, else the module itself."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "competitions" and len(parts) > 1 else module


def register_model(name: str, config: type | None = None):
    """Class decorator registering an estimator under ``name`` (in its contest's namespace) with its config."""

    def decorator(cls: type) -> type:
        key = (namespace(cls.__module__), name)
        if key in _MODELS and _MODELS[key].cls.__qualname__ != cls.__qualname__:
            raise ValueError(f"model {name!r} is already registered by {_MODELS[key].module}")
        _MODELS[key] = ModelEntry(name=name, cls=cls, config_cls=config, module=cls.__module__)
        cls.model_name = name
        return cls

    return decorator


def get_model_entry(name: str, where: str | None = None) -> ModelEntry:
    """The entry of ``name`` (in the namespace of module ``where`` when given)."""
    found = [e for (ns, n), e in _MODELS.items() if n == name and (where is None or ns == namespace(where))]
    if len(found) == 1:
        return found[0]
    if found:
        owners = ", ".join(sorted(namespace(e.module) for e in found))
        raise UserError(f"model {name!r} is registered by several contests ({owners}); say which")
    known = ", ".join(list_models(module=namespace(where) if where else None)) or "none registered"
    raise UserError(f"unknown model {name!r}; known models: {known}")


def list_models(pattern: str = "*", module: str | None = None) -> list[str]:
    """Sorted model names matching a glob ``pattern``, optionally only those defined under ``module``."""
    names = {
        n
        for (_, n), e in _MODELS.items()
        if fnmatch.fnmatch(n, pattern)
        and (module is None or e.module == module or e.module.startswith(module + "."))
    }
    return sorted(names)


def default_config(name: str, where: str | None = None) -> dict[str, Any]:
    """The model's default parameters as a plain (nested) dict."""
    from common.config import to_dict

    entry = get_model_entry(name, where)
    if entry.config_cls is None:
        return {}
    return to_dict(entry.config_cls())


def build_model_config(name: str, values: dict[str, Any] | None = None, where: str | None = None):
    """Model ``name``'s validated config from flat (``epochs``), dotted (``trainer.epochs``) or nested values."""
    from common.config import build_config

    entry = get_model_entry(name, where)
    return build_config(entry.config_cls, values or {}, source=f"model {name!r}")


def create_model(name: str, /, *, where: str | None = None, **cfg: Any):
    """Instantiate model ``name`` with config overrides ``cfg`` (flat, dotted or nested; validated)."""
    entry = get_model_entry(name, where)
    if entry.config_cls is None:
        return entry.cls(**cfg)
    config = build_model_config(name, cfg, where)
    return entry.cls(**{f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.init})
