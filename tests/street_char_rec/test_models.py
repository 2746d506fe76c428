"""Each registered street model fits and predicts on tiny data; targets, resume and checkpoints."""

import numpy as np
import pytest
import timm
import torch

from common.errors import UserError
from common.registry import create_model, list_models
from competitions.street_char_rec import models  # noqa: F401  (registers the models)
from competitions.street_char_rec.competition import StreetCompetition

from .conftest import TINY, TINY_BY_MODEL

STREET_MODELS = list_models(module="competitions.street_char_rec")


def test_models_are_registered():
    assert STREET_MODELS == ["cnn", "crnn", "detector", "resnet"]


@pytest.mark.parametrize("name", STREET_MODELS)
def test_fit_predict_on_tiny_data(street_data, name):
    comp = StreetCompetition()
    data, test = comp.load_train(street_data), comp.load_test(street_data)
    model = create_model(name, **TINY, **TINY_BY_MODEL[name])
    assert model.fit(data.X, data.y) is model
    proba = model.predict_proba(test.X)
    assert proba.shape == (12, 6, 11)
    np.testing.assert_allclose(proba.sum(-1), 1.0, rtol=1e-5)
    pred = model.predict(test.X)
    assert len(pred) == 12 and all(p.isdigit() for p in pred)
    assert 0.0 <= comp.score(data.y[:10], model.predict_proba(data.X[np.arange(10)])) <= 1.0
    assert len(model.history_) == 1


def test_tta_averages_views(street_data):
    comp = StreetCompetition()
    data = comp.load_train(street_data)
    model = create_model("cnn", **TINY, width=8, tta=2).fit(data.X, data.y)
    with_tta = model.predict_proba(data.X[np.arange(8)])
    model.tta = 0
    plain = model.predict_proba(data.X[np.arange(8)])
    assert with_tta.shape == plain.shape and not np.allclose(with_tta, plain)
    np.testing.assert_allclose(with_tta.sum(-1), 1.0, rtol=1e-5)


def test_label_longer_than_max_chars_is_a_clear_error(street_data):
    data = StreetCompetition().load_train(street_data)
    y = data.y.astype(object)
    y[0] = "1234567"
    with pytest.raises(UserError, match="max_chars is 6"):
        create_model("cnn", **TINY, width=8).fit(data.X, y)


def test_interrupted_fit_resumes_where_it_stopped(street_data, tmp_path):
    data = StreetCompetition().load_train(street_data)
    params = {**TINY, "width": 8, "epochs": 2}
    full = create_model("cnn", **params).fit(data.X, data.y)

    def crash(epoch, record):
        if epoch == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        create_model("cnn", **params).fit(data.X, data.y, work_dir=tmp_path, callbacks=[crash])
    assert (tmp_path / "last.pt").is_file()
    resumed = create_model("cnn", **params).fit(data.X, data.y, work_dir=tmp_path)
    assert [r["epoch"] for r in resumed.history_] == [0, 1]
    assert resumed.history_[1]["train_loss"] == pytest.approx(full.history_[1]["train_loss"], rel=1e-4)


def test_resnet_loads_a_local_checkpoint_and_never_downloads(tmp_path):
    with pytest.raises(UserError, match="pretrained_path .* not found"):
        create_model("resnet", pretrained_path=str(tmp_path / "none.pth"))._build_module()
    source = timm.create_model("resnet18", pretrained=False)
    torch.save(source.state_dict(), tmp_path / "r18.pth")
    module = create_model("resnet", pretrained_path=str(tmp_path / "r18.pth"))._build_module()
    torch.testing.assert_close(module.features.body.conv1.weight, source.conv1.weight)
    torch.save({"x": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(UserError, match="not a checkpoint of resnet18"):
        create_model("resnet", pretrained_path=str(tmp_path / "other.pth"))._build_module()
    with pytest.raises(UserError, match="backbone 'nope'"):
        create_model("resnet", backbone="nope")._build_module()
