import json
import shutil

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from common.config import build_config
from common.errors import UserError
from common.metrics import Metric
from common.trainer import Trainer, TrainerConfig


class _Linear(nn.Module):
    """No dropout, no randomness in forward: runs are comparable weight for weight."""

    def __init__(self, bn: bool = False) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8) if bn else nn.Identity(), nn.Linear(8, 3))

    def forward(self, batch):
        logits = self.net(batch["x"])
        out = {"logits": logits}
        if "labels" in batch:
            out["loss"] = nn.functional.cross_entropy(logits, batch["labels"])
        return out


def _collate(rows):
    xs, ys = zip(*rows, strict=True)
    return {"x": torch.stack(xs), "labels": torch.stack(ys)}


def _loader(batch_size=16, n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.randn(n, 4, generator=g) + y[:, None].float()
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=False, collate_fn=_collate)


def _module(seed=0, bn=False):
    torch.manual_seed(seed)
    return _Linear(bn)


_acc = Metric("acc", lambda y, logits: float(np.mean(logits.argmax(-1) == y)))


def _cfg(**kw):
    base = dict(epochs=3, lr=0.05, device="cpu", quiet=True, scheduler="constant")
    return TrainerConfig(**{**base, **kw})


def test_loss_decreases_and_log_written(tmp_path):
    trainer = Trainer(_cfg(epochs=5), metric=_acc, work_dir=tmp_path)
    trainer.fit(_module(), _loader(), _loader(seed=1))
    losses = [r["train_loss"] for r in trainer.history]
    assert losses[-1] < losses[0] * 0.8
    lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [0, 1, 2, 3, 4]
    assert {"train_loss", "valid_loss", "valid_score", "lr", "seconds", "items_per_s", "step"} <= set(
        lines[0]
    )
    assert (tmp_path / "last.pt").is_file() and (tmp_path / "best.pt").is_file()


def test_grad_accumulation_matches_a_bigger_batch():
    big = Trainer(_cfg()).fit(_module(), _loader(batch_size=16))
    accum = Trainer(_cfg(grad_accum=2)).fit(_module(), _loader(batch_size=8))
    plain = Trainer(_cfg()).fit(_module(), _loader(batch_size=8))
    for (k, a), b in zip(big.state_dict().items(), accum.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-5), k
    # the check has teeth: without accumulation, batches of 8 end elsewhere
    assert not all(
        torch.allclose(a, c, atol=1e-5)
        for a, c in zip(big.state_dict().values(), plain.state_dict().values(), strict=True)
    )


def test_early_stopping_stops():
    trainer = Trainer(_cfg(epochs=10, lr=0.0, patience=2), metric=_acc)
    trainer.fit(_module(), _loader(), _loader(seed=1))
    assert len(trainer.history) == 3  # best at epoch 0, then two epochs without improvement


def test_best_weights_are_restored(tmp_path):
    calls = iter([0.5, 0.9, 0.1])
    seen = []

    def metric(y, logits):
        seen.append(logits.copy())
        return next(calls)

    trainer = Trainer(_cfg(epochs=3), metric=Metric("m", metric), work_dir=tmp_path)
    model = trainer.fit(_module(), _loader(), _loader(seed=1))
    _, logits, _ = trainer.evaluate(model, _loader(seed=1))
    assert np.allclose(logits, seen[1], atol=1e-6)  # epoch 1 scored best
    assert (
        torch.load(tmp_path / "best.pt", weights_only=True)["step"] == 8
    )  # 4 steps an epoch, end of epoch 1


def test_the_metric_says_which_direction_is_better(tmp_path):
    """The direction is the metric's: a lower-is-better metric keeps the weights of its lowest score."""
    calls = iter([0.5, 0.1, 0.9])
    trainer = Trainer(_cfg(epochs=3), metric=Metric("loss_like", lambda y, p: next(calls), greater_is_better=False),
                      work_dir=tmp_path)  # fmt: skip
    trainer.fit(_module(), _loader(), _loader(seed=1))
    assert [r["valid_score"] for r in trainer.history] == [0.5, 0.1, 0.9]
    assert torch.load(tmp_path / "best.pt", weights_only=True)["score"] == 0.1


def test_ema_path_runs_and_averages_buffers():
    plain = Trainer(_cfg()).fit(_module(bn=True), _loader())
    ema_trainer = Trainer(_cfg(ema_decay=0.5), metric=_acc)
    ema = ema_trainer.fit(_module(bn=True), _loader(), _loader(seed=1))
    assert len(ema_trainer.history) == 3
    assert not torch.allclose(plain.net[0].weight, ema.net[0].weight)
    # the EMA copy tracks BatchNorm statistics too (not the initial zeros / ones)
    assert ema.net[1].running_mean.abs().sum() > 0
    assert not torch.allclose(ema.net[1].running_var, torch.ones(8))


