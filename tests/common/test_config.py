import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import pytest
import yaml

from common.config import build_config, parse_overrides, resolve, save_config
from common.errors import UserError
from common.registry import get_model_entry
from tests.common.models_under_test import ALL_MODELS


@dataclass
class Cfg:
    epochs: int = 3
    lr: float = 1e-3
    amp: bool = False
    patience: int | None = None
    clip: float | None = 1.0
    scheduler: Literal["cosine", "linear"] = "cosine"
    kernels: list[int] = field(default_factory=lambda: [3, 4])
    name: str = "x"


def test_set_coercion():
    cfg = resolve(
        Cfg,
        overrides=[
            "epochs=5",
            "lr=2e-4",
            "amp=true",
            "patience=none",
            "clip=0.5",
            "scheduler=linear",
            "kernels=2,3,5",
            "name=12",
        ],
    )
    assert cfg == Cfg(5, 2e-4, True, None, 0.5, "linear", [2, 3, 5], "12")
    assert resolve(Cfg, overrides=["patience=2", "kernels=[7]", "amp=0"]).patience == 2
    assert resolve(Cfg, overrides=["kernels=[7, 8]"]).kernels == [7, 8]
    assert resolve(Cfg, overrides=["epochs=4.0"]).epochs == 4


@pytest.mark.parametrize(
    "item, match",
    [
        ("epochs=2.5", "expected an integer"),
        ("lr=fast", "expected a number"),
        ("amp=maybe", "expected true/false"),
        ("scheduler=step", r"not one of \['cosine', 'linear'\]"),
        ("kernels=a,b", "expected an integer"),
        ("patience=x", "expected an integer"),
        ("epochs", "key=value"),
    ],
)
def test_bad_values(item, match):
    with pytest.raises(UserError, match=match):
        resolve(Cfg, overrides=[item])


def test_unknown_key_lists_known_keys():
    with pytest.raises(
        UserError, match=r"unknown config key\(s\) \['epoch'\].*known keys: \['amp', 'clip', 'epochs'"
    ):
        resolve(Cfg, overrides=["epoch=3"])


def test_yaml_overlay_then_set(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 7\nlr: 0.1\nkernels: [1, 2]\n")
    cfg = resolve(Cfg, path, ["lr=0.2"])
    assert (cfg.epochs, cfg.lr, cfg.kernels, cfg.name) == (7, 0.2, [1, 2], "x")
    path.write_text("epochs: seven\n")
    with pytest.raises(UserError, match="epochs"):
        resolve(Cfg, path)
    path.write_text("- 1\n- 2\n")
    with pytest.raises(UserError, match="mapping"):
        resolve(Cfg, path)
    with pytest.raises(UserError, match="not found"):
        resolve(Cfg, tmp_path / "missing.yaml")


def test_save_config_round_trip(tmp_path):
    cfg = resolve(Cfg, overrides=["epochs=9", "patience=none", "kernels=5,6"])
    path = save_config(cfg, tmp_path / "run" / "config.yaml")
    assert resolve(Cfg, path) == cfg
    assert yaml.safe_load(path.read_text())["epochs"] == 9


def test_parse_overrides_keeps_strings():
    assert parse_overrides(["a=1", "b=x=y"]) == {"a": "1", "b": "x=y"}


@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_registered_config_builds(name, tmp_path):
    """Configs are tested: every model's config builds from defaults, survives a YAML round trip and --set."""
    config_cls = get_model_entry(name).config_cls
    if config_cls is None:
        pytest.skip(f"{name} has no config class")
    default = build_config(config_cls, {}, source=name)
    path = save_config(default, tmp_path / "config.yaml")
    assert resolve(config_cls, path) == default
    # every field accepts its own default written as a --set string
    overrides = []
    for f in dataclasses.fields(default):
        value = getattr(default, f.name)
        if isinstance(value, bool | int | float | str) or value is None:
            overrides.append(f"{f.name}={value}")
    assert resolve(config_cls, path, overrides) == default
    with pytest.raises(UserError, match="known keys"):
        build_config(config_cls, {"no_such_key": 1}, source=name)
