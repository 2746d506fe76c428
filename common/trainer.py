"""The one PyTorch training loop every deep model shares, and :class:`TrainerConfig`, the one declaration of its
keys (models and pretraining hold it as their ``trainer`` field).

``module(batch)`` returns a dict with ``"loss"`` (when the batch holds ``"labels"``) and ``"logits"``; the trainer
never knows which model or loss it drives. It owns device placement, autocast (bf16 on CUDA, off on CPU unless
asked), gradient accumulation, clipping, the optimizer and warmup/decay schedule, validation with an injected
:class:`~common.metrics.Metric` (per epoch, or every ``eval_every_steps`` optimizer steps), early stopping,
best-checkpoint save/restore, checkpoints every epoch and every ``checkpoint_every_steps`` steps, resume after a
crash (mid-epoch too), optional EMA of weights, DistributedDataParallel under ``torchrun`` (each rank scores its
shard of the holdout; rank 0 alone writes), tqdm in a terminal and one plain line per epoch (and every
``log_every_steps`` steps) in a log.

Checkpoints hold tensors and plain Python values only, and are read with ``torch.load(weights_only=True)``: a
planted pickle cannot run code, it is refused with an error naming the file.

Callbacks: a plain callable ``cb(epoch, record)`` runs after each epoch's checkpoint; an object may instead define
``on_epoch(epoch, record)`` and/or ``on_step(step, record)`` (after each optimizer step; ``record`` holds the step,
the running train loss and, on evaluation steps, the validation score). An exception a callback raises stops
training and propagates.
"""

from __future__ import annotations

import contextlib
import json
import math
import pickle
import random
import sys
import time
import zipfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import AfterValidator, Field
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from common import distributed as dist_utils
from common.atomic import atomic_path
from common.config import (
    ConfigBase,
    Fraction,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
)
from common.errors import UserError
from common.metrics import Metric
from common.store import BEST, LOG, RESUME

#: transformers.get_scheduler names usable with a step-only loop (no metric-driven or extra-argument schedules)
SCHEDULERS = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
    "warmup_stable_decay",
)
#: a validation that tracks the loss instead of a metric
LOSS = Metric("loss", lambda y, s: float("nan"), greater_is_better=False)


def _check_device(name: str) -> str:
    try:
        dist_utils.resolve_device(name, check=True)
    except UserError as exc:
        raise ValueError(str(exc)) from None
    return name


@dataclass
class TrainerConfig(ConfigBase):
    """Every key of the training loop, declared here once."""

    #: keys that change how a run executes or reports, not what it computes (``compile`` runs the same model
    #: faster): a resumed or re-run fold, or a resumed pretraining, may differ in them, and the leaderboard does
    #: not show them as params
    RUNTIME_KEYS: ClassVar[frozenset[str]] = frozenset(
        {"quiet", "num_workers", "device", "compile", "log_every_steps"}
    )

    epochs: PositiveInt = 5
    #: stop after this many optimizer steps (the schedule spans them); None: ``epochs`` full passes
    max_steps: PositiveInt | None = None
    batch_size: PositiveInt = 64
    #: None: the model's size-dependent default (BERT fine-tuning and pretraining)
    lr: PositiveFloat | None = 1e-3
    weight_decay: NonNegativeFloat = 0.0
    scheduler: Literal[SCHEDULERS] = "cosine"
    warmup_ratio: Fraction = 0.0
    #: warmup_stable_decay: the share of the steps, at the end, over which the lr decays (cosine) to 0 after
    #: holding its peak since the warmup (at most what the warmup leaves)
    decay_ratio: Fraction = 0.2
    grad_accum: PositiveInt = 1
    clip_grad: PositiveFloat | None = 1.0
    #: auto: bf16 on CUDA, off on CPU
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"
    #: early stopping: evaluations without improvement of the validation score
    patience: PositiveInt | None = None
    ema_decay: Annotated[float, Field(gt=0, lt=1)] | None = None
    #: share of the training rows held out inside ``fit`` for validation scores, early stopping and the best
    #: checkpoint when no ``X_valid`` is given (0: train on every row for a fixed number of epochs)
    valid_size: Fraction = 0.1
    #: validate every N optimizer steps (None: at the end of each epoch)
    eval_every_steps: PositiveInt | None = None
    #: also write the resume checkpoint every N optimizer steps (it is always written at the end of an epoch)
    checkpoint_every_steps: PositiveInt | None = None
    #: without a terminal, a progress line every N optimizer steps (0: about ten per epoch on epochs of 200+ steps)
    log_every_steps: NonNegativeInt = 0
    num_workers: NonNegativeInt = 0
    #: auto (this rank's GPU when there is one, else the CPU), cpu, cuda, cuda:N, mps
    device: Annotated[str, AfterValidator(_check_device)] = "auto"
    channels_last: bool = False
    compile: bool = False
    seed: int = 42
    deterministic: bool = False
    quiet: bool = False


