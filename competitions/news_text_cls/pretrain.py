"""The ``pretrain`` verb: BERT masked-language-model pretraining from scratch on the contest's train + test text.

``python -m competitions.news_text_cls pretrain --data-dir D --out P [--size mini|small|base] [--set key=value ...]``

Labels are never read. The vocabulary comes from the corpus ids (:mod:`.tokenizer`); documents are packed into
full-length blocks and masked dynamically (:mod:`.pretraining.packing`); the shared trainer runs ``max_steps``
optimizer steps, writes ``P/checkpoints/last.pt`` every ``checkpoint_every_steps`` steps and scores the held-out
blocks every ``eval_every_steps`` steps, so a killed run started again with the same command continues from its
last checkpoint. ``P`` ends up holding ``config.yaml`` (this verb's resolved config), the model
(``save_pretrained``: ``config.json``, ``model.safetensors``), the tokenizer files, and ``pretrain.json``
(summary, written last: the completion marker).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import Field
from transformers import BertForMaskedLM, DataCollatorForLanguageModeling

from common import distributed
from common.atomic import write_json
from common.config import (
    ConfigBase,
    Fraction,
    NonNegativeInt,
    PositiveInt,
    flat_keys,
    leaves,
    resolve,
    save_config,
    trainer_defaults,
)
from common.distributed import resolve_device
from common.errors import UserError
from common.metrics import Metric
from common.seed import seed_everything
from common.store import BEST, RESUME
from common.trainer import Trainer, TrainerConfig
from competitions.news_text_cls import tokenizer as tok
from competitions.news_text_cls.data import TEST_FILES, TRAIN_FILE, read_test, read_train
from competitions.news_text_cls.pretraining import packing
from competitions.news_text_cls.pretraining.model import MaskedLM, bert_config, masked_accuracy

DEFAULT_LR = {"mini": 5e-4, "small": 3e-4, "base": 1e-4}


@dataclass
class PretrainConfig(ConfigBase):
    size: Literal["mini", "small", "base"] = "small"
    #: override the preset's dimensions (tests use tiny models)
    num_layers: PositiveInt | None = None
    hidden_size: PositiveInt | None = None
    num_heads: PositiveInt | None = None
    intermediate_size: PositiveInt | None = None
    dropout: Fraction = 0.1
    #: tokens per block including [CLS] and [SEP]; also the model's number of positions
    block_len: Annotated[int, Field(ge=8)] = 512
    min_count: PositiveInt = 2
    mlm_probability: Annotated[float, Field(gt=0, lt=1)] = 0.15
    #: held-out blocks for MLM loss / masked-token accuracy (at most a tenth of the blocks)
    eval_blocks: NonNegativeInt = 256
    #: lr None: 5e-4 mini, 3e-4 small, 1e-4 base; max_steps None: ``epochs`` passes over the blocks
    trainer: TrainerConfig = trainer_defaults(
        max_steps=10_000,
        checkpoint_every_steps=500,
        eval_every_steps=500,
        batch_size=128,
        lr=None,
        weight_decay=0.01,
        scheduler="linear",
        warmup_ratio=0.06,
        num_workers=2,
    )

    def trainer_config(self) -> TrainerConfig:
        """The trainer config as it runs: the size's lr when none is set."""
        return (
            self.trainer if self.trainer.lr is not None else replace(self.trainer, lr=DEFAULT_LR[self.size])
        )


MASKED_ACCURACY = Metric("masked_accuracy", masked_accuracy)


def default_out(size: str) -> Path:
    return Path("runs") / "news_text_cls" / f"pretrained-{size}"


def is_pretrained(out: str | Path) -> bool:
    return (Path(out) / "pretrain.json").is_file()


