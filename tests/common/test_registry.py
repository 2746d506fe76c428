import dataclasses

import numpy as np
import pytest
from sklearn.base import clone

from common.errors import UserError
from common.registry import create_model, default_config, get_model_entry, list_models, register_model
from tests.common.models_under_test import ALL_MODELS, TOY_MODELS


def test_list_models_and_patterns():
    assert {"toy_mlp", "toy_logreg"} <= set(list_models())
    assert list_models("toy_*", module="tests.common.toy") == ["toy_logreg", "toy_mlp"]
    assert list_models(module="tests.common") == ["toy_logreg", "toy_mlp"]
    assert list_models(module="tests.comm") == []


def test_unknown_model_lists_known_names():
    with pytest.raises(UserError, match="unknown model 'toy_cnn'; known models: .*toy_logreg, toy_mlp"):
        create_model("toy_cnn")


def test_create_model_applies_typed_config():
    model = create_model("toy_mlp", epochs="2", lr="0.5")
    assert (model.trainer.epochs, model.trainer.lr, model.hidden) == (2, 0.5, 16)
    assert model.trainer.batch_size == 32  # the model's own trainer default
    with pytest.raises(UserError, match="known keys"):
        create_model("toy_mlp", hiddn=3)
    with pytest.raises(UserError, match="hidden"):
        create_model("toy_mlp", hidden=0)


def test_registering_a_name_twice_is_refused():
    class Other:
        pass

    Other.__module__ = "tests.common.toy"  # the same contest (namespace) as toy_mlp
    with pytest.raises(ValueError, match="already registered"):
        register_model("toy_mlp")(Other)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_params_only_in_init(name):
    from common.config import to_dict

    model = create_model(name)
    params = model.get_params(deep=False)
    assert to_dict(model) == default_config(name) or get_model_entry(name).config_cls is None
    # __init__ stores the params and nothing else; no fitted state yet
    assert set(vars(model)) == set(params), f"{name}.__init__ sets more than its params"
    assert not [k for k in vars(model) if k.endswith("_") and not k.startswith("_")]
    twin = clone(model)
    assert twin is not model and twin.get_params(deep=False) == params
    twin.set_params(**params)
    assert twin.get_params(deep=False) == params
    assert create_model(name, **params).get_params(deep=False) == params


def _toy_xy(n=60, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = (rng.normal(0, 1, (n, 4)) + y[:, None] * 2).astype(np.float32)
    return X, np.array(["a", "b", "c"])[y]


@pytest.mark.parametrize("name", TOY_MODELS)
def test_fit_contract(name):
    overrides = {"epochs": 2, "quiet": True} if "trainer" in default_config(name) else {}
    model = create_model(name, **overrides)
    before = set(vars(model))
    X, y = _toy_xy()
    assert model.fit(X, y) is model
    fitted = set(vars(model)) - before
    assert fitted and all(k.endswith("_") for k in fitted), sorted(fitted)
    assert list(model.classes_) == ["a", "b", "c"]
    proba = model.predict_proba(X)
    assert proba.shape == (len(X), 3) and np.allclose(proba.sum(1), 1, atol=1e-5)
    assert set(model.predict(X)) <= {"a", "b", "c"}
    # params unchanged by fit; a clone is unfitted
    assert model.get_params(deep=False) == create_model(name, **overrides).get_params(deep=False)
    assert not any(k.endswith("_") for k in vars(clone(model)))
    assert dataclasses.is_dataclass(model)


def test_contest_model_modules_import():
    from tests.common.models_under_test import IMPORT_ERRORS

    assert not IMPORT_ERRORS, IMPORT_ERRORS


def test_two_contests_may_use_the_same_model_name():
    from common import registry

    made = []
    for contest in ("competitions.alpha", "competitions.beta"):
        cls = type("Dup", (), {"__module__": f"{contest}.models"})
        registry.register_model("dup_model")(cls)
        made.append(cls)
    try:
        assert registry.get_model_entry("dup_model", where="competitions.alpha.models").cls is made[0]
        assert registry.get_model_entry("dup_model", where="competitions.beta.models.x").cls is made[1]
        with pytest.raises(UserError, match="registered by several contests"):
            registry.get_model_entry("dup_model")
        with pytest.raises(UserError, match="unknown model 'dup_model'"):
            registry.get_model_entry("dup_model", where="competitions.gamma.models")
        assert registry.list_models("dup_*") == ["dup_model"]
    finally:
        for ns in ("competitions.alpha", "competitions.beta"):
            registry._MODELS.pop((ns, "dup_model"))