class Trainer:
    def __init__(
        self,
        config: TrainerConfig,
        metric: Metric | None = None,
        work_dir: str | Path | None = None,
        callbacks: Iterable = (),
        tokens_key: str | None = None,
    ) -> None:
        if config.lr is None:
            raise ValueError("TrainerConfig.lr is None: the model must resolve its default lr first")
        self.config = config
        self.metric = metric
        self.work_dir = Path(work_dir) if work_dir else None
        self.callbacks = list(callbacks)
        #: batch key whose element count is the tokens of a step (tokens/s in progress lines)
        self.tokens_key = tokens_key
        self.device = dist_utils.resolve_device(config.device)
        self.history: list[dict] = []
        #: seconds spent before this process resumed the run (0 for a fresh run)
        self.resumed_seconds = 0.0

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

        cfg = self.config
        warmup = int(round(cfg.warmup_ratio * total_steps))
        extra = {}
        if cfg.scheduler == "warmup_stable_decay":
            # rounded after the warm-up's steps, so the two never add up to more than the run
            extra = {"num_decay_steps": min(int(round(cfg.decay_ratio * total_steps)), total_steps - warmup)}
        return get_scheduler(
            cfg.scheduler, optimizer, num_warmup_steps=warmup, num_training_steps=max(total_steps, 1),
            scheduler_specific_kwargs=extra,
        )  # fmt: skip

    @staticmethod
    def _sharded(loader: DataLoader, drop_uneven: bool) -> DataLoader:
        """This rank's share of ``loader``: every ``world``-th item of its own (batch) sampler, so length bucketing,
        block samplers and their ``set_epoch`` keep working (every rank draws the same order, which seeding each
        rank alike guarantees). Training drops the uneven tail (all ranks must step together); evaluation keeps
        every item."""
        rank, world = dist_utils.rank(), dist_utils.world_size()
        common = {
            "collate_fn": loader.collate_fn,
            "num_workers": loader.num_workers,
            "pin_memory": loader.pin_memory,
            "worker_init_fn": loader.worker_init_fn,
            "generator": loader.generator,
        }
        if loader.batch_sampler is not None:
            sharded = ShardedSampler(loader.batch_sampler, rank, world, drop_uneven)
            return DataLoader(loader.dataset, batch_sampler=sharded, **common)
        sharded = ShardedSampler(loader.sampler, rank, world, drop_uneven)
        return DataLoader(loader.dataset, batch_size=None, sampler=sharded, **common)

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
    def load_checkpoint(path: Path) -> dict:
        """A checkpoint written by this trainer; anything else (a planted pickle, a foreign file) is refused
        without running it."""
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(
                f"{path}: not a checkpoint this trainer can load safely ({reason[:200]}); "
                "delete it or retrain with --force"
            ) from None

    @staticmethod
    def _rng_state(loader: DataLoader) -> dict:
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        state = {
            "python": random.getstate(),
            "numpy": {
                "kind": kind,
                "keys": torch.from_numpy(keys.astype(np.int64)),
                "pos": int(pos),
                "has_gauss": int(has_gauss),
                "cached": float(cached),
            },
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
        random.setstate(_as_tuple(state["python"]))
        np_state = state["numpy"]
        np.random.set_state(
            (
                np_state["kind"],
                np_state["keys"].numpy().astype(np.uint32),
                np_state["pos"],
                np_state["has_gauss"],
                np_state["cached"],
            )
        )
        torch.set_rng_state(state["torch"])
        if state.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        for owner in ("generator", "sampler"):
            gen = loader.generator if owner == "generator" else getattr(loader.sampler, "generator", None)
            if isinstance(gen, torch.Generator) and f"{owner}_gen" in state:
                gen.set_state(state[f"{owner}_gen"])

    def _log(self, record: dict) -> None:
        path = self._path(LOG)
        if path is None or not dist_utils.is_main_process():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    # ------------------------------------------------------------------ progress
    @property
    def _interactive(self) -> bool:
        return sys.stderr.isatty()

    def _say(self, line: str) -> None:
        """A progress line (rank 0, not quiet): through tqdm in a terminal, plain stderr in a log."""
        if self.config.quiet or not dist_utils.is_main_process():
            return
        if self._interactive:
            tqdm.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

    def _progress(self, iterable, **kwargs):
        disable = self.config.quiet or not self._interactive or not dist_utils.is_main_process()
        return tqdm(iterable, disable=disable, leave=False, dynamic_ncols=True, **kwargs)

    def _log_every(self, steps_per_epoch: int) -> int:
        if self.config.log_every_steps:
            return self.config.log_every_steps
        return max(1, steps_per_epoch // 10) if steps_per_epoch >= 200 else 0

    # ------------------------------------------------------------------ loops
    def fit(
        self, model: nn.Module, train_loader: DataLoader, valid_loader: DataLoader | None = None
    ) -> nn.Module:
        """Train ``model`` and return it with the best weights loaded (best by validation score, else the last)."""
        run = _Run(self, model, train_loader, valid_loader)
        return run.train()

    def _step_batch(self, model, batch, scaler, sync: bool):
        """Forward and backward of one micro-batch; under DDP, gradients are all-reduced only when ``sync``."""
        ddp = _ddp_of(model)
        ctx = ddp.no_sync() if (ddp is not None and not sync) else contextlib.nullcontext()
        with ctx:
            with self._autocast():
                out = model(batch)
            loss = out["loss"]
            scaler.scale(loss / self.config.grad_accum).backward()
        return loss

    def _call(self, hook: str, index: int, record: dict) -> None:
        for callback in self.callbacks:
            method = getattr(callback, hook, None)
            if method is not None:
                method(index, record)
            elif hook == "on_epoch" and callable(callback) and not hasattr(callback, "on_step"):
                callback(index, record)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: DataLoader) -> tuple[float, np.ndarray, np.ndarray | None]:
        """Mean loss (nan without labels), stacked logits and labels over ``loader``, in its order. Under DDP each
        rank evaluates its share and the results are gathered, so every rank returns the whole."""
        model.eval()
        distributed = dist_utils.is_distributed() and dist_utils.is_initialized()
        if distributed:
            loader = self._sharded(loader, drop_uneven=False)
        parts = []
        for i, batch in enumerate(self._progress(loader, desc="eval")):
            batch = self._to_device(batch)
            with self._autocast():
                out = model(batch)
            bs = _batch_size(batch)
            loss = out.get("loss")
            parts.append(
                (
                    i,
                    float(loss) * bs if loss is not None else None,
                    bs,
                    out["logits"].float().cpu().numpy(),
                    batch["labels"].cpu().numpy() if "labels" in batch else None,
                )
            )
        if distributed:
            world, rank = dist_utils.world_size(), dist_utils.rank()
            gathered: list = [None] * world
            # rank r evaluated items r, r + world, ...: its k-th is item k * world + r of the loader
            torch.distributed.all_gather_object(gathered, [(p[0] * world + rank, *p[1:]) for p in parts])
            parts = sorted((p for chunk in gathered for p in chunk), key=lambda p: p[0])
        losses = [p[1] for p in parts if p[1] is not None]
        n = sum(p[2] for p in parts)
        valid_loss = sum(losses) / n if losses and n else float("nan")
        logits = np.concatenate([p[3] for p in parts]) if parts else np.zeros((0,))
        labels = [p[4] for p in parts if p[4] is not None]
        return valid_loss, logits, (np.concatenate(labels) if labels else None)

    def predict(self, model: nn.Module, loader: DataLoader) -> np.ndarray:
        """Logits for every row of ``loader`` (float32 numpy), in loader order."""
        model.to(self.device)
        return self.evaluate(model, loader)[1]


class _Run:
    """One call of :meth:`Trainer.fit`: the state of the loop, its checkpoints and its events."""

    def __init__(self, trainer: Trainer, model: nn.Module, train_loader, valid_loader) -> None:
        self.t = trainer
        cfg = self.cfg = trainer.config
        dist_utils.init_if_needed(trainer.device)
        model.to(trainer.device)
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        self.raw = model
        if dist_utils.is_distributed():
            train_loader = trainer._sharded(train_loader, drop_uneven=True)
            ids = [trainer.device.index] if trainer.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        self.model = torch.compile(model) if cfg.compile else model
        self.train_loader, self.valid_loader = train_loader, valid_loader
        self.optimizer = trainer._optimizer(self.raw)
        self.steps_per_epoch = max(1, math.ceil(len(train_loader) / cfg.grad_accum))
        self.total_steps = cfg.max_steps or self.steps_per_epoch * cfg.epochs
        self.n_epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        self.scheduler = trainer._scheduler(self.optimizer, self.total_steps)
        self.scaler = torch.amp.GradScaler(trainer.device.type, enabled=trainer.amp_dtype == torch.float16)
        self.ema = None
        if cfg.ema_decay:
            self.ema = torch.optim.swa_utils.AveragedModel(
                self.raw, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema_decay)
            )
        self.state: dict[str, Any] = {
            "epoch": 0,
            "step": 0,
            "batch_in_epoch": 0,
            "loss_sum": 0.0,
            "loss_count": 0,
            "best_score": None,
            "best_step": -1,
            "bad_evals": 0,
            "stopped": False,
            "seconds": 0.0,
        }
        self.best_weights: dict | None = None
        self.epoch_rng: dict | None = None
        self.log_every = trainer._log_every(self.steps_per_epoch)
        self.started = time.perf_counter()

    # -------------------------------------------------------------- checkpoints
    def _elapsed(self) -> float:
        return self.t.resumed_seconds + time.perf_counter() - self.started

    def _checkpoint(self) -> None:
        self.state["seconds"] = self._elapsed()
        self.t._save(
            RESUME,
            {
                "model": self.raw.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "state": dict(self.state),
                "history": self.t.history,
                "rng": self.t._rng_state(self.train_loader),
                "epoch_rng": self.epoch_rng,
                "config": asdict(self.cfg),
            },
        )

    def _resume(self) -> bool:
        path = self.t._path(RESUME)
        if path is None or not path.exists():
            return False
        ckpt = self.t.load_checkpoint(path)
        try:
            self.raw.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scheduler.load_state_dict(ckpt["scheduler"])
            self.scaler.load_state_dict(ckpt["scaler"])
            if self.ema is not None and ckpt.get("ema") is not None:
                self.ema.load_state_dict(ckpt["ema"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise UserError(
                f"{path}: does not fit this model and config ({str(exc).splitlines()[0][:200]}); "
                "delete it or retrain with --force"
            ) from None
        self.state.update(ckpt["state"])
        self.t.history = list(ckpt.get("history", []))
        self.t.resumed_seconds = float(self.state.get("seconds", 0.0))
        self.epoch_rng = ckpt.get("epoch_rng")
        self.resume_rng = ckpt["rng"]
        if self.state["batch_in_epoch"] == 0:  # stopped at an epoch boundary: continue from its RNG state
            self.t._set_rng_state(self.resume_rng, self.train_loader)
        return True

    # -------------------------------------------------------------- evaluation
    def _eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.raw

    def _evaluate(self, record: dict) -> None:
        """Validate, keep the best weights, count bad evaluations for early stopping."""
        if self.valid_loader is None:
            return
        eval_model = self._eval_model()
        valid_loss, logits, labels = self.t.evaluate(eval_model, self.valid_loader)
        self.model.train()
        record["valid_loss"] = valid_loss
        metric = self.t.metric if (self.t.metric is not None and labels is not None) else LOSS
        score = float(metric(labels, logits)) if metric is not LOSS else valid_loss
        record["valid_score"] = score
        best = self.state["best_score"]
        if best is None or metric.better(score, best):
            self.state.update(best_score=score, best_step=self.state["step"], bad_evals=0)
            self.best_weights = {
                k: v.detach().to("cpu", copy=True) for k, v in eval_model.state_dict().items()
            }
            self.t._save(BEST, {"model": self.best_weights, "step": self.state["step"], "score": score})
        else:
            self.state["bad_evals"] += 1
            if self.cfg.patience is not None and self.state["bad_evals"] >= self.cfg.patience:
                self.state["stopped"] = True

    # -------------------------------------------------------------- the loop
    def train(self) -> nn.Module:
        resumed = self._resume()
        while (
            self.state["epoch"] < self.n_epochs
            and not self.state["stopped"]
            and self.state["step"] < self.total_steps
        ):
            self._epoch(resume_mid_epoch=resumed and self.state["batch_in_epoch"] > 0)
            resumed = False
        if self.best_weights is None and (best := self.t._path(BEST)) is not None and best.exists():
            self.best_weights = self.t.load_checkpoint(best)["model"]
        if self.best_weights is not None:
            self.raw.load_state_dict(self.best_weights)
        elif self.ema is not None:
            self.raw.load_state_dict(self.ema.module.state_dict())
        return self.raw

    def _set_epoch(self, epoch: int) -> None:
        for owner in (self.train_loader.sampler, self.train_loader.batch_sampler):
            if hasattr(owner, "set_epoch"):
                owner.set_epoch(epoch)

    def _epoch(self, resume_mid_epoch: bool) -> None:
        t, cfg, state = self.t, self.cfg, self.state
        epoch = state["epoch"]
        self._set_epoch(epoch)
        skip = 0
        if resume_mid_epoch and self.epoch_rng is not None:
            # replay the epoch's order from its start, skip the batches already trained, then continue from the
            # RNG state of the checkpoint: the run continues as if it had never stopped
            t._set_rng_state(self.epoch_rng, self.train_loader)
            skip = state["batch_in_epoch"]
        else:
            self.epoch_rng = t._rng_state(self.train_loader)
            state.update(batch_in_epoch=0, loss_sum=0.0, loss_count=0)
        model, loader = self.model, self.train_loader
        model.train()
        n_batches = len(loader)
        total = torch.zeros((), device=t.device)  # summed on device: no host sync per step
        count, tokens, items = 0, 0, 0
        epoch_started = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        # a sampler that can start mid-epoch skips without loading; otherwise the trained batches are loaded and
        # dropped (which also replays the data RNG exactly)
        fast = bool(skip) and any(
            getattr(owner, "skip_next", lambda n: False)(skip)
            for owner in (loader.batch_sampler, loader.sampler)
        )
        bar = t._progress(loader, desc=f"epoch {epoch + 1}/{self.n_epochs}", total=n_batches, initial=skip)
        iterator = iter(bar)
        if not fast:
            for _ in range(skip):
                next(iterator)
        if skip:
            t._set_rng_state(self.resume_rng, loader)
        for i, batch in enumerate(iterator, start=skip):
            batch = t._to_device(batch)
            last_in_step = (i + 1) % cfg.grad_accum == 0 or i + 1 == n_batches
            loss = t._step_batch(model, batch, self.scaler, sync=last_in_step)
            bs = _batch_size(batch)
            total += loss.detach().float() * bs
            count += bs
            items += bs
            if t.tokens_key is not None and t.tokens_key in batch:
                tokens += batch[t.tokens_key].numel()
            if not last_in_step:
                continue
            self._optimizer_step(model)
            state["step"] += 1
            state["batch_in_epoch"] = i + 1
            if not bar.disable and state["step"] % 20 == 0:
                postfix = {
                    "loss": f"{(state['loss_sum'] + float(total)) / max(state['loss_count'] + count, 1):.4f}"
                }
                if tokens:
                    postfix["tok/s"] = f"{tokens / max(time.perf_counter() - epoch_started, 1e-9):,.0f}"
                bar.set_postfix(postfix)
            step_record = self._after_step(total, count, items, tokens, epoch_started)
            if step_record is not None:  # its sums are folded into the state
                total.zero_()
                count = 0
            if state["stopped"] or state["step"] >= self.total_steps:
                break
        state["loss_sum"] += float(total)
        state["loss_count"] += count
        seconds = time.perf_counter() - epoch_started
        record: dict[str, Any] = {
            "epoch": epoch,
            "step": state["step"],
            "train_loss": state["loss_sum"] / max(state["loss_count"], 1),
            "lr": self.optimizer.param_groups[0]["lr"],
        }
        if cfg.eval_every_steps is None and not state["stopped"]:
            self._evaluate(record)
        record["seconds"] = seconds
        record["items_per_s"] = items / max(seconds, 1e-9)
        if tokens:
            record["tokens_per_s"] = tokens / max(seconds, 1e-9)
        state["epoch"] = epoch + 1
        state["batch_in_epoch"] = 0
        t.history.append(record)
        t._log(record)
        t._say(_line(f"epoch {epoch + 1}/{self.n_epochs}", record))
        self._checkpoint()
        t._call("on_epoch", epoch, record)

    def _optimizer_step(self, model) -> None:
        cfg, scaler, optimizer = self.cfg, self.scaler, self.optimizer
        if cfg.clip_grad:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
        scaler.step(optimizer)
        scaler.update()
        self.scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update_parameters(_unwrap(model))

    def _after_step(self, total, count, items, tokens, epoch_started) -> dict | None:
        """Step events: progress line, evaluation and checkpoint every N steps, step callbacks. Returns the record
        when the running loss was folded into the state (a checkpoint needs it there)."""
        t, cfg, state = self.t, self.cfg, self.state
        step = state["step"]
        evaluate = cfg.eval_every_steps is not None and (
            step % cfg.eval_every_steps == 0 or step == self.total_steps
        )
        checkpoint = cfg.checkpoint_every_steps is not None and step % cfg.checkpoint_every_steps == 0
        log = bool(self.log_every) and step % self.log_every == 0 and not t._interactive
        wants_step = any(hasattr(c, "on_step") for c in t.callbacks)
        if not (evaluate or checkpoint or log or wants_step):
            return None
        state["loss_sum"] += float(total)
        state["loss_count"] += count
        seconds = time.perf_counter() - epoch_started
        record: dict[str, Any] = {
            "epoch": state["epoch"],
            "step": step,
            "train_loss": state["loss_sum"] / max(state["loss_count"], 1),
            "lr": self.optimizer.param_groups[0]["lr"],
            "items_per_s": items / max(seconds, 1e-9),
        }
        if tokens:
            record["tokens_per_s"] = tokens / max(seconds, 1e-9)
        if evaluate:
            self._evaluate(record)
            t.history.append(record)
            t._log(record)
        if evaluate or log:
            t._say(_line(f"step {step}/{self.total_steps}", record))
        if checkpoint or evaluate:
            self._checkpoint()
        t._call("on_step", step, record)
        return record


class ShardedSampler:
    """Rank ``rank``'s share of a (batch) sampler: items ``rank, rank + world, ...``. With ``drop_uneven`` every
    rank gets the same count (training: ranks step together); without, every item goes to some rank (evaluation)."""

    def __init__(self, sampler, rank: int, world: int, drop_uneven: bool = True) -> None:
        self.sampler, self.rank, self.world, self.drop_uneven = sampler, rank, world, drop_uneven

    def __len__(self) -> int:
        n = len(self.sampler)
        if self.drop_uneven:
            return n // self.world
        return len(range(self.rank, n, self.world))

    def __iter__(self):
        limit = (len(self.sampler) // self.world) * self.world if self.drop_uneven else math.inf
        for i, item in enumerate(self.sampler):
            if i >= limit:
                break
            if i % self.world == self.rank:
                yield item

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def skip_next(self, n: int) -> bool:
        """Skip this rank's next ``n`` items (``n * world`` of the inner sampler's), when the inner sampler can."""
        skip = getattr(self.sampler, "skip_next", None)
        return bool(skip(n * self.world)) if skip is not None else False

    @property
    def generator(self):
        return getattr(self.sampler, "generator", None)


def _ddp_of(model: nn.Module) -> nn.parallel.DistributedDataParallel | None:
    """The DistributedDataParallel wrapper inside ``model`` (under a ``torch.compile`` wrapper too), if any."""
    inner = getattr(model, "_orig_mod", model)
    return inner if isinstance(inner, nn.parallel.DistributedDataParallel) else None


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


def _as_tuple(value):
    """``random.setstate`` wants tuples where a checkpoint may hold lists."""
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list | tuple) else value


def _line(prefix: str, record: dict) -> str:
    parts = [prefix, f"train_loss {record['train_loss']:.4f}"]
    if "valid_loss" in record and not math.isnan(record["valid_loss"]):
        parts.append(f"valid_loss {record['valid_loss']:.4f}")
    if "valid_score" in record:
        parts.append(f"valid_score {record['valid_score']:.5f}")
    parts.append(f"lr {record['lr']:.3g}")
    if "seconds" in record:
        parts.append(f"{record['seconds']:.1f}s")
    parts.append(f"{record['items_per_s']:,.0f} items/s")
    if "tokens_per_s" in record:
        parts.append(f"{record['tokens_per_s']:,.0f} tokens/s")
    return ", ".join(parts)
