"""The one PyTorch training loop every deep model shares.

``module(batch)`` returns a dict with ``"loss"`` (when the batch holds ``"labels"``) and ``"logits"``; the trainer
never knows which model or loss it drives. It owns device placement, autocast (bf16 on CUDA, fp32 on CPU),
gradient accumulation, clipping, the optimizer and warmup/decay schedule, per-epoch validation with an injected
metric, early stopping, best-checkpoint save/restore, resume after a crash, optional EMA of weights, tqdm progress,
a JSON-lines log and DistributedDataParallel under ``torchrun`` (rank 0 alone writes).

Callbacks ``cb(epoch, record)`` run after each epoch's checkpoint is written; an exception they raise (for example
``optuna.TrialPruned``) stops training and propagates.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from common import distributed as dist_utils
from common.atomic import atomic_path

Metric = Callable[[np.ndarray, np.ndarray], float]
Callback = Callable[[int, dict], None]


@dataclass
class TrainerConfig:
    epochs: int = 5
    lr: float = 1e-3
    weight_decay: float = 0.0
    scheduler: str = (
        "cosine"  # any name transformers.get_scheduler knows: cosine, linear, constant_with_warmup...
    )
    warmup_ratio: float = 0.0
    grad_accum: int = 1
    clip_grad: float | None = 1.0
    amp: str = "auto"  # auto (bf16 on CUDA, off on CPU) | bf16 | fp16 | off
    patience: int | None = None  # early stopping: epochs without improvement of the validation score
    ema_decay: float | None = None
    device: str = "auto"
    channels_last: bool = False
    compile: bool = False
    quiet: bool = False
    greater_is_better: bool = True
    #: batch key whose element count is the tokens of a step: the progress bar then shows tokens/s
    tokens_key: str | None = None

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {self.epochs}")
        if self.grad_accum < 1:
            raise ValueError(f"grad_accum must be >= 1, got {self.grad_accum}")
        if self.amp not in ("auto", "bf16", "fp16", "off"):
            raise ValueError(f"amp must be auto|bf16|fp16|off, got {self.amp!r}")


class Trainer:
    def __init__(
        self,
        config: TrainerConfig,
        metric: Metric | None = None,
        work_dir: str | Path | None = None,
        callbacks: Iterable[Callback] = (),
    ) -> None:
        self.config = config
        self.metric = metric
        self.work_dir = Path(work_dir) if work_dir else None
        self.callbacks = list(callbacks)
        self.device = dist_utils.resolve_device(config.device)
        self.history: list[dict] = []

    # ------------------------------------------------------------------ set-up
    @property
    def amp_dtype(self) -> torch.dtype | None:
        amp = self.config.amp
        if amp == "off" or (amp == "auto" and self.device.type != "cuda"):
            return None
        if amp == "fp16":
            return torch.float16
        return torch.bfloat16

    def _autocast(self):
        dtype = self.amp_dtype
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)

    def _to_device(self, batch: dict) -> dict:
        out = {}
        for key, value in batch.items():
            if isinstance(value, torch.Tensor):
                if self.config.channels_last and value.ndim == 4 and value.is_floating_point():
                    value = value.to(self.device, non_blocking=True, memory_format=torch.channels_last)
                else:
                    value = value.to(self.device, non_blocking=True)
            out[key] = value
        return out

    def _optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        cfg = self.config
        if hasattr(model, "make_optimizer"):  # a model that needs its own optimizer (e.g. sparse gradients)
            return model.make_optimizer(cfg.lr, cfg.weight_decay)
        if hasattr(model, "param_groups"):
            groups = model.param_groups(cfg.lr, cfg.weight_decay)
        else:
            decay, no_decay = [], []
            for p in model.parameters():
                if p.requires_grad:
                    (decay if p.ndim >= 2 else no_decay).append(p)
            groups = [
                {"params": decay, "weight_decay": cfg.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ]
        fused = self.device.type == "cuda"
        return torch.optim.AdamW(groups, lr=cfg.lr, fused=fused)

    def _scheduler(self, optimizer, total_steps: int):
        from transformers import get_scheduler

        warmup = int(round(self.config.warmup_ratio * total_steps))
        return get_scheduler(
            self.config.scheduler, optimizer, num_warmup_steps=warmup, num_training_steps=max(total_steps, 1)
        )

    def _distributed_loader(self, loader: DataLoader) -> DataLoader:
        """Under DDP each rank takes every ``world``-th step of the loader's own (batch) sampler, so length
        bucketing, block samplers and their ``set_epoch`` keep working; every rank must draw the same order,
        which seeding each rank alike (``seed_everything``) guarantees."""
        rank, world = dist_utils.rank(), dist_utils.world_size()
        common = {
            "collate_fn": loader.collate_fn,
            "num_workers": loader.num_workers,
            "pin_memory": loader.pin_memory,
            "worker_init_fn": loader.worker_init_fn,
            "generator": loader.generator,
        }
        if loader.batch_sampler is not None:
            return DataLoader(
                loader.dataset, batch_sampler=ShardedSampler(loader.batch_sampler, rank, world), **common
            )
        return DataLoader(
            loader.dataset, batch_size=None, sampler=ShardedSampler(loader.sampler, rank, world), **common
        )

    # ------------------------------------------------------------------ checkpoints
    def _path(self, name: str) -> Path | None:
        return self.work_dir / name if self.work_dir else None

    def _save(self, name: str, state: dict) -> None:
        path = self._path(name)
        if path is None or not dist_utils.is_main_process():
            return
        with atomic_path(path) as tmp:
            torch.save(state, tmp)

    @staticmethod
    def _rng_state(loader: DataLoader) -> dict:
        state = {
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        }
        for owner in ("generator", "sampler"):
            gen = loader.generator if owner == "generator" else getattr(loader.sampler, "generator", None)
            if isinstance(gen, torch.Generator):
                state[f"{owner}_gen"] = gen.get_state()
        return state

    @staticmethod
    def _set_rng_state(state: dict, loader: DataLoader) -> None:
        random.setstate(state["python"])
        np.random.set_state(state["numpy"])
        torch.set_rng_state(state["torch"])
        if state.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        for owner in ("generator", "sampler"):
            gen = loader.generator if owner == "generator" else getattr(loader.sampler, "generator", None)
            if isinstance(gen, torch.Generator) and f"{owner}_gen" in state:
                gen.set_state(state[f"{owner}_gen"])

    def _log(self, record: dict) -> None:
        path = self._path("log.jsonl")
        if path is None or not dist_utils.is_main_process():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    # ------------------------------------------------------------------ loops
    def fit(
        self, model: nn.Module, train_loader: DataLoader, valid_loader: DataLoader | None = None
    ) -> nn.Module:
        """Train ``model`` and return it with the best weights loaded (best by validation score, else the last)."""
        cfg = self.config
        dist_utils.init_if_needed(self.device)
        model.to(self.device)
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        raw_model = model
        if dist_utils.is_distributed():
            train_loader = self._distributed_loader(train_loader)
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        step_model = torch.compile(model) if cfg.compile else model

        optimizer = self._optimizer(raw_model)
        steps_per_epoch = math.ceil(len(train_loader) / cfg.grad_accum)
        scheduler = self._scheduler(optimizer, steps_per_epoch * cfg.epochs)
        scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        ema = None
        if cfg.ema_decay:
            ema = torch.optim.swa_utils.AveragedModel(
                raw_model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema_decay)
            )

        sign = 1.0 if cfg.greater_is_better else -1.0
        state = {"epoch": 0, "best_score": -math.inf, "best_epoch": -1, "bad_epochs": 0, "stopped": False}
        best_weights: dict | None = None
        last_path = self._path("last.pt")
        if last_path is not None and last_path.exists():
            # on the CPU: RNG states must stay CPU tensors; load_state_dict moves weights and optimizer state
            ckpt = torch.load(last_path, map_location="cpu", weights_only=False)
            raw_model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            scaler.load_state_dict(ckpt["scaler"])
            if ema is not None and ckpt.get("ema") is not None:
                ema.load_state_dict(ckpt["ema"])
            state = ckpt["state"]
            self.history = ckpt.get("history", [])
            self._set_rng_state(ckpt["rng"], train_loader)

        for epoch in range(state["epoch"], cfg.epochs):
            if state["stopped"]:
                break
            for owner in (train_loader.sampler, train_loader.batch_sampler):
                if hasattr(owner, "set_epoch"):
                    owner.set_epoch(epoch)
            t0 = time.perf_counter()
            train_loss = self._train_epoch(step_model, train_loader, optimizer, scheduler, scaler, ema, epoch)
            eval_model = ema.module if ema is not None else raw_model
            record: dict[str, Any] = {
                "epoch": epoch,
                "train_loss": train_loss,
                "lr": optimizer.param_groups[0]["lr"],
            }
            if valid_loader is not None:
                valid_loss, logits, labels = self.evaluate(eval_model, valid_loader)
                record["valid_loss"] = valid_loss
                score = (
                    self.metric(labels, logits)
                    if self.metric is not None and labels is not None
                    else -valid_loss
                )
                record["valid_score"] = float(score)
                improved = sign * score > state["best_score"]
            else:
                score, improved = float(epoch), True
            record["seconds"] = time.perf_counter() - t0
            if improved:
                state.update(best_score=sign * score, best_epoch=epoch, bad_epochs=0)
                best_weights = {
                    k: v.detach().to("cpu", copy=True) for k, v in eval_model.state_dict().items()
                }
                self._save("best.pt", {"model": best_weights, "epoch": epoch, "score": score})
            else:
                state["bad_epochs"] += 1
                if cfg.patience is not None and state["bad_epochs"] >= cfg.patience:
                    state["stopped"] = True
            state["epoch"] = epoch + 1
            self.history.append(record)
            self._log(record)
            self._save(
                "last.pt",
                {
                    "model": raw_model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "ema": ema.state_dict() if ema is not None else None,
                    "state": state,
                    "history": self.history,
                    "rng": self._rng_state(train_loader),
                    "config": asdict(cfg),
                },
            )
            for callback in self.callbacks:
                callback(epoch, record)

        if best_weights is None and (best_path := self._path("best.pt")) is not None and best_path.exists():
            best_weights = torch.load(best_path, map_location="cpu", weights_only=False)["model"]
        if best_weights is not None:
            raw_model.load_state_dict(best_weights)
        elif ema is not None:
            raw_model.load_state_dict(ema.module.state_dict())
        return raw_model

    def _progress(self, iterable, **kwargs):
        disable = self.config.quiet or not sys.stderr.isatty() or not dist_utils.is_main_process()
        return tqdm(iterable, disable=disable, leave=False, dynamic_ncols=True, **kwargs)

    def _train_epoch(self, model, loader, optimizer, scheduler, scaler, ema, epoch: int) -> float:
        cfg = self.config
        model.train()
        total = torch.zeros((), device=self.device)  # summed on device: no host sync per step
        count, tokens, t0 = 0, 0, time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        n_batches = len(loader)
        bar = self._progress(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", total=n_batches)
        for i, batch in enumerate(bar):
            batch = self._to_device(batch)
            last_in_step = (i + 1) % cfg.grad_accum == 0 or i + 1 == n_batches
            sync = last_in_step or not isinstance(model, nn.parallel.DistributedDataParallel)
            ctx = model.no_sync() if not sync else contextlib.nullcontext()
            with ctx:
                with self._autocast():
                    out = model(batch)
                loss = out["loss"]
                scaler.scale(loss / cfg.grad_accum).backward()
            if last_in_step:
                if cfg.clip_grad:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                if ema is not None:
                    ema.update_parameters(_unwrap(model))
            bs = _batch_size(batch)
            total += loss.detach().float() * bs
            count += bs
            if cfg.tokens_key is not None and cfg.tokens_key in batch:
                tokens += batch[cfg.tokens_key].numel()
            if not bar.disable and i % 20 == 0:
                postfix = {"loss": f"{float(total) / max(count, 1):.4f}"}
                if tokens:
                    postfix["tok/s"] = f"{tokens / max(time.perf_counter() - t0, 1e-9):,.0f}"
                bar.set_postfix(postfix)
        return float(total) / max(count, 1)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: DataLoader) -> tuple[float, np.ndarray, np.ndarray | None]:
        """Mean loss (nan without labels), stacked logits and labels over ``loader``."""
        model.eval()
        losses, logits, labels = [], [], []
        n = 0
        for batch in self._progress(loader, desc="eval"):
            batch = self._to_device(batch)
            with self._autocast():
                out = model(batch)
            bs = _batch_size(batch)
            if "loss" in out and out["loss"] is not None:
                losses.append(float(out["loss"]) * bs)
            n += bs
            logits.append(out["logits"].float().cpu().numpy())
            if "labels" in batch:
                labels.append(batch["labels"].cpu().numpy())
        valid_loss = sum(losses) / n if losses and n else float("nan")
        stacked = np.concatenate(logits) if logits else np.zeros((0,))
        return valid_loss, stacked, (np.concatenate(labels) if labels else None)

    def predict(self, model: nn.Module, loader: DataLoader) -> np.ndarray:
        """Logits for every row of ``loader`` (float32 numpy), in loader order."""
        model.to(self.device)
        return self.evaluate(model, loader)[1]


class ShardedSampler:
    """Rank ``rank``'s share of a (batch) sampler: items ``rank, rank + world, ...``, equal counts on every rank."""

    def __init__(self, sampler, rank: int, world: int) -> None:
        self.sampler, self.rank, self.world = sampler, rank, world

    def __len__(self) -> int:
        return len(self.sampler) // self.world

    def __iter__(self):
        limit = len(self) * self.world
        for i, item in enumerate(self.sampler):
            if i >= limit:
                break
            if i % self.world == self.rank:
                yield item

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    @property
    def generator(self):
        return getattr(self.sampler, "generator", None)


def _unwrap(model: nn.Module) -> nn.Module:
    model = getattr(model, "_orig_mod", model)
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _batch_size(batch: dict) -> int:
    if "labels" in batch and isinstance(batch["labels"], torch.Tensor):
        return int(batch["labels"].shape[0])
    for value in batch.values():
        if isinstance(value, torch.Tensor) and value.ndim > 0:
            return int(value.shape[0])
    return 1
