"""Fitted models stored in formats that cannot run code when loaded.

- A deep model (:class:`~common.estimator.TorchEstimator`): ``estimator.json`` (model name, params, the fitted
  attributes that are plain values) + ``fitted.safetensors`` (fitted arrays) + ``model.safetensors`` (the network's
  weights). Loading rebuilds the estimator from its registered name and params, restores the fitted attributes,
  builds the network (``_restore_module``) and loads the weights into it.
- A scikit-learn model: ``estimator.json`` + ``model.skops``, loaded with skops. Beyond the types skops trusts
  by default, only *classes* defined in scikit-learn or in the model class's own module are trusted (resolved and
  checked: a function, or a name imported into such a module from elsewhere, is refused, because skops calls what
  a trusted name points to).

Nothing is unpickled. A file that is not what its name says (a planted pickle, a truncated write) is a
:class:`~common.errors.UserError` naming it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.atomic import atomic_path, write_json
from common.config import to_dict
from common.errors import UserError

FORMAT = 1
META, WEIGHTS, ARRAYS, SKOPS = "estimator.json", "model.safetensors", "fitted.safetensors", "model.skops"
#: modules whose classes skops may load besides those it trusts by default (with the model class's own module)
TRUSTED_PREFIXES = ("sklearn.",)


def _trusted_root(name: str, own_module: str) -> str | None:
    """The trusted module ``name`` lies under (``sklearn`` or ``own_module``), or None: decided on the name alone,
    before anything is imported."""
    if not all(part.isidentifier() for part in name.split(".")):
        return None
    roots = [prefix.rstrip(".") for prefix in TRUSTED_PREFIXES]
    if own_module:
        roots.append(own_module)
    return next((root for root in roots if name.startswith(root + ".")), None)


def _resolve(name: str, root: str):
    """The object a dotted name points to (its longest importable module prefix under ``root``, then attributes),
    or None. Only modules under ``root`` are ever imported."""
    import importlib

    parts = name.split(".")
    for cut in range(len(parts) - 1, len(root.split(".")) - 1, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except Exception:  # noqa: BLE001 - a module that fails to import resolves nothing
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr, None)
            if obj is None:
                return None
        return obj
    return None


def refused_types(names: list[str], own_module: str) -> list[str]:
    """The names among ``names`` that may not be loaded: anything but a class defined under
    :data:`TRUSTED_PREFIXES` or in ``own_module``. A name outside them is refused without importing anything (the
    names come from an untrusted file, and importing a module runs its code); the others are resolved and checked
    on the object, not the name."""
    refused = []
    for name in names:
        root = _trusted_root(name, own_module)
        obj = _resolve(name, root) if root is not None else None
        module = getattr(obj, "__module__", "") or ""
        trusted = isinstance(obj, type) and (module == own_module or module.startswith(TRUSTED_PREFIXES))
        if not trusted:
            refused.append(name)
    return refused


def _is_torch(estimator) -> bool:
    from common.estimator import TorchEstimator

    return isinstance(estimator, TorchEstimator)


def _params(estimator) -> dict:
    return {
        k: (to_dict(v) if hasattr(v, "__dataclass_fields__") else v)
        for k, v in estimator.get_params(deep=False).items()
    }


def _split_fitted(estimator) -> tuple[dict, dict[str, torch.Tensor]]:
    """Fitted attributes (``name_``) as JSON-able values and tensors; anything else is a bug to fix in the model."""
    plain: dict[str, Any] = {}
    tensors: dict[str, torch.Tensor] = {}
    for name, value in vars(estimator).items():
        if not name.endswith("_") or name.startswith("_") or name == "module_":
            continue
        if isinstance(value, torch.Tensor):
            tensors[name] = value.detach().cpu().contiguous()
        elif isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
            tensors[name] = torch.from_numpy(np.ascontiguousarray(value))
            plain[name] = {"__ndarray__": True}
        elif isinstance(value, np.ndarray):
            plain[name] = {"__ndarray__": value.tolist(), "dtype": value.dtype.str}
        else:
            plain[name] = _jsonable(value, name)
    return plain, tensors


def _jsonable(value: Any, name: str) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list | tuple):
        return [_jsonable(v, name) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v, name) for k, v in value.items()}
    raise TypeError(
        f"fitted attribute {name!r} of type {type(value).__name__} cannot be stored without pickle"
    )


def save(estimator, folder: str | Path) -> None:
    """Write a fitted estimator into ``folder`` (each file atomically; ``estimator.json`` last)."""
    folder = Path(folder)
    meta = {
        "format": FORMAT,
        "model": estimator.model_name,
        "module": type(estimator).__module__,
        "params": _params(estimator),
    }
    if _is_torch(estimator):
        from safetensors.torch import save_file, save_model

        plain, tensors = _split_fitted(estimator)
        with atomic_path(folder / WEIGHTS) as tmp:
            save_model(estimator.module_, str(tmp))
        with atomic_path(folder / ARRAYS) as tmp:
            save_file(tensors, str(tmp))
        meta.update(kind="torch", fitted=plain)
    else:
        import skops.io as sio

        with atomic_path(folder / SKOPS) as tmp:
            sio.dump(estimator, tmp)
        meta.update(kind="skops")
    write_json(folder / META, meta)


def files(folder: str | Path) -> list[Path]:
    """The files :func:`save` writes for the estimator stored in ``folder`` (what exists of them)."""
    folder = Path(folder)
    return [folder / n for n in (META, WEIGHTS, ARRAYS, SKOPS) if (folder / n).exists()]


def _read_meta(folder: Path) -> dict:
    path = folder / META
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: missing; the fold has no saved model (retrain it)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc}); it was not written by this repository") from None
    if (
        not isinstance(meta, dict)
        or meta.get("format") != FORMAT
        or meta.get("kind") not in ("torch", "skops")
    ):
        raise UserError(f"{path}: not an estimator description of format {FORMAT}; retrain the fold")
    expected = {
        "model": (str, "a model name"),
        "module": ((str, type(None)), "a module name"),
        "params": (dict, "an object of params"),
        "fitted": (dict, "an object of fitted attributes"),
    }
    for key, (kind, what) in expected.items():
        required = key in ("model", "params") or (key == "fitted" and meta["kind"] == "torch")
        if (required or key in meta) and not isinstance(meta.get(key), kind):
            found = "nothing" if key not in meta else type(meta[key]).__name__
            raise UserError(
                f"{path}: expected {what} as {key!r}, got {found}; the fold's model is damaged (retrain it)"
            )
    return meta


def _is_fitted_name(name: str) -> bool:
    """A name :func:`save` stores a fitted attribute under (``name_``; never private, never the network)."""
    return name.isidentifier() and name.endswith("_") and not name.startswith("_") and name != "module_"


def _fitted_value(name: str, value: Any, tensors: dict, folder: Path) -> Any:
    """The value of fitted attribute ``name`` as described in ``estimator.json`` (arrays from ``tensors``)."""
    if not (isinstance(value, dict) and "__ndarray__" in value):
        return value
    if value["__ndarray__"] is True:
        if name not in tensors:
            raise UserError(
                f"{folder / ARRAYS}: has no tensor {name!r}, which {META} lists; retrain the fold"
            )
        try:
            return tensors[name].numpy()
        except (TypeError, RuntimeError) as exc:
            raise UserError(f"{folder / ARRAYS}: tensor {name!r} is not a numpy array ({exc})") from None
    try:
        return np.asarray(value["__ndarray__"], dtype=np.dtype(value["dtype"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(
            f"{folder / META}: fitted attribute {name!r} is not a valid array ({type(exc).__name__}: {exc})"
        ) from None


def load(folder: str | Path):
    """The estimator :func:`save` wrote into ``folder``."""
    from common.registry import create_model

    folder = Path(folder)
    meta = _read_meta(folder)
    try:
        estimator = create_model(meta["model"], where=meta.get("module"), **meta["params"])
    except UserError as exc:
        raise UserError(f"{folder / META}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise UserError(f"{folder / META}: its params do not build the model ({exc})") from None
    if meta["kind"] == "skops":
        return _load_skops(folder / SKOPS, type(estimator))
    from safetensors import SafetensorError
    from safetensors.torch import load_file, load_model

    try:
        tensors = load_file(str(folder / ARRAYS))
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"{folder / ARRAYS}: not a safetensors file ({exc})") from None
    fitted = meta["fitted"]
    for names, path in ((fitted, folder / META), (tensors, folder / ARRAYS)):
        bad = [name for name in names if not _is_fitted_name(name)]
        if bad:
            raise UserError(
                f"{path}: {bad[0]!r} is not a fitted attribute (a public name ending in '_'); refusing to load it"
            )
    for name, value in fitted.items():
        setattr(estimator, name, _fitted_value(name, value, tensors, folder))
    for name, tensor in tensors.items():
        if not isinstance(fitted.get(name), dict):
            setattr(estimator, name, tensor)
    try:
        module = estimator._restore_module()
    except Exception as exc:  # noqa: BLE001 - damaged fitted values fail in the model's own code
        reason = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise UserError(
            f"{folder / META}: cannot rebuild the model from it ({type(exc).__name__}: {reason}); retrain the fold"
        ) from None
    try:
        load_model(module, str(folder / WEIGHTS), strict=True, device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        reason = str(exc).splitlines()[0][:200]
        raise UserError(f"{folder / WEIGHTS}: cannot load the model's weights ({reason})") from None
    module.eval()
    estimator.module_ = module
    return estimator


def _load_skops(path: Path, model_cls: type):
    import skops.io as sio

    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:  # noqa: BLE001 - skops raises many kinds on a file that is not its format
        raise UserError(f"{path}: not a skops file ({type(exc).__name__}: {str(exc)[:200]})") from None
    refused = refused_types(untrusted, model_cls.__module__)
    if refused:
        raise UserError(
            f"{path}: holds types this repository does not trust ({', '.join(refused[:3])}); refusing to load it"
        )
    try:
        return sio.load(path, trusted=untrusted)
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"{path}: cannot be loaded ({type(exc).__name__}: {str(exc)[:200]})") from None
