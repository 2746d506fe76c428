import json

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

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


def _acc(y, logits):
    return float(np.mean(logits.argmax(-1) == y))


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
    assert {"train_loss", "valid_loss", "valid_score", "lr", "seconds"} <= set(lines[0])
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

    trainer = Trainer(_cfg(epochs=3), metric=metric, work_dir=tmp_path)
    model = trainer.fit(_module(), _loader(), _loader(seed=1))
    _, logits, _ = trainer.evaluate(model, _loader(seed=1))
    assert np.allclose(logits, seen[1], atol=1e-6)  # epoch 1 scored best
    assert torch.load(tmp_path / "best.pt", weights_only=False)["epoch"] == 1


def test_lower_is_better():
    calls = iter([0.5, 0.1, 0.9])
    trainer = Trainer(_cfg(epochs=3, greater_is_better=False), metric=lambda y, p: next(calls))
    trainer.fit(_module(), _loader(), _loader(seed=1))
    assert [r["valid_score"] for r in trainer.history] == [0.5, 0.1, 0.9]


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
    assert torch.load(tmp_path / "last.pt", weights_only=False)["state"]["epoch"] == 2


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


def test_config_validation():
    with pytest.raises(ValueError, match="grad_accum"):
        TrainerConfig(grad_accum=0)
    with pytest.raises(ValueError, match="amp"):
        TrainerConfig(amp="fp8")


def test_progress_bar_on_a_terminal_shows_loss_and_tokens_per_second(monkeypatch, capsys):
    import sys

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    Trainer(_cfg(epochs=1, quiet=False, tokens_key="x")).fit(_module(), _loader())
    err = capsys.readouterr().err
    assert "loss=" in err and "tok/s=" in err
    Trainer(_cfg(epochs=1, quiet=True, tokens_key="x")).fit(_module(), _loader())
    assert "tok/s" not in capsys.readouterr().err  # --quiet: no bar at all


def test_sharded_sampler_gives_ranks_disjoint_equal_shares():
    from torch.utils.data import BatchSampler, SequentialSampler

    from common.trainer import ShardedSampler

    batches = BatchSampler(SequentialSampler(range(23)), batch_size=3, drop_last=False)  # 8 batches
    shards = [list(ShardedSampler(batches, rank, 3)) for rank in range(3)]
    assert [len(s) for s in shards] == [2, 2, 2] == [len(ShardedSampler(batches, r, 3)) for r in range(3)]
    flat = [tuple(b) for s in shards for b in s]
    assert len(set(flat)) == 6 and set(flat) <= {tuple(b) for b in batches}  # disjoint, from the same batches


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