def test_callback_exception_propagates(tmp_path):
    class Stop(Exception):
        pass

    def callback(epoch, record):
        assert record["epoch"] == epoch
        if epoch == 1:
            raise Stop

    trainer = Trainer(_cfg(epochs=4), work_dir=tmp_path, callbacks=[callback])
    with pytest.raises(Stop):
        trainer.fit(_module(), _loader())
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 2
    assert torch.load(tmp_path / "last.pt", weights_only=True)["state"]["epoch"] == 2


def test_resume_from_last_checkpoint(tmp_path):
    """Trainer-level resume: a crash after epoch 1 of 4, then the same fit again, equals one uninterrupted fit."""
    full = Trainer(_cfg(epochs=4), metric=_acc).fit(_module(), _loader(), _loader(seed=1))

    def crash(epoch, record):
        if epoch == 1:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        Trainer(_cfg(epochs=4), metric=_acc, work_dir=tmp_path, callbacks=[crash]).fit(
            _module(), _loader(), _loader(seed=1)
        )
    epochs = []
    resumed_trainer = Trainer(
        _cfg(epochs=4), metric=_acc, work_dir=tmp_path, callbacks=[lambda e, r: epochs.append(e)]
    )
    resumed = resumed_trainer.fit(_module(seed=99), _loader(), _loader(seed=1))
    assert epochs == [2, 3]
    assert [r["epoch"] for r in resumed_trainer.history] == [0, 1, 2, 3]
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    "values, match",
    [
        ({"grad_accum": 0}, "grad_accum"),
        ({"amp": "fp8"}, "amp"),
        ({"epochs": -1}, "epochs"),
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"valid_size": 2}, "valid_size"),
        ({"lr": "nan"}, "lr.*finite"),
        ({"lr": "inf"}, "lr.*finite"),
        ({"warmup_ratio": 1.5}, "warmup_ratio"),
        ({"scheduler": "bogus"}, "scheduler"),
        ({"device": "cuda:3"}, "device"),
        ({"device": "tpu"}, "device"),
        ({"ema_decay": 1.0}, "ema_decay"),
    ],
)
def test_config_validation_names_the_key(values, match):
    if "device" in values and torch.cuda.device_count() > 3:
        pytest.skip("this machine has a cuda:3")
    with pytest.raises(UserError, match=match):
        build_config(TrainerConfig, values)


def test_progress_bar_on_a_terminal_shows_loss_and_tokens_per_second(monkeypatch, capsys):
    import sys

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    Trainer(_cfg(epochs=1, quiet=False, log_every_steps=1), tokens_key="x").fit(_module(), _loader(n=400))
    err = capsys.readouterr().err
    assert "loss=" in err and "tok/s=" in err
    Trainer(_cfg(epochs=1, quiet=True), tokens_key="x").fit(_module(), _loader(n=400))
    assert "tok/s" not in capsys.readouterr().err  # --quiet: no bar at all


def test_without_a_terminal_a_plain_line_per_epoch_and_every_n_steps(monkeypatch, capsys):
    """``nohup make train > log``: no progress bar, but one line per epoch (loss, score, lr, seconds, items/s) and
    one every ``log_every_steps`` optimizer steps."""
    import sys

    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    Trainer(_cfg(epochs=2, quiet=False, log_every_steps=2), metric=_acc).fit(
        _module(), _loader(), _loader(seed=1)
    )
    lines = capsys.readouterr().err.splitlines()
    epoch_lines = [line for line in lines if line.startswith("epoch ")]
    step_lines = [line for line in lines if line.startswith("step ")]
    assert len(epoch_lines) == 2 and len(step_lines) == 4  # 4 steps an epoch, a line every 2
    for part in ("train_loss", "valid_score", "lr ", "s, ", "items/s"):
        assert part in epoch_lines[0], (part, epoch_lines[0])
    Trainer(_cfg(epochs=2, quiet=True, log_every_steps=2), metric=_acc).fit(
        _module(), _loader(), _loader(seed=1)
    )
    assert capsys.readouterr().err == ""


def test_sharded_sampler_gives_ranks_disjoint_equal_shares():
    from torch.utils.data import BatchSampler, SequentialSampler

    from common.trainer import ShardedSampler

    batches = BatchSampler(SequentialSampler(range(23)), batch_size=3, drop_last=False)  # 8 batches
    shards = [list(ShardedSampler(batches, rank, 3)) for rank in range(3)]
    assert [len(s) for s in shards] == [2, 2, 2] == [len(ShardedSampler(batches, r, 3)) for r in range(3)]
    flat = [tuple(b) for s in shards for b in s]
    assert len(set(flat)) == 6 and set(flat) <= {tuple(b) for b in batches}  # disjoint, from the same batches


