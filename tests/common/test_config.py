import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import pytest
import yaml

from common.config import (
    ConfigBase,
    PositiveInt,
    build_config,
    build_tree,
    duplicate_keys,
    flat_keys,
    leaves,
    parse_overrides,
    resolve,
    save_config,
)
from common.errors import UserError
from common.registry import get_model_entry
from common.trainer import TrainerConfig
from tests.common.models_under_test import ALL_MODELS


@dataclass
class Cfg(ConfigBase):
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
        ("epochs=2.5", "epochs: Input should be a valid integer"),
        ("lr=fast", "lr: Input should be a valid number"),
        ("amp=maybe", "amp: Input should be a valid boolean"),
        ("scheduler=step", "scheduler: Input should be 'cosine' or 'linear'"),
        ("kernels=a,b", "kernels.0: Input should be a valid integer"),
        ("patience=x", "patience: Input should be a valid integer"),
        ("lr=nan", "lr: Input should be a finite number"),
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


@dataclass
class _Data(ConfigBase):
    split: str = "kfold"


@dataclass
class _Model(ConfigBase):
    width: PositiveInt = 8
    trainer: TrainerConfig = dataclasses.field(default_factory=lambda: TrainerConfig(epochs=7))


def test_flat_keys_route_to_the_one_place_they_are_declared():
    tree = build_tree({"data": _Data, "model": _Model}, {"epochs": "3", "split": "official", "width": "4"})
    assert tree["data"].split == "official"
    assert (tree["model"].width, tree["model"].trainer.epochs) == (4, 3)
    # the model's own trainer defaults survive a partial override
    assert build_tree({"model": _Model}, {"lr": "0.1"})["model"].trainer.epochs == 7
    # dotted and nested forms name the same places
    dotted = build_tree({"data": _Data, "model": _Model}, {"trainer.epochs": 3, "data.split": "x"})
    nested = build_tree(
        {"data": _Data, "model": _Model}, {"model": {"trainer": {"epochs": 3}}, "data": {"split": "x"}}
    )
    assert dotted == nested and dotted["model"].trainer.epochs == 3
    with pytest.raises(UserError, match=r"invalid value for model.trainer.epochs: Input should be greater"):
        build_tree({"data": _Data, "model": _Model}, {"epochs": "0"})


def test_a_key_declared_twice_is_ambiguous_and_detected():
    @dataclass
    class Clash(ConfigBase):
        lr: float = 0.1  # also a trainer key
        trainer: TrainerConfig = dataclasses.field(default_factory=TrainerConfig)

    assert duplicate_keys({"model": Clash}) == {"lr": ["model.lr", "model.trainer.lr"]}
    with pytest.raises(UserError, match="ambiguous"):
        build_config(Clash, {"lr": 1.0})
    assert build_config(Clash, {"trainer.lr": 1.0}).trainer.lr == 1.0


@pytest.mark.parametrize("name", ALL_MODELS)
def test_no_key_is_declared_twice_in_any_model_tree(name):
    """One declaration per key: a model's config (with its nested trainer config) and every contest's data config
    never declare the same key twice, so a flat ``--set key=value`` always has one meaning."""
    from common.runs import load_competition

    config_cls = get_model_entry(name).config_cls
    data_configs = [load_competition(c).data_config for c in ("news_text_cls", "street_char_rec")]
    for data_cls in data_configs:
        assert duplicate_keys({"data": data_cls, "model": config_cls}) == {}, name
    if hasattr(config_cls, "trainer"):
        trainer_keys = {p[-1] for p in leaves({"t": TrainerConfig})}
        own = {f.name for f in dataclasses.fields(config_cls)} - {"trainer"}
        assert not own & trainer_keys, f"{name} redeclares trainer keys {own & trainer_keys}"


def test_pretraining_holds_the_same_trainer_config():
    from competitions.news_text_cls.pretrain import PretrainConfig

    assert duplicate_keys({"config": PretrainConfig}) == {}
    config = resolve(PretrainConfig, overrides=["max_steps=7", "size=mini", "lr=1e-3"])
    assert isinstance(config.trainer, TrainerConfig)
    assert (config.trainer.max_steps, config.size, config.trainer.lr) == (7, "mini", 1e-3)
    assert flat_keys(config)["checkpoint_every_steps"] == 500


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
    # every leaf accepts its own default written as a --set string
    overrides = []
    for key, value in flat_keys(default).items():
        if isinstance(value, bool | int | float | str) or value is None:
            overrides.append(f"{key}={value}")
    assert resolve(config_cls, path, overrides) == default
    with pytest.raises(UserError, match="known keys"):
        build_config(config_cls, {"no_such_key": 1}, source=name)


class _RecordingTrial:
    """Stands in for an Optuna trial: records each suggested range and returns its low end."""

    def __init__(self) -> None:
        self.ranges: dict[str, tuple] = {}

    def suggest_float(self, name, low, high, **_):
        self.ranges[name] = ("range", low, high)
        return low

    suggest_int = suggest_float

    def suggest_categorical(self, name, choices):
        self.ranges[name] = ("choices", tuple(choices))
        return choices[0]


@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_search_space_contains_the_models_defaults(name):
    """A tuned range that leaves out the default makes tuning start from worse than the untuned model."""
    entry = get_model_entry(name)
    space = getattr(entry.cls, "search_space", None)
    if space is None:
        pytest.skip("no search space")
    trial = _RecordingTrial()
    suggested = space(trial)
    defaults = flat_keys(build_config(entry.config_cls))
    assert set(suggested) <= set(defaults), f"{name}: search space keys that are no config key"
    for key, (kind, *rng) in trial.ranges.items():
        default = defaults[key]
        if default is None:  # derived when unset (e.g. BERT's lr from the encoder's width)
            continue
        if kind == "range":
            low, high = rng
            if low <= default <= high:
                continue
            if default == 0 and 0 < low <= 1e-5:  # a log range cannot hold 0: its tiny low end is "off"
                continue
            raise AssertionError(f"{name}: default {key}={default!r} outside its search range {rng}")
        assert default in rng[0], f"{name}: default {key}={default!r} not among the choices {rng[0]}"
