"""Runs a user can trust (the run-store issue): every case below was a reproduced failure of the old code.

Changed data is noticed, nothing in a run folder is unpickled, two processes cannot corrupt a run, bad values and
filesystem errors are one line with exit code 2 and nothing half-written, damaged or old run folders are named.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.common.conftest import subprocess_env

REPO = Path(__file__).resolve().parents[2]


def train(cli, run_dir, model="toy_logreg", *extra):
    return cli(
        "train",
        "--model",
        model,
        "--data-dir",
        cli.data,
        "--run-dir",
        run_dir,
        "--folds",
        3,
        "--quiet",
        *extra,
    )


def snapshot(folder: Path) -> dict:
    return {
        str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in folder.rglob("*")
        if p.is_file()
    }


# ------------------------------------------------------------------------------------------ 1. changed data
def test_a_changed_test_file_repredicts_from_the_fold_models_without_retraining(cli, tmp_path):
    run = tmp_path / "runs/lr"
    assert train(cli, run)[0] == 0
    models = {
        k: v
        for k, v in snapshot(run).items()
        if k.endswith(("estimator.json", "model.skops", "metrics.json"))
    }
    _reverse_test_file(cli.data)
    code, out, err = train(cli, run)
    assert code == 0, err
    assert (
        "test data changed since this run (test.csv): re-predicted the test probabilities of 3 trained fold model(s), no retraining"
        in out
    )
    assert {k: v for k, v in snapshot(run).items() if k in models} == models  # no fold retrained
    assert cli("predict", "--run-dir", run, "--data-dir", cli.data, "--out", "p.csv")[0] == 0
    assert pd.read_csv(tmp_path / "p.csv").equals(pd.read_csv(run / "submission.csv"))
    code, out, _ = train(cli, run)  # recorded now: no second re-prediction
    assert code == 0 and "re-predicted" not in "\n".join(out)


def test_changed_training_data_is_refused_until_forced(cli, tmp_path):
    run = tmp_path / "runs/lr"
    assert train(cli, run)[0] == 0
    frame = pd.read_csv(cli.data / "train.csv")
    frame["label"] = frame["label"].sample(frac=1.0, random_state=0).to_numpy()  # same rows, other labels
    frame.to_csv(cli.data / "train.csv", index=False)
    before = snapshot(run)
    code, _, err = train(cli, run)
    assert code == 2 and err.count("\n") == 1
    assert "data changed since this run was trained (train.csv differ" in err and "--force" in err
    assert snapshot(run) == before
    code, out, err = train(cli, run, "toy_logreg", "--force")
    assert code == 0, err
    assert "its data changed and --force given" in "\n".join(out)


def test_a_changed_model_input_is_refused_until_forced(cli, tmp_path):
    """A file a model reads besides the data (here the toy's ``prior``, named by its ``input_paths`` hook, as
    BERT's pretrained folder is) is fingerprinted in run.json: changing it refuses the re-run like changed data."""
    prior = tmp_path / "prior.txt"
    prior.write_text("1.0\n")
    argv = ["toy_logreg", "--set", f"prior={prior}"]
    run = tmp_path / "runs/lr"
    assert train(cli, run, *argv)[0] == 0
    recorded = json.loads((run / "run.json").read_text())["inputs"]["model_inputs"]
    assert list(recorded) == [str(prior)]
    code, out, err = train(cli, run, *argv)  # unchanged: the folds are reused
    assert code == 0 and "already complete" in "\n".join(out), err
    prior.write_text("0.5\n")  # "pretrained again into the same place"
    before = snapshot(run)
    code, _, err = train(cli, run, *argv)
    assert code == 2 and err.count("\n") == 1, err
    assert (
        "model inputs changed since this run was trained (prior.txt differ" in err and "pass --force" in err
    )
    assert snapshot(run) == before
    code, out, err = train(cli, run, *argv, "--force")
    assert code == 0, err
    assert "its model inputs changed and --force given" in "\n".join(out)
    now = json.loads((run / "run.json").read_text())["inputs"]["model_inputs"]
    assert now[str(prior)]["digest"] != recorded[str(prior)]["digest"]


def test_pretrained_checkpoints_of_the_contest_models_are_model_inputs():
    """BERT's ``pretrained`` folder and street's ``pretrained_path`` are params that count without an
    ``input_paths`` hook."""
    import importlib

    from common.cli import model_input_paths
    from common.registry import create_model

    news, street = "competitions.news_text_cls.models", "competitions.street_char_rec.models"
    importlib.import_module(news), importlib.import_module(street)  # registers their models
    assert model_input_paths(create_model("bert", where=news, pretrained="runs/p")) == {
        "pretrained": "runs/p"
    }
    for name in ("resnet", "crnn", "detector"):
        model = create_model(name, where=street, pretrained_path="ckpt.pt")
        assert model_input_paths(model) == {"pretrained_path": "ckpt.pt"}, name
    assert model_input_paths(create_model("resnet", where=street)) == {}
    assert model_input_paths(create_model("tfidf", where=news)) == {}


# ------------------------------------------------------------------------------------------ 2. no unpickling
class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _plant(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps({"weights": _Evil(marker)}))


@pytest.mark.parametrize(
    "model, slot, verb",
    [
        ("toy_mlp", "fold0/estimator.json", "predict"),
        ("toy_mlp", "fold0/model.safetensors", "predict"),
        ("toy_mlp", "fold0/fitted.safetensors", "predict"),
        ("toy_logreg", "fold0/model.skops", "predict"),
        ("toy_mlp", "fold0/last.pt", "train"),
        ("toy_logreg", "fold1/oof.npy", "train"),
        ("toy_logreg", "fold1/oof_ids.npy", "train"),
        ("toy_logreg", "fold2/test.npy", "train"),
        ("toy_logreg", "fold0/metrics.json", "train"),
        ("toy_logreg", "run.json", "train"),
        ("toy_logreg", "config.yaml", "predict"),
        ("toy_logreg", "oof.npy", "blend"),
        ("toy_logreg", "test.npy", "blend"),
        ("toy_logreg", "cv.json", "leaderboard"),
    ],
)
def test_a_planted_pickle_in_any_artefact_slot_never_runs(cli, tmp_path, model, slot, verb):
    run = tmp_path / "runs/toy/r"
    extra = ["--set", "epochs=1"] if model == "toy_mlp" else []
    assert train(cli, run, model, *extra)[0] == 0
    assert train(cli, tmp_path / "runs/toy/other", "toy_logreg", "--set", "C=0.5")[0] == 0
    marker = tmp_path / "pwned"
    if slot.endswith("last.pt"):
        (run / "fold0/metrics.json").unlink()  # a crashed fold: train resumes it from last.pt
    _plant(run / slot, marker)
    if verb == "predict":
        code, _, err = cli("predict", "--run-dir", run, "--data-dir", cli.data, "--out", "p.csv")
    elif verb == "train":
        code, _, err = train(cli, run, model, *extra)
    elif verb == "blend":
        code, _, err = cli(
            "blend", "--data-dir", cli.data, "--runs", run, tmp_path / "runs/toy/other", "--out", "b"
        )
    else:
        code = 2
        from common.leaderboard import leaderboard

        err = leaderboard(tmp_path / "runs")["status"].str.cat(sep="\n")
    assert not marker.exists(), f"{slot} ran code"
    assert code == 2
    assert Path(slot).name in err, err


def test_yaml_tags_that_would_build_objects_are_refused(cli, tmp_path):
    run = tmp_path / "runs/r"
    assert train(cli, run)[0] == 0
    marker = tmp_path / "pwned"
    (run / "config.yaml").write_text(f"model: !!python/object/apply:os.system ['touch {marker}']\n")
    code, _, err = cli("predict", "--run-dir", run, "--data-dir", cli.data, "--out", "p.csv")
    assert code == 2 and "config.yaml: not valid YAML" in err and not marker.exists()


# ------------------------------------------------------------------------------------------ 3. locks
def _spawn_locked(code: str) -> subprocess.Popen:
    """Run ``code`` in another process and return once it prints ``locked`` (it holds its locks then)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", code], env=subprocess_env(), stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def _start_holder(run: Path, fold: int | str) -> subprocess.Popen:
    """Another process holding ``run``'s fold lock (as a training process does)."""
    code = (
        "import sys, time\n"
        "from common.store import RunStore\n"
        f"lock = RunStore({str(run)!r}).fold_lock({fold!r}).acquire()\n"
        "print('locked', flush=True)\n"
        "time.sleep(120)\n"
    )
    return _spawn_locked(code)


def test_a_second_process_on_a_run_exits_2_naming_the_holder_and_a_killed_holder_blocks_nothing(
    cli, tmp_path
):
    run = tmp_path / "runs/lr"
    run.mkdir(parents=True)
    holder = _start_holder(run, 0)
    try:
        code, _, err = train(cli, run)
        assert code == 2 and err.count("\n") == 1
        assert f"pid {holder.pid} on host {socket.gethostname()}" in err and "fold 0" in err
        assert not (run / "config.yaml").exists()  # nothing written by the refused process
    finally:
        holder.send_signal(signal.SIGKILL)  # a crash leaves the lock file behind
        holder.wait()
    assert (run / ".fold0.lock").exists()
    code, out, err = train(cli, run)
    assert code == 0, err


def test_a_changed_test_file_is_repredicted_under_the_fold_locks(cli, tmp_path):
    """The re-prediction holds each fold's lock while it reads that fold's model: a fold another process trains
    (``train --force --fold 1`` swapping its model files) is exit 2 naming it, and nothing is re-predicted."""
    run = tmp_path / "runs/lr"
    assert train(cli, run)[0] == 0
    _reverse_test_file(cli.data)
    predicted = {k: v for k, v in snapshot(run).items() if k.endswith(("test.npy", ".csv"))}
    holder = _start_holder(run, 1)
    try:
        code, _, err = train(cli, run)
        assert code == 2 and err.count("\n") == 1, err
        assert f"pid {holder.pid} on host {socket.gethostname()}" in err and "fold 1" in err
        assert "re-predict" in err
    finally:
        holder.kill()
        holder.wait()
    assert {k: v for k, v in snapshot(run).items() if k in predicted} == predicted
    assert not (run / ".fold0.lock.owner").exists()  # the lock it took (fold 0) was given back
    code, out, err = train(cli, run)  # the new test data was not recorded: re-predicted now
    assert code == 0, err
    assert "re-predicted the test probabilities of 3 trained fold model(s)" in "\n".join(out)


def _reverse_test_file(data: Path) -> None:
    test = pd.read_csv(data / "test.csv")
    test.iloc[::-1].to_csv(data / "test.csv", index=False)  # same rows, reversed: same count, same size


def _start_repredicting_holder(run: Path, seconds: float, record: Path | None = None) -> subprocess.Popen:
    """Another process re-predicting ``run``'s test set (its turn and the fold locks held for ``seconds``), which
    records ``record``'s fingerprint in run.json as the new test data before it lets go, when given."""
    code = (
        "import time\n"
        "from pathlib import Path\n"
        "from common.cli import lock_folds\n"
        "from common.fingerprint import fingerprints\n"
        "from common.store import RunStore\n"
        f"store = RunStore({str(run)!r})\n"
        "turn = store.repredict_lock().acquire()\n"
        "folds = lock_folds(store, [0, 1, 2], 're-predict the test set with')\n"
        "print('locked', flush=True)\n"
        f"time.sleep({seconds})\n"
        f"record = {str(record) if record else None!r}\n"
        "if record:\n"
        "    with store.run_lock('record the new test data'):\n"
        "        inputs = store.read_manifest()['inputs']\n"
        "        store.update_manifest(inputs={**inputs, 'test': fingerprints([Path(record)])})\n"
        "for lock in folds:\n"
        "    lock.release()\n"
        "turn.release()\n"
    )
    return _spawn_locked(code)


@pytest.mark.parametrize("recorded", [False, True])
def test_a_fold_job_waits_for_another_processs_reprediction_instead_of_exiting_2(cli, tmp_path, recorded):
    """``make -j5 folds`` after a test change: each job finds its fold complete and the test data changed; one
    re-predicts while the others wait their turn (exit 0, not 2), then find the new test data recorded in run.json
    and re-predict nothing (or, where the other process recorded nothing, re-predict it themselves)."""
    run = tmp_path / "runs/lr"
    assert train(cli, run)[0] == 0
    _reverse_test_file(cli.data)
    holder = _start_repredicting_holder(run, 2.0, cli.data / "test.csv" if recorded else None)
    try:
        code, out, err = train(cli, run, "toy_logreg", "--fold", 1)
        assert holder.wait(timeout=60) == 0
    finally:
        holder.kill()
        holder.wait()
    assert code == 0, err
    text = "\n".join(out)
    assert f"waiting for pid {holder.pid} on host {socket.gethostname()}" in text
    assert ("re-predicted" in text) != recorded
    if not recorded:
        assert "re-predicted the test probabilities of 3 trained fold model(s)" in text
    code, out, err = train(cli, run, "toy_logreg", "--fold", 2)  # recorded now either way
    assert code == 0, err
    assert "re-predicted" not in "\n".join(out) and "waiting" not in "\n".join(out)


def test_parallel_fold_jobs_after_a_test_change_all_succeed_and_one_repredicts(cli, tmp_path):
    run = tmp_path / "runs/lr"
    assert train(cli, run)[0] == 0
    _reverse_test_file(cli.data)
    base = [sys.executable, "-m", "tests.common.toy", "train", "--model", "toy_logreg", "--data-dir",
            str(cli.data), "--run-dir", str(run), "--folds", "3", "--quiet"]  # fmt: skip
    jobs = [
        subprocess.Popen(
            [*base, "--fold", str(k)],
            cwd=tmp_path,
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(3)
    ]
    outs = []
    for job in jobs:
        out, err = job.communicate(timeout=300)
        assert job.returncode == 0, err[-2000:]
        outs.append(out)
    assert sum("re-predicted the test probabilities of 3 trained fold model(s)" in out for out in outs) == 1
    code, out, err = train(cli, run)
    assert code == 0 and "re-predicted" not in "\n".join(out), err


@pytest.mark.parametrize(("fold", "repredicted"), [("0", [1, 2]), ("all", None)])
def test_folds_about_to_be_retrained_are_not_repredicted_first(cli, tmp_path, monkeypatch, fold, repredicted):
    """``--force`` with a changed test file: the folds it retrains predict the new test data as they train; only
    the other complete folds are re-predicted from their models."""
    from common import cli as cli_module

    run = tmp_path / "runs/lr"
    assert train(cli, run)[0] == 0
    _reverse_test_file(cli.data)
    calls = []
    real = cli_module.cv.repredict_test

    def spy(store, folds, test, classes):
        calls.append(list(folds))
        return real(store, folds, test, classes)

    monkeypatch.setattr(cli_module.cv, "repredict_test", spy)
    code, out, err = train(cli, run, "toy_logreg", "--force", "--fold", fold)
    assert code == 0, err
    assert calls == ([repredicted] if repredicted else [])
    text = "\n".join(out)
    if repredicted:
        assert "re-predicted the test probabilities of 2 trained fold model(s)" in text
    else:
        assert "re-predicted" not in text


def test_other_params_while_a_run_trains_are_refused(cli, tmp_path):
    run = tmp_path / "runs/mlp"
    assert train(cli, run, "toy_mlp", "--set", "epochs=1", "--fold", 0)[0] == 0
    holder = _start_holder(run, 1)  # fold 1 is being trained with epochs=1
    try:
        code, _, err = train(cli, run, "toy_mlp", "--set", "epochs=2", "--force")
        assert code == 2 and f"pid {holder.pid}" in err and "another config" in err
    finally:
        holder.kill()
        holder.wait()


def test_parallel_fold_jobs_on_one_run_each_take_their_own_fold(tmp_path, toy_dir):
    """``make -j folds``: one process per fold on the same run folder, then the merge."""
    base = [sys.executable, "-m", "tests.common.toy", "train", "--model", "toy_mlp", "--data-dir", str(toy_dir),
            "--run-dir", "run", "--folds", "3", "--quiet", "--set", "epochs=2"]  # fmt: skip
    jobs = [
        subprocess.Popen(
            [*base, "--fold", str(k)], cwd=tmp_path, env=subprocess_env(), stderr=subprocess.PIPE, text=True
        )
        for k in range(3)
    ]
    for job in jobs:
        assert job.wait(timeout=300) == 0, job.stderr.read()[-2000:]
    merged = subprocess.run(
        base, cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=300
    )
    assert merged.returncode == 0, merged.stderr
    assert merged.stdout.count("already complete, skipped") == 3 and "CV accuracy" in merged.stdout
    manifest = json.loads((tmp_path / "run/run.json").read_text())
    assert set(manifest["folds"]) == {"0", "1", "2"}  # every job recorded its fold in run.json


# ------------------------------------------------------------------------------------------ 4-5. errors
def test_a_run_dir_that_is_a_file_is_one_line(cli, tmp_path):
    (tmp_path / "afile").write_text("x")
    code, _, err = train(cli, tmp_path / "afile")
    assert code == 2 and err == f"error: --run-dir {tmp_path / 'afile'} is a file, not a folder\n"


def test_an_unwritable_run_dir_is_one_line_with_nothing_written(cli, tmp_path, monkeypatch):
    """A read-only folder (simulated: the tests run as root, whom permissions do not stop)."""
    real_touch = Path.touch

    def touch(self, *args, **kwargs):
        if "runs" in self.parts:
            raise PermissionError(13, "Permission denied", str(self))
        return real_touch(self, *args, **kwargs)

    monkeypatch.setattr(Path, "touch", touch)
    code, _, err = train(cli, tmp_path / "runs/ro")
    assert (
        code == 2
        and err.startswith("error: --run-dir")
        and "Permission denied" in err
        and err.count("\n") == 1
    )
    assert not list((tmp_path / "runs/ro").iterdir())


def test_a_filesystem_error_anywhere_is_one_line_exit_2(cli, tmp_path, monkeypatch):
    import common.store

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device", "runs/x/config.yaml")

    monkeypatch.setattr(common.store, "write_text", full_disk)
    code, _, err = train(cli, tmp_path / "runs/x")
    assert code == 2 and err == "error: No space left on device: runs/x/config.yaml\n"


@pytest.mark.parametrize("verb", ["train", "predict"])
def test_a_corrupt_config_is_one_line(cli, tmp_path, verb):
    run = tmp_path / "runs/lr"
    assert train(cli, run)[0] == 0
    (run / "config.yaml").write_text("model: [toy_logreg\n")
    if verb == "train":
        code, _, err = train(cli, run)
    else:
        code, _, err = cli("predict", "--run-dir", run, "--data-dir", cli.data, "--out", "p.csv")
    assert code == 2 and err.count("\n") == 1 and "config.yaml: not valid YAML" in err


# ------------------------------------------------------------------------------------------ the old layout
def _old_layout(run: Path) -> None:
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(
        yaml.safe_dump({"competition": "toy", "model": "toy_logreg", "n_folds": 3})
    )
    (run / "fold0").mkdir()
    (run / "fold0/model.pkl").write_bytes(b"an old joblib pickle")
    (run / "fold0/metrics.json").write_text(json.dumps({"fold": 0, "score": 0.5, "metric": "accuracy"}))


def test_an_old_run_folder_is_refused_with_a_message_to_rerun(cli, tmp_path):
    run = tmp_path / "runs/toy/old"
    _old_layout(run)
    code, _, err = train(cli, run)
    assert code == 2 and "older version of this repository (it has no run.json)" in err and "re-run" in err
    code, _, err = cli("predict", "--run-dir", run, "--data-dir", cli.data, "--out", "p.csv")
    assert code == 2 and "older version" in err
    from common.leaderboard import leaderboard

    board = leaderboard(tmp_path / "runs")
    assert board["status"].iat[0].startswith("broken: ") and "re-run" in board["status"].iat[0]
    code, out, err = train(cli, run, "toy_logreg", "--force")
    assert code == 0, err
    assert not (run / "fold0/model.pkl").exists()


# ------------------------------------------------------------------------------------------ 6. duplicates
def test_duplicated_training_rows_share_a_fold_and_are_reported(cli, tmp_path):
    frame = pd.read_csv(cli.data / "train.csv")
    doubled = pd.concat([frame, frame.assign(id=frame["id"] + "b")], ignore_index=True)
    doubled.to_csv(cli.data / "train.csv", index=False)
    code, out, err = train(cli, tmp_path / "runs/lr")
    assert code == 0, err
    assert "warning: 200 training row(s) duplicate another row exactly" in "\n".join(out)
    folds = pd.read_csv(next((tmp_path / "runs/toy/folds").glob("folds-k3-*.csv")))
    fold_of = dict(zip(folds["id"], folds["fold"], strict=True))
    assert all(fold_of[i] == fold_of[i + "b"] for i in frame["id"])
    assert np.bincount(folds["fold"]).min() > 100  # still three balanced folds


def test_a_label_longer_than_the_positions_is_found_before_anything_is_written(tmp_path):
    import competitions.street_char_rec.models  # noqa: F401
    from common.errors import UserError
    from common.registry import create_model

    model = create_model("cnn", max_chars=3)
    with pytest.raises(UserError, match=r"label '12345' has 5 digits but max_chars is 3"):
        model.check_data(None, np.array(["12", "12345"]))


# ------------------------------------------------------------------------------------------ 8. seconds
def test_the_manifest_records_wall_seconds_per_fold(cli, tmp_path):
    run = tmp_path / "runs/mlp"
    assert train(cli, run, "toy_mlp", "--set", "epochs=1")[0] == 0
    manifest = json.loads((run / "run.json").read_text())
    assert all(manifest["folds"][k]["seconds"] > 0 for k in ("0", "1", "2"))
    assert manifest["seeds"] == {"folds": 42, "model": 42}


def test_artefacts_get_the_umask_mode_not_a_private_temp_file_mode(cli, tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    assert train(cli, tmp_path / "runs/lr")[0] == 0
    modes = {
        str(p.relative_to(tmp_path)): p.stat().st_mode & 0o777
        for p in (tmp_path / "runs/lr").rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }
    assert set(modes.values()) == {0o666 & ~umask}, modes  # mkstemp alone would give 0o600


def test_a_skops_file_naming_a_function_or_an_imported_name_is_refused(cli, tmp_path):
    """skops calls what a trusted name points to: only classes defined in scikit-learn or in the model's own
    module pass; a scikit-learn *function* (one that runs a command) or a name the module merely imports does not."""
    import skops.io as sio
    from sklearn.utils import _testing

    from common.persist import refused_types

    own = "tests.common.toy"
    assert refused_types(["sklearn.linear_model._logistic.LogisticRegression"], own) == []
    refused = [
        "sklearn.utils._testing.check_output",
        "sklearn.datasets.clear_data_home",
        f"{own}.np",
        "os.system",
    ]
    assert refused_types(refused, own) == refused
    run = tmp_path / "runs/toy/r"
    assert train(cli, run, "toy_logreg")[0] == 0
    sio.dump({"call": _testing.check_output}, run / "fold0/model.skops")
    code, _, err = cli("predict", "--run-dir", run, "--data-dir", cli.data, "--out", "p.csv")
    assert code == 2
    assert "model.skops" in err and "check_output" in err, err


def _planted_module(tmp_path: Path, monkeypatch) -> tuple[str, Path]:
    """A module on ``sys.path`` that writes a marker file when it is imported (as a planted one would run code)."""
    import uuid

    name = f"planted_{uuid.uuid4().hex[:12]}"
    marker = tmp_path / "imported"
    folder = tmp_path / "planted"
    folder.mkdir()
    (folder / f"{name}.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n\n\nclass Thing:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(folder))
    return name, marker


def test_a_type_name_outside_the_trusted_modules_is_refused_without_importing_it(tmp_path, monkeypatch):
    from common.persist import refused_types

    name, marker = _planted_module(tmp_path, monkeypatch)
    monkeypatch.delitem(sys.modules, "this", raising=False)  # importing `this` prints the Zen of Python
    own = "tests.common.toy"
    names = [
        f"{name}.Thing",
        "this.X",
        f"sklearn.{name}.Thing",
        f"{own}_{name}.Thing",
        "sklearn..X",
        "os.system",
    ]
    assert refused_types(names, own) == names
    assert not marker.exists(), "a type name imported its module"
    assert "this" not in sys.modules and name not in sys.modules
    assert refused_types([f"{own}.ToyLogReg", "sklearn.linear_model._logistic.LogisticRegression"], own) == []


def test_a_skops_file_naming_a_planted_module_is_refused_before_it_is_imported(cli, tmp_path, monkeypatch):
    import importlib

    import skops.io as sio

    name, marker = _planted_module(tmp_path, monkeypatch)
    run = tmp_path / "runs/toy/r"
    assert train(cli, run, "toy_logreg")[0] == 0
    planted = importlib.import_module(name)  # to write the file; a victim's process has never imported it
    sio.dump({"x": planted.Thing()}, run / "fold0/model.skops")
    del sys.modules[name]
    marker.unlink()
    code, _, err = cli("predict", "--run-dir", run, "--data-dir", cli.data, "--out", "p.csv")
    assert not marker.exists(), "loading the skops file imported the module it names"
    assert code == 2 and err.count("\n") == 1, err
    assert str(run / "fold0/model.skops") in err and f"{name}.Thing" in err and "does not trust" in err


# ------------------------------------------------------------------------------------------ damaged estimator.json
@pytest.fixture(scope="module")
def mlp_fold(tmp_path_factory) -> Path:
    """fold0 of a toy_mlp run, trained once for the tests below (each damages a copy)."""
    from tests.common.toy import main, write_toy_data

    root = tmp_path_factory.mktemp("mlp")
    data = write_toy_data(root / "data")
    argv = ["train", "--model", "toy_mlp", "--data-dir", data, "--run-dir", root / "run", "--folds", 3,
            "--fold", 0, "--folds-dir", root / "folds", "--quiet", "--set", "epochs=1"]  # fmt: skip
    assert main([str(a) for a in argv]) == 0
    return root / "run/fold0"


def _meta(change):
    def damage(folder: Path) -> None:
        meta = json.loads((folder / "estimator.json").read_text())
        change(meta)
        (folder / "estimator.json").write_text(json.dumps(meta))

    return damage


def _tensors(change):
    def damage(folder: Path) -> None:
        from safetensors.torch import load_file, save_file

        tensors = load_file(folder / "fitted.safetensors")
        change(tensors)
        save_file(tensors, folder / "fitted.safetensors")

    return damage


@pytest.mark.parametrize(
    "damage, named, says",
    [
        (_meta(lambda m: m.pop("params")), "estimator.json", "'params', got nothing"),
        (_meta(lambda m: m.update(params=[16])), "estimator.json", "'params', got list"),
        (_meta(lambda m: m.update(model=7)), "estimator.json", "'model', got int"),
        (_meta(lambda m: m.update(fitted="classes_")), "estimator.json", "'fitted', got str"),
        (_meta(lambda m: m.pop("fitted")), "estimator.json", "'fitted', got nothing"),
        (_meta(lambda m: m["fitted"].update(n_classes_="three")), "estimator.json", "cannot rebuild the model"),
        (
            _meta(lambda m: m["fitted"].update(n_classes_={"__ndarray__": [3], "dtype": "no-such-dtype"})),
            "estimator.json",
            "'n_classes_' is not a valid array",
        ),
        (_tensors(lambda t: t.pop("classes_")), "fitted.safetensors", "has no tensor 'classes_'"),
        (_meta(lambda m: m["fitted"].update(predict="0")), "estimator.json", "'predict' is not a fitted attribute"),
        (_meta(lambda m: m["fitted"].update(__class__=1)), "estimator.json", "'__class__' is not a fitted"),
        (_meta(lambda m: m["fitted"].update(module_=1)), "estimator.json", "'module_' is not a fitted"),
        (
            _tensors(lambda t: t.update(forward=t["classes_"].clone())),
            "fitted.safetensors",
            "'forward' is not a fitted attribute",
        ),
    ],
    ids=["no-params", "params-list", "model-int", "fitted-str", "no-fitted", "bad-fitted-value",
         "bad-dtype", "missing-tensor", "method-name", "dunder-name", "module-name", "tensor-method-name"],
)  # fmt: skip
def test_a_damaged_estimator_description_is_one_line_naming_the_file(mlp_fold, tmp_path, damage, named, says):
    import shutil

    from common import persist
    from common.errors import UserError

    folder = tmp_path / "fold0"
    shutil.copytree(mlp_fold, folder)
    assert persist.load(folder).predict_proba(np.zeros((2, 4), np.float32)).shape == (2, 3)  # the copy loads
    damage(folder)
    with pytest.raises(UserError) as caught:
        persist.load(folder)
    message = str(caught.value)
    assert message.startswith(f"{folder / named}: ") and says in message and "\n" not in message, message


def test_predict_on_a_fold_with_a_damaged_estimator_description_exits_2_in_one_line(cli, tmp_path):
    run = tmp_path / "runs/mlp"
    assert train(cli, run, "toy_mlp", "--set", "epochs=1")[0] == 0
    _meta(lambda m: m.pop("params"))(run / "fold0")
    code, _, err = cli("predict", "--run-dir", run, "--data-dir", cli.data, "--out", "p.csv")
    assert code == 2 and err.count("\n") == 1 and str(run / "fold0/estimator.json") in err, err
