"""On a CUDA machine: a bf16 fold of every deep model on generated data, channels_last + compile for the resnet,
the MLM pretraining step, a 2-GPU NCCL fold when two GPUs exist, and every benchmark at a small size."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from common import cv
from common.registry import create_model, list_models
from common.store import RunStore
from tests.common.conftest import free_port, run_python
from tests.gpu.conftest import N_GPUS

REPO = Path(__file__).resolve().parents[2]
GPU = {"device": "cuda", "amp": "bf16", "quiet": True, "num_workers": 2}


@pytest.fixture(scope="module")
def news(tmp_path_factory):
    from competitions.news_text_cls.competition import NewsCompetition
    from competitions.news_text_cls.synth import write_demo

    data_dir = write_demo(tmp_path_factory.mktemp("news"), n_train=600, n_test=100, seed=0)
    comp = NewsCompetition()
    return comp, comp.load_train(data_dir), comp.load_test(data_dir), data_dir


@pytest.fixture(scope="module")
def street(tmp_path_factory):
    from competitions.street_char_rec.competition import StreetCompetition
    from competitions.street_char_rec.synth import write_dataset

    data_dir = tmp_path_factory.mktemp("street") / "data"
    write_dataset(data_dir, n_train=300, n_val=100, n_test=50, seed=0, workers=4)
    comp = StreetCompetition()
    return comp, comp.load_train(data_dir), comp.load_test(data_dir), data_dir


def _fold(comp, data, test, model, tmp_path) -> dict:
    folds = np.arange(len(data.y)) % 3
    metrics = cv.run_fold(model, data, folds, 0, RunStore(tmp_path), comp, test)
    assert np.isfinite(metrics["score"])
    return metrics


NEWS_GPU = {
    "textcnn": {"epochs": 2, "max_len": 256},
    "lstm": {"epochs": 2, "max_len": 256},
    "fasttext": {"epochs": 2},
}


@pytest.mark.parametrize("name", sorted(set(NEWS_GPU) & set(list_models())))
def test_bf16_fold_of_each_news_model(news, name, tmp_path):
    comp, data, test, _ = news
    model = create_model(name, **GPU, **NEWS_GPU[name])
    metrics = _fold(comp, data, test, model, tmp_path)
    assert metrics["score"] > 0.2  # learns something in two epochs on demo data


def test_bf16_bert_fold_after_a_cuda_mlm_pretraining(news, tmp_path):
    from common.config import build_config
    from competitions.news_text_cls import pretrain as pt

    comp, data, test, data_dir = news
    config = build_config(pt.PretrainConfig, {"size": "mini", "num_layers": 2, "block_len": 128, "max_steps": 30,
                                              "checkpoint_every_steps": 10, "eval_every_steps": 10, "batch_size": 16,
                                              "device": "cuda", "amp": "bf16", "quiet": True})  # fmt: skip
    summary = pt.pretrain(config, data_dir, tmp_path / "pretrained")
    losses = [r["valid_loss"] for r in summary["history"] if "valid_loss" in r]
    assert losses[-1] < losses[0]
    model = create_model(
        "bert", pretrained=str(tmp_path / "pretrained"), segment_len=128, epochs=1, batch_size=16, **GPU
    )
    _fold(comp, data, test, model, tmp_path / "run")


STREET_GPU = {
    "cnn": {"width": 16},
    "resnet": {"backbone": "resnet18"},
    "crnn": {"backbone": "small", "col_stride": 8, "width": 16, "seq": "lstm"},
    "detector": {"width": 16, "tta": 1},
}


@pytest.mark.parametrize("name", sorted(STREET_GPU))
def test_bf16_fold_of_each_street_model(street, name, tmp_path):
    comp, data, test, _ = street
    model = create_model(name, img_h=32, img_w=64, epochs=2, batch_size=64, **GPU, **STREET_GPU[name])
    _fold(comp, data, test, model, tmp_path)


def test_resnet_channels_last_and_compile(street, tmp_path):
    comp, data, test, _ = street
    model = create_model(
        "resnet", img_h=32, img_w=64, epochs=2, batch_size=64, channels_last=True, compile=True, **GPU
    )
    _fold(comp, data, test, model, tmp_path)


@pytest.mark.parametrize(
    "name, extra",
    [
        ("crnn", {"col_stride": 8, "decode": "beam"}),  # the default resnet18, 8 frames of a 64-pixel width
        ("detector", {"backbone": "resnet18", "arch": "retinanet", "min_stride": 8}),
    ],
)
def test_string_decoders_on_a_timm_backbone(street, name, extra, tmp_path):
    """The CTC reader and the detector with a timm backbone in bf16; the stored fold model reloads and its strings
    are the decode of the stored probabilities (exact on the CPU tests; here up to GPU non-determinism)."""
    comp, data, test, _ = street
    model = create_model(name, img_h=32, img_w=64, epochs=2, batch_size=64, **GPU, **extra)
    _fold(comp, data, test, model, tmp_path)
    loaded = RunStore(tmp_path).load_model(0)
    stored = np.load(tmp_path / "fold0" / "test.npy")
    assert np.mean(comp.predictions(stored) == loaded.predict(test.X)) >= 0.95


@pytest.mark.skipif(N_GPUS < 2, reason="needs two GPUs")
def test_two_gpu_nccl_fold_under_torchrun(news, tmp_path):
    _, _, _, data_dir = news
    args = ["-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
            "--master_port", str(free_port()), "-m", "competitions.news_text_cls", "train", "--model", "textcnn",
            "--data-dir", str(data_dir), "--run-dir", "run", "--folds", "3", "--fold", "0", "--quiet",
            "--set", "epochs=2", "--set", "amp=bf16", "--set", "max_len=256"]  # fmt: skip
    result = run_python(args, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "run/fold0/metrics.json").is_file()


#: every benchmark at a small size on the GPU: script, arguments, the keys each JSON line must have
BENCHES = [
    (
        "bench/news_throughput.py",
        ["--device", "cuda", "--n-docs", "2000", "--max-len", "256", "--batch-size", "64"],
    ),
    (
        "bench/street_throughput.py",
        [
            "--device",
            "cuda",
            "--n-images",
            "1024",
            "--batch-size",
            "128",
            "--workers",
            "4",
            "--bf16",
            "--channels-last",
        ],
    ),  # fmt: skip
    (
        "bench/news_mlm_throughput.py",
        [
            "--size",
            "mini",
            "--layers",
            "2",
            "--seq-len",
            "128",
            "--batch-size",
            "16",
            "--steps",
            "5",
            "--device",
            "cuda",
            "--workers",
            "2",
            "--n-docs",
            "400",
        ],
    ),  # fmt: skip
    ("bench/news_tfidf.py", ["--n-train", "2000", "--n-test", "500", "--skip-reference"]),
    (
        "bench/news_models.py",
        ["--methods", "datawhale_ridge,tfidf,fasttext,textcnn,lstm", "--folds", "2"]
        + [
            f"--set={m}:{kv}"
            for m in ("fasttext", "textcnn", "lstm")
            for kv in ("device=cuda", "amp=bf16", "epochs=2")
        ],
    ),
]


@pytest.mark.parametrize("script, args", BENCHES, ids=[Path(b[0]).stem for b in BENCHES])
def test_every_bench_prints_json_lines(script, args, tmp_path):
    if not (REPO / script).is_file():
        pytest.skip(f"{script} is not in this checkout")
    extra = (
        ["--data-dir", str(tmp_path / "data")] if "news_tfidf" in script or "news_models" in script else []
    )
    if "news_models" in script:  # a generated set with its test labels
        from competitions.news_text_cls.synth import write_demo

        write_demo(tmp_path / "data", n_train=2000, n_test=500, seed=0)
    done = subprocess.run([sys.executable, str(REPO / script), *args, *extra], cwd=tmp_path, capture_output=True,
                          text=True, timeout=900, env={**__import__("os").environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, done.stdout[-2000:]
    assert all(isinstance(line, dict) and line for line in lines)
    assert not [line for line in lines if "error" in line or "skipped" in line], lines


def test_cuda_is_what_the_trainer_uses():
    from common.trainer import Trainer, TrainerConfig

    trainer = Trainer(TrainerConfig(device="auto", amp="auto"))
    assert trainer.device.type == "cuda" and trainer.amp_dtype == torch.bfloat16
