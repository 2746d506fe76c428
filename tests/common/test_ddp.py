"""DDP on CPU: two processes under torchrun (gloo) train through ``common.trainer``; both end with identical
weights and only rank 0 writes artefacts. Also the real CLI under torchrun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import torch

from tests.common.conftest import free_port, run_python, subprocess_env


def _torchrun(*args: str) -> list[str]:
    return [
        "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(free_port()), *args,
    ]  # fmt: skip


def test_two_ranks_end_identical_and_only_rank0_writes(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    result = run_python(_torchrun("-m", "tests.common.ddp_worker", str(out)), cwd=tmp_path, timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    w0 = torch.load(out / "weights_rank0.pt", weights_only=True)
    w1 = torch.load(out / "weights_rank1.pt", weights_only=True)
    for key in w0:
        assert torch.equal(w0[key], w1[key]), key
    assert torch.equal(torch.load(out / "proba_rank0.pt"), torch.load(out / "proba_rank1.pt"))
    assert (out / "rank0" / "best.pt").is_file() and (out / "rank0" / "log.jsonl").is_file()
    assert len((out / "rank0" / "log.jsonl").read_text().splitlines()) == 3
    assert not (out / "rank1").exists()


def test_cli_under_torchrun(tmp_path, toy_dir):
    args = _torchrun(
        "-m", "tests.common.toy", "train", "--model", "toy_mlp", "--data-dir", str(toy_dir), "--run-dir", "run",
        "--folds", "2", "--quiet", "--set", "epochs=2", "--set", "device=cpu",
    )  # fmt: skip
    result = run_python(args, cwd=tmp_path, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("CV accuracy: ")]
    assert len(lines) == 1  # printed by rank 0 only
    run = tmp_path / "run"
    assert json.loads((run / "cv.json").read_text())["n_folds"] == 2
    for k in range(2):
        assert (run / f"fold{k}" / "metrics.json").is_file() and (
            run / f"fold{k}" / "estimator.json"
        ).is_file()
    assert (run / "submission.csv").is_file()
    assert len(list((tmp_path / "submissions" / "toy").glob("*-cv*.csv"))) == 1


def test_accumulation_syncs_once_per_step_compiled_or_not_and_eval_is_sharded(tmp_path):
    """grad_accum=4 under DDP: one all-reduce per optimizer step (DDP's no_sync on the other micro-batches), also
    when the DDP model sits inside a torch.compile wrapper; evaluation: each rank scores half the batches and
    every rank gets all the logits, in order."""
    out = tmp_path / "out"
    out.mkdir()
    result = run_python(_torchrun("-m", "tests.common.ddp_checks", str(out)), cwd=tmp_path, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    for rank in ranks:
        for case in ("plain", "compiled"):
            assert rank[case]["steps"] == 4, rank  # 2 epochs x 2 steps
            assert rank[case]["allreduce"] == 4, (case, rank[case])  # one bucket a step; 16 without no_sync
        assert rank["eval"]["rows"] == 70 and rank["eval"]["labels"] == 70 and rank["eval"]["equal"]
    assert sorted(r["eval"]["batches_seen"] for r in ranks) == [4, 5]  # 9 batches shared, none twice


def test_single_process_is_not_distributed(monkeypatch):
    from common import distributed

    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert not distributed.is_distributed() and distributed.is_main_process()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert distributed.is_distributed() and not distributed.is_main_process()
    assert distributed.resolve_device("cpu").type == "cpu"


def test_nccl_pins_each_rank_to_its_gpu_before_joining(monkeypatch):
    """Under nccl, collectives that name no device (barrier, all_gather_object) run on the current CUDA device:
    each rank is pinned to its own ``cuda:<LOCAL_RANK>`` before the process group is joined, and that device is
    the group's ``device_id``. (CUDA and nccl are stubbed: this runs on any machine.)"""
    from common import distributed

    calls: list = []
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(
        distributed.torch.cuda, "set_device", lambda device: calls.append(("set_device", device))
    )
    monkeypatch.setattr(
        distributed.dist, "init_process_group", lambda **kwargs: calls.append(("init_process_group", kwargs))
    )
    for device in (torch.device("cuda", 1), torch.device("cuda")):  # given, or this rank's by default
        calls.clear()
        distributed.init_if_needed(device)
        assert calls == [
            ("set_device", torch.device("cuda", 1)),
            ("init_process_group", {"backend": "nccl", "device_id": torch.device("cuda", 1)}),
        ]
    calls.clear()
    distributed.init_if_needed(torch.device("cpu"))  # gloo: no GPU to pin
    assert calls == [("init_process_group", {"backend": "gloo"})]


def test_from_main_broadcasts_on_the_current_cuda_device_under_nccl(monkeypatch):
    from common import distributed

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    seen: dict = {}
    monkeypatch.setattr(distributed, "init_if_needed", lambda device: seen.setdefault("init", device))
    monkeypatch.setattr(distributed.dist, "get_backend", lambda: "nccl")
    monkeypatch.setattr(distributed.torch.cuda, "current_device", lambda: 1)

    def broadcast(box, src, device=None):
        seen["device"] = device

    monkeypatch.setattr(distributed.dist, "broadcast_object_list", broadcast)
    assert distributed.from_main(lambda: 7, torch.device("cuda", 1)) == 7
    assert seen == {"init": torch.device("cuda", 1), "device": torch.device("cuda", 1)}


def _run_group(args: list[str], cwd, timeout: float) -> subprocess.CompletedProcess:
    """``run_python`` in a session of its own, killed whole on timeout (a rank left waiting in a collective must
    not outlive the test)."""
    proc = subprocess.Popen(
        [sys.executable, *args], cwd=cwd, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(
            f"timed out after {timeout}s (a rank waited alone in a collective?)\n{err[-3000:]}"
        ) from None
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def test_a_changed_test_file_is_repredicted_by_every_rank_under_torchrun(tmp_path, toy_dir):
    """Only the test file changed: every rank re-predicts (the toy's ``sync_loader`` meets a barrier per loader, as
    the street image cache does, and the evaluation is sharded), rank 0 writes, and the submission is the one a
    single process predicts from the same fold models."""
    import pandas as pd

    train = _torchrun(
        "-m", "tests.common.toy", "train", "--model", "toy_mlp", "--data-dir", str(toy_dir), "--run-dir", "run",
        "--folds", "2", "--quiet", "--set", "epochs=1", "--set", "device=cpu", "--set", "sync_loader=true",
    )  # fmt: skip
    result = _run_group(train, tmp_path, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    test = pd.read_csv(toy_dir / "test.csv")
    test.iloc[::-1].to_csv(toy_dir / "test.csv", index=False)
    train[train.index("--master_port") + 1] = str(free_port())
    result = _run_group(train, tmp_path, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("re-predicted the test probabilities of 2 trained fold model(s)") == 1
    predict = [
        "-m",
        "tests.common.toy",
        "predict",
        "--run-dir",
        "run",
        "--data-dir",
        str(toy_dir),
        "--out",
        "p.csv",
    ]
    single = run_python(predict, cwd=tmp_path)
    assert single.returncode == 0, single.stderr
    assert pd.read_csv(tmp_path / "p.csv").equals(pd.read_csv(tmp_path / "run/submission.csv"))