# ------------------------------------------------------------------------------------------------ data
def read_corpus(data_dir: str | Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(flat ids, document lengths)`` of the training file and every test file present (labels unused)."""
    data_dir = Path(data_dir)
    corpora = [read_train(data_dir / TRAIN_FILE)[0]]
    corpora += [read_test(data_dir / name) for name in TEST_FILES if (data_dir / name).is_file()]
    return [(c.flat, c.lengths) for c in corpora]


def build_blocks(corpus: list[tuple[np.ndarray, np.ndarray]], tokenizer, block_len: int) -> np.ndarray:
    lookup = tok.id_lookup(tokenizer)
    streams = [packing.doc_stream(tok.encode(flat, lookup), lengths) for flat, lengths in corpus]
    return packing.pack_blocks(streams, block_len)


# ------------------------------------------------------------------------------------------------ pretraining
def pretrain(
    config: PretrainConfig, data_dir: str | Path, out: str | Path, *, force: bool = False, callbacks=()
) -> dict:
    """Pretrain into ``out`` (resuming from ``out/checkpoints`` when it holds a run of the same config)."""
    out = Path(out)
    ckpt_dir = out / "checkpoints"
    _check_out(config, out, force)
    main = (
        distributed.is_main_process()
    )  # under torchrun only rank 0 writes; the tokenizer is rebuilt per rank
    if main:
        save_config(config, out / "config.yaml")
    say = (lambda *a: None) if config.trainer.quiet else (lambda *a: print(*a, file=sys.stderr, flush=True))

    started = time.perf_counter()
    corpus = read_corpus(data_dir)
    tok_dir = ckpt_dir / "tokenizer"
    if (tok_dir / "tokenizer.json").is_file():
        tokenizer = tok.load_tokenizer(tok_dir)
    else:
        tokenizer = tok.build_tokenizer(
            *(flat for flat, _ in corpus), min_count=config.min_count, model_max_length=config.block_len
        )
        if main:
            _save_dir(lambda d: tokenizer.save_pretrained(str(d)), tok_dir)
    blocks = build_blocks(corpus, tokenizer, config.block_len)
    del corpus
    train_idx, eval_idx = packing.split_blocks(len(blocks), config.eval_blocks, config.trainer.seed)
    n_ids = int(blocks.size)
    say(
        f"pretrain: vocab {len(tokenizer)}, {len(blocks)} blocks of {config.block_len} "
        f"({n_ids / 1e6:.1f}M ids, {len(eval_idx)} held out), read and packed in "
        f"{time.perf_counter() - started:.1f}s"
    )

    cfg = config.trainer_config()
    seed_everything(cfg.seed)
    model = BertForMaskedLM(
        bert_config(
            len(tokenizer),
            config.size,
            num_layers=config.num_layers,
            hidden_size=config.hidden_size,
            num_heads=config.num_heads,
            intermediate_size=config.intermediate_size,
            max_positions=config.block_len,
            dropout=config.dropout,
        )
    )
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=config.mlm_probability)
    on_cuda = resolve_device(cfg.device).type == "cuda"
    steps = cfg.max_steps or cfg.epochs * max(1, len(train_idx) // cfg.batch_size)
    train_loader = packing.train_loader(
        blocks[train_idx],
        collator,
        cfg.batch_size,
        steps * cfg.grad_accum,
        cfg.seed,
        num_workers=cfg.num_workers,
        pin_memory=on_cuda,
    )
    valid_loader = (
        packing.eval_loader(blocks[eval_idx], collator, cfg.batch_size, cfg.seed) if len(eval_idx) else None
    )
    trainer = Trainer(
        replace(cfg, max_steps=steps),
        metric=MASKED_ACCURACY,
        work_dir=ckpt_dir,
        callbacks=callbacks,
        tokens_key="input_ids",
    )
    module = trainer.fit(MaskedLM(model), train_loader, valid_loader)
    module.to("cpu")
    last = next((r for r in reversed(trainer.history) if "valid_score" in r), {})
    summary = {
        "steps": steps,
        "tokens_seen": steps * cfg.grad_accum * cfg.batch_size * config.block_len,
        "vocab_size": len(tokenizer),
        "blocks": len(blocks),
        "held_out_blocks": len(eval_idx),
        "held_out_loss": last.get("valid_loss"),
        "held_out_masked_accuracy": last.get("valid_score"),
        "best_masked_accuracy": max((r.get("valid_score", -1.0) for r in trainer.history), default=None),
        "seconds": round(time.perf_counter() - started, 1),
        "history": trainer.history,
    }

    def save(d: Path) -> None:
        module.model.save_pretrained(str(d))
        tokenizer.save_pretrained(str(d))

    if not main:
        return summary
    _save_dir(save, out / ".staging", into=out)
    write_json(out / "pretrain.json", summary)
    for name in (RESUME, BEST):  # optimizer state is moot once the model is saved
        (ckpt_dir / name).unlink(missing_ok=True)
    say(f"pretrained model and tokenizer saved in {out}")
    return summary


def _check_out(config: PretrainConfig, out: Path, force: bool) -> None:
    """Refuse to resume or reuse a run of another config; ``force`` starts afresh."""
    if force:
        for name in ("checkpoints", "pretrain.json", "config.json"):
            path = out / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        return
    saved = out / "config.yaml"
    if not saved.is_file() or not ((out / "checkpoints").exists() or is_pretrained(out)):
        return
    try:
        old = flat_keys(resolve(PretrainConfig, saved))
    except UserError:
        old = {"(unreadable)": str(saved)}
    new = flat_keys(config)
    differ = sorted(
        k for k in set(old) | set(new) if k not in TrainerConfig.RUNTIME_KEYS and old.get(k) != new.get(k)
    )
    if differ:
        raise UserError(
            f"{saved}: {out} holds a pretraining run with a different config ({', '.join(differ)}); "
            "pass --force to start afresh or choose another --out"
        )


def _save_dir(writer, staging: Path, into: Path | None = None) -> None:
    """Write a directory's files into ``staging`` then move them into place (``config.json`` last); without
    ``into``, ``staging`` itself is renamed into place."""
    tmp = staging.with_name(staging.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    writer(tmp)
    if into is None:
        shutil.rmtree(staging, ignore_errors=True)
        os.replace(tmp, staging)
        return
    names = sorted(p.name for p in tmp.iterdir())
    for name in sorted(names, key=lambda n: n == "config.json"):
        os.replace(tmp / name, into / name)
    tmp.rmdir()


# ------------------------------------------------------------------------------------------------ CLI verb
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", help="folder with train_set.csv and test_a.csv/test_b.csv (or $DATA_DIR)"
    )
    parser.add_argument("--out", help="output folder (default runs/news_text_cls/pretrained-<size>)")
    parser.add_argument("--size", choices=sorted(DEFAULT_LR), help="model size preset (default small)")
    parser.add_argument("--config", help="YAML file of PretrainConfig keys")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"config override; keys: {', '.join(p[-1] for p in leaves({'config': PretrainConfig}))}",
    )
    parser.add_argument("--force", action="store_true", help="discard checkpoints and pretrain afresh")
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def run(args: argparse.Namespace) -> int:
    overrides = list(args.set or [])
    if args.size:
        overrides.append(f"size={args.size}")
    if args.quiet:
        overrides.append("trainer.quiet=true")
    config = resolve(PretrainConfig, args.config, overrides)
    given = args.data_dir or os.environ.get("DATA_DIR")
    data_dir = Path(given) if given else Path("data") / "news_text_cls"
    if not data_dir.is_dir():
        raise UserError(f"data directory not found: {data_dir} (pass --data-dir or set DATA_DIR)")
    out = Path(args.out) if args.out else default_out(config.size)
    if is_pretrained(out) and not args.force:
        _check_out(config, out, force=False)
        print(f"{out} is already pretrained (pretrain.json present); --force to redo it")
        return 0
    summary = pretrain(config, data_dir, out, force=args.force)
    acc = summary["held_out_masked_accuracy"]
    if not distributed.is_main_process():
        return 0
    print(
        f"pretrained {summary['steps']} steps ({summary['tokens_seen'] / 1e6:.1f}M tokens) in "
        f"{summary['seconds']:.0f}s; held-out masked accuracy {acc if acc is None else f'{acc:.4f}'}; saved in {out}"
    )
    return 0