class _Steps:
    """A step callback that can crash the run after a given optimizer step."""

    def __init__(self, crash_at: int | None = None) -> None:
        self.steps: list[int] = []
        self.crash_at = crash_at

    def on_step(self, step: int, record: dict) -> None:
        self.steps.append(step)
        if step == self.crash_at:
            raise RuntimeError("killed mid-epoch")


@pytest.mark.parametrize("shuffle", [False, True])
def test_step_checkpoints_resume_mid_epoch_exactly(tmp_path, shuffle):
    """A crash in the middle of an epoch resumes from the last step checkpoint and ends on the weights of an
    uninterrupted run (the epoch's batch order is replayed, the RNG continues from the checkpoint)."""

    def loader():
        base = _loader(batch_size=8)
        gen = torch.Generator().manual_seed(5)
        return DataLoader(base.dataset, batch_size=8, shuffle=shuffle, generator=gen, collate_fn=_collate)

    cfg = _cfg(epochs=2, checkpoint_every_steps=3, scheduler="linear")  # 8 steps an epoch
    full = Trainer(cfg, metric=_acc).fit(_module(), loader(), _loader(seed=1))
    with pytest.raises(RuntimeError, match="mid-epoch"):
        Trainer(cfg, metric=_acc, work_dir=tmp_path, callbacks=[_Steps(crash_at=11)]).fit(
            _module(), loader(), _loader(seed=1)
        )
    state = torch.load(tmp_path / "last.pt", weights_only=True)["state"]
    assert (state["step"], state["epoch"], state["batch_in_epoch"]) == (9, 1, 1)  # the step-9 checkpoint
    steps = _Steps()
    resumed = Trainer(cfg, metric=_acc, work_dir=tmp_path, callbacks=[steps]).fit(
        _module(seed=7), loader(), _loader(seed=1)
    )
    assert steps.steps == list(range(10, 17))
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_eval_every_steps_scores_and_logs_within_epochs(tmp_path):
    trainer = Trainer(_cfg(epochs=2, eval_every_steps=3), metric=_acc, work_dir=tmp_path)
    trainer.fit(_module(), _loader(batch_size=8), _loader(seed=1))  # 8 steps an epoch, 16 in all
    evals = [r["step"] for r in trainer.history if "valid_score" in r and "seconds" not in r]
    assert evals == [3, 6, 9, 12, 15, 16]  # every 3 steps and the last one
    epochs = [r for r in trainer.history if "seconds" in r]
    assert len(epochs) == 2 and all("valid_score" not in r for r in epochs)  # no extra epoch-end evaluation


def test_max_steps_stops_and_spans_the_schedule():
    trainer = Trainer(_cfg(epochs=99, max_steps=6, scheduler="linear"))
    trainer.fit(_module(), _loader(batch_size=16))  # 4 steps an epoch
    assert trainer.history[-1]["step"] == 6 and len(trainer.history) == 2
    assert trainer.history[-1]["lr"] == 0.0  # the linear schedule ends at max_steps


def _wsd_lrs(warmup: float, decay: float, steps: int) -> list[float]:
    """The lr of each step of a ``warmup_stable_decay`` schedule peaking at 1.0 over ``steps`` steps."""
    trainer = Trainer(_cfg(lr=1.0, scheduler="warmup_stable_decay", warmup_ratio=warmup, decay_ratio=decay))
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = trainer._scheduler(opt, steps)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.step()
    return lrs


@pytest.mark.parametrize(("warmup", "decay", "flat_until"), [(0.1, 0.2, 80), (0.5, 0.8, 50)])
def test_warmup_stable_decay_holds_the_peak_then_decays_over_the_last_share(warmup, decay, flat_until):
    """Warm-up, the peak held, then a decay over the last ``decay_ratio`` of the steps (never more than the warm-up
    leaves, so the schedule still ends at 0 when the two shares add up to more than 1)."""
    lrs = _wsd_lrs(warmup, decay, 100)
    start = int(warmup * 100)
    assert lrs[start // 2] < 1.0 and all(lr == 1.0 for lr in lrs[start:flat_until])
    assert all(a > b for a, b in zip(lrs[flat_until:], lrs[flat_until + 1 :], strict=False))
    assert lrs[-1] < 0.01


@pytest.mark.parametrize(("steps", "warmup", "decay"), [(5, 0.3, 0.7), (7, 0.5, 0.5), (3, 0.0, 0.5)])
def test_warmup_stable_decay_reaches_its_peak_on_short_runs(steps, warmup, decay):
    """Warm-up and decay steps are rounded separately; together they must still fit the run."""
    lrs = _wsd_lrs(warmup, decay, steps)
    assert max(lrs) == 1.0


def test_a_planted_pickle_checkpoint_is_refused_and_never_run(tmp_path):
    """``last.pt`` is read with ``weights_only=True``: a pickle that would run code is an error naming the file."""
    import os
    import pickle

    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    for name in ("last.pt", "best.pt"):
        work = tmp_path / name.replace(".", "_")
        work.mkdir()
        with open(work / name, "wb") as fh:
            pickle.dump({"model": Evil()}, fh)
        with pytest.raises(UserError, match=f"{name}: not a checkpoint this trainer can load safely"):
            trainer = Trainer(_cfg(epochs=1), work_dir=work)
            if name == "last.pt":
                trainer.fit(_module(), _loader())
            else:
                trainer.load_checkpoint(work / name)
    assert not marker.exists()


# ---------------------------------------------------------------------- GPU paths on their CPU equivalents
class _Conv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        # no BatchNorm after the conv: its bias would get a zero gradient, which Adam turns into sign noise
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))  # fmt: skip

    def forward(self, batch):
        logits = self.net(batch["images"])
        out = {"logits": logits}
        if "labels" in batch:
            out["loss"] = nn.functional.cross_entropy(logits.float(), batch["labels"])
        return out


