"""Import every contest's model registry that exists in this checkout, so tests can parametrise over all models."""

from __future__ import annotations

import importlib
import importlib.util

import tests.common.toy  # noqa: F401  (registers toy_mlp and toy_logreg)
from common.registry import list_models

CONTEST_MODEL_MODULES = ("competitions.news_text_cls.models", "competitions.street_char_rec.models")


def _exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # the contest package itself is absent
        return False


def import_all_models() -> tuple[list[str], dict[str, str]]:
    """Import the contests' model modules that exist; return every registered name and the import errors
    (reported by a test of their own rather than breaking the collection of every test that uses the list)."""
    errors: dict[str, str] = {}
    for name in CONTEST_MODEL_MODULES:
        if _exists(name):
            try:
                importlib.import_module(name)
            except Exception as exc:  # noqa: BLE001 - reported by test_contest_model_modules_import
                errors[name] = f"{type(exc).__name__}: {exc}"
    return list_models(), errors


ALL_MODELS, IMPORT_ERRORS = import_all_models()
TOY_MODELS = list_models(module="tests.common.toy")
