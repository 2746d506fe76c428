import argparse

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from common.config import build_config
from common.errors import UserError
from competitions.news_text_cls import pretrain as pt
from competitions.news_text_cls import tokenizer as tok
from competitions.news_text_cls.pretraining import packing
from competitions.news_text_cls.synth import write_demo

#: a model small enough for 20 CPU steps in a few seconds
TINY = dict(
    num_layers=1,
    hidden_size=32,
    num_heads=2,
    intermediate_size=64,
    block_len=64,
    batch_size=8,
    max_steps=20,
    checkpoint_every_steps=5,
    eval_every_steps=5,
    lr=3e-3,
    warmup_ratio=0.0,
    eval_blocks=16,
    num_workers=0,
    device="cpu",
    quiet=True,
)


def tiny_config(**kw) -> pt.PretrainConfig:
    return build_config(pt.PretrainConfig, {"size": "mini", **TINY, **kw})


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    torch.set_num_threads(2)
    return write_demo(tmp_path_factory.mktemp("news"), n_train=60, n_test=20, seed=3, n_classes=4)


@pytest.fixture(scope="module")
def pretrained(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrained")
    summary = pt.pretrain(tiny_config(), data_dir, out)
    return out, summary


class _Killed(Exception):
    pass


# ------------------------------------------------------------------------------------------------ packing
def test_packing_loses_no_ids():
    rng = np.random.default_rng(0)
    lengths = np.array([5, 0, 13, 1, 40, 7])
    tokens = rng.integers(tok.N_SPECIAL, 900, size=lengths.sum()).astype(np.int32)
    stream = packing.doc_stream(tokens, lengths)
    assert (stream == tok.SEP_ID).sum() == (lengths > 0).sum()
    blocks = packing.pack_blocks([stream, stream[:9]], block_len=12)
    assert blocks.shape[1] == 10
    flat = blocks.reshape(-1).astype(np.int64)
    joined = np.concatenate([stream, stream[:9]])
    np.testing.assert_array_equal(flat[: len(joined)], joined)  # in order, nothing lost
    np.testing.assert_array_equal(flat[len(joined) :], joined[: len(flat) - len(joined)])  # wrap-around fill
    ids = packing.with_specials(blocks)
    assert (ids[:, 0] == tok.CLS_ID).all() and (ids[:, -1] == tok.SEP_ID).all() and ids.shape[1] == 12
    np.testing.assert_array_equal(np.sort(stream[stream != tok.SEP_ID]), np.sort(tokens))


def test_block_sampler_is_a_function_of_seed_and_epoch():
    sampler = packing.BlockBatchSampler(n_blocks=10, batch_size=4, batches_per_epoch=5, seed=1)
    sampler.set_epoch(1)
    epoch1 = np.concatenate(list(sampler))
    sampler.set_epoch(0)
    epoch0 = np.concatenate(list(sampler))
    again = packing.BlockBatchSampler(10, 4, 5, seed=1)
    again.set_epoch(1)
    np.testing.assert_array_equal(np.concatenate(list(again)), epoch1)
    stream = np.concatenate([epoch0, epoch1])  # 40 draws = 4 full passes over 10 blocks
    for p in range(4):
        assert sorted(stream[p * 10 : (p + 1) * 10]) == list(range(10))


def test_masking_skips_special_tokens_and_marks_labels():
    rows = np.full((64, 30), 9, dtype=np.uint16)
    from transformers import DataCollatorForLanguageModeling

    tokenizer = tok.make_tokenizer(tok.vocab_from_counts(np.ones(20)))
    batch = packing.mask_batch(DataCollatorForLanguageModeling(tokenizer), packing.with_specials(rows))
    labels = batch["labels"]
    assert (labels[:, [0, -1]] == -100).all()
    masked = labels != -100
    assert 0.1 < masked.float().mean() < 0.2
    assert (labels[masked] == 9).all() and (batch["input_ids"][masked] == tok.MASK_ID).float().mean() > 0.6


# ------------------------------------------------------------------------------------------------ pretraining
def test_twenty_steps_lower_the_held_out_mlm_loss(pretrained):
    out, summary = pretrained
    losses = [r["valid_loss"] for r in summary["history"] if "valid_loss" in r]
    assert summary["steps"] == 20 and len(losses) == 4  # held-out blocks scored every 5 steps
    assert losses[-1] < losses[0] - 0.1
    assert losses[-1] < np.log(summary["vocab_size"]) - 0.2  # better than a uniform guess over the vocabulary
    assert (out / "config.json").is_file() and (out / "tokenizer.json").is_file()
    assert (out / "pretrain.json").is_file() and not (out / "checkpoints" / "last.pt").exists()
    assert yaml.safe_load((out / "config.yaml").read_text())["trainer"]["max_steps"] == 20


def test_resume_after_a_kill_continues_from_the_checkpoint(pretrained, data_dir, tmp_path):
    reference, _ = pretrained

    class Steps:
        def __init__(self, kill_at=None):
            self.kill_at, self.steps = kill_at, []

        def on_step(self, step, record):
            self.steps.append(step)
            if step == self.kill_at:
                raise _Killed

    with pytest.raises(_Killed):  # killed right after the second checkpoint (step 10)
        pt.pretrain(tiny_config(), data_dir, tmp_path, callbacks=[Steps(kill_at=10)])
    assert (tmp_path / "checkpoints" / "last.pt").is_file() and not (tmp_path / "config.json").exists()
    resumed_steps = Steps()
    summary = pt.pretrain(tiny_config(), data_dir, tmp_path, callbacks=[resumed_steps])
    assert resumed_steps.steps == list(range(11, 21))  # only the steps after the checkpoint
    assert [r["step"] for r in summary["history"] if "valid_loss" in r] == [5, 10, 15, 20]
    resumed, uninterrupted = (
        load_file(tmp_path / "model.safetensors"),
        load_file(reference / "model.safetensors"),
    )
    assert resumed.keys() == uninterrupted.keys()
    for key in resumed:
        torch.testing.assert_close(resumed[key], uninterrupted[key], rtol=1e-4, atol=1e-5)


def test_resuming_with_another_config_is_refused(data_dir, tmp_path):
    class Kill:
        def on_step(self, step, record):
            if step == 5:
                raise _Killed

    with pytest.raises(_Killed):
        pt.pretrain(tiny_config(), data_dir, tmp_path, callbacks=[Kill()])
    with pytest.raises(UserError, match="different config.*lr"):
        pt.pretrain(tiny_config(lr=1e-4), data_dir, tmp_path)


def test_resuming_may_differ_in_the_trainer_runtime_keys_only(tmp_path):
    """The keys a resumed pretraining may change are the trainer's own ``RUNTIME_KEYS`` (declared once)."""
    from common.config import save_config
    from common.trainer import TrainerConfig

    assert not hasattr(pt, "_RUNTIME_KEYS")
    save_config(tiny_config(), tmp_path / "config.yaml")
    (tmp_path / "checkpoints").mkdir()
    runtime = {"quiet": False, "num_workers": 2, "device": "auto", "compile": True, "log_every_steps": 7}
    assert set(runtime) == TrainerConfig.RUNTIME_KEYS
    pt._check_out(tiny_config(**runtime), tmp_path, force=False)
    with pytest.raises(UserError, match="different config.*max_steps"):
        pt._check_out(tiny_config(max_steps=21), tmp_path, force=False)


def test_cli_verb_reports_an_already_pretrained_directory(pretrained, data_dir, capsys):
    out, _ = pretrained
    parser = argparse.ArgumentParser()
    pt.add_arguments(parser)
    sets = [f"--set={k}={v}" for k, v in TINY.items()]
    args = parser.parse_args(["--data-dir", str(data_dir), "--out", str(out), "--size", "mini", *sets])
    assert pt.run(args) == 0
    assert "already pretrained" in capsys.readouterr().out
    bad = parser.parse_args(["--data-dir", str(data_dir), "--out", str(out), "--set", "nope=1"])
    with pytest.raises(UserError, match="unknown config key"):
        pt.run(bad)