def _image_loader(n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.randn(n, 3, 12, 12, generator=g) + y[:, None, None, None].float()
    return DataLoader(TensorDataset(x, y), batch_size=16,
                      collate_fn=lambda rows: {"images": torch.stack([r[0] for r in rows]),
                                               "labels": torch.stack([r[1] for r in rows])})  # fmt: skip


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_on_cpu_autocast(amp):
    """``amp=bf16`` (the GPU default) and ``amp=fp16`` (with the GradScaler) run on CPU autocast and still learn."""
    trainer = Trainer(_cfg(epochs=6, amp=amp, lr=0.05), metric=_acc)
    assert trainer.amp_dtype == (torch.bfloat16 if amp == "bf16" else torch.float16)
    trainer.fit(_module(), _loader(), _loader(seed=1))
    losses = [r["train_loss"] for r in trainer.history]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_channels_last_trains_a_conv_net_to_the_same_weights():
    torch.manual_seed(0)
    plain = Trainer(_cfg(epochs=2, lr=0.01)).fit(_Conv(), _image_loader())
    torch.manual_seed(0)
    trainer = Trainer(_cfg(epochs=2, lr=0.01, channels_last=True))
    model = trainer.fit(_Conv(), _image_loader())
    assert model.net[0].weight.is_contiguous(memory_format=torch.channels_last)
    for a, b in zip(plain.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-4)


@pytest.mark.skipif(
    shutil.which("g++") is None and shutil.which("c++") is None, reason="inductor needs a C++ compiler"
)
def test_compile_trains_like_eager():
    """``compile=true`` (inductor on CPU; about 10 s of compiling) gives the eager run's weights."""
    eager = Trainer(_cfg(epochs=2)).fit(_module(), _loader())
    compiled = Trainer(_cfg(epochs=2, compile=True)).fit(_module(), _loader())
    for a, b in zip(eager.state_dict().values(), compiled.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-4)


def test_batch_size_none_sampler_branch_as_pretraining_uses():
    """A loader whose sampler yields whole batches (``batch_size=None``, MLM pretraining's block sampler)."""
    from torch.utils.data import Dataset

    class Batches(Dataset):
        def __init__(self):
            self.x, self.y = _loader(batch_size=64).dataset.tensors

        def __len__(self):
            return len(self.x)

        def __getitem__(self, index):
            return {"x": self.x[index], "labels": self.y[index]}

    class BlockSampler:
        def __init__(self):
            self.epoch, self.skip = 0, 0

        def set_epoch(self, epoch):
            self.epoch = epoch

        def __len__(self):
            return 4

        def __iter__(self):
            order = torch.randperm(64, generator=torch.Generator().manual_seed(self.epoch)).view(4, 16)
            yield from order.tolist()

    loader = DataLoader(Batches(), batch_size=None, sampler=BlockSampler())
    trainer = Trainer(_cfg(epochs=3), metric=_acc)
    trainer.fit(_module(), loader, _loader(seed=1))
    assert [r["step"] for r in trainer.history] == [4, 8, 12]


def test_a_module_may_bring_its_own_optimizer():
    made = []

    class _OwnOptimizer(_Linear):
        def make_optimizer(self, lr, weight_decay):
            made.append((lr, weight_decay))
            return torch.optim.SGD(self.parameters(), lr=lr)

    torch.manual_seed(0)
    trainer = Trainer(_cfg(epochs=2, lr=0.1, weight_decay=0.01), metric=_acc)
    trainer.fit(_OwnOptimizer(), _loader(), _loader(seed=1))
    assert made == [(0.1, 0.01)]
    assert trainer.history[-1]["train_loss"] < trainer.history[0]["train_loss"]
