"""The command-line contract on tiny data: train writes OOF, CV score (last line) and submission; complete folds
are skipped on resume; predict writes a submission; bad input exits 2 with one line on stderr."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from competitions.street_char_rec.cli import main

TINY_SET = ["img_h=16", "img_w=32", "epochs=1", "batch_size=16", "width=8"]


def _train(data_dir, tmp_path, *extra):
    argv = ["train", "--model", "cnn", "--data-dir", str(data_dir), "--run-dir", str(tmp_path / "run")]
    argv += ["--folds-dir", str(tmp_path / "folds"), "--submissions-dir", str(tmp_path / "subs"), "--quiet"]
    for item in TINY_SET:
        argv += ["--set", item]
    return main(argv + list(extra))


def test_train_all_folds_then_predict(street_data, tmp_path, capsys):
    assert _train(street_data, tmp_path, "--folds", "2", "--fold", "0") == 0
    marker = tmp_path / "run/fold0/metrics.json"
    stamp = marker.stat().st_mtime_ns
    assert not (tmp_path / "run/submission.csv").exists()
    assert _train(street_data, tmp_path, "--folds", "2", "--fold", "all") == 0
    assert marker.stat().st_mtime_ns == stamp  # the complete fold was resumed, not retrained
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("CV string_accuracy: ")
    cv = json.loads((tmp_path / "run/cv.json").read_text())
    assert cv["n_folds"] == 2 and 0.0 <= cv["score"] <= 1.0
    sub = pd.read_csv(tmp_path / "run/submission.csv", dtype=str)
    assert list(sub.columns) == ["file_name", "file_code"]
    assert sub["file_name"].tolist() == [f"{i:06d}.png" for i in range(12)]
    assert sub["file_code"].str.fullmatch(r"[0-9]+").all()
    out = tmp_path / "pred.csv"
    argv = ["predict", "--run-dir", str(tmp_path / "run"), "--data-dir", str(street_data), "--out", str(out),
            "--submissions-dir", str(tmp_path / "subs")]  # fmt: skip
    assert main(argv) == 0
    pd.testing.assert_frame_equal(pd.read_csv(out, dtype=str), sub)


def test_official_split_is_one_fold_on_the_val_folder(street_data, tmp_path, capsys):
    assert _train(street_data, tmp_path, "--set", "split=official") == 0
    cv = json.loads((tmp_path / "run/cv.json").read_text())
    assert cv["n_folds"] == 1
    assert json.loads((tmp_path / "run/fold0/metrics.json").read_text())["n_valid"] == 16


def test_split_from_config_file_and_set_override(street_data, tmp_path):
    (tmp_path / "c.yaml").write_text("split: official\n")
    assert _train(street_data, tmp_path, "--config", str(tmp_path / "c.yaml")) == 0
    assert json.loads((tmp_path / "run/cv.json").read_text())["n_folds"] == 1
    argv = ["--config", str(tmp_path / "c.yaml"), "--set", "split=kfold", "--folds", "2", "--run-dir"]
    assert _train(street_data, tmp_path / "k", *argv, str(tmp_path / "k/run")) == 0
    assert json.loads((tmp_path / "k/run/cv.json").read_text())["n_folds"] == 2


def test_bad_input_exits_2_with_one_line(data_copy, tmp_path, capsys):
    path = data_copy / "mchar_train.json"
    data = json.loads(path.read_text())
    data["000001.png"]["label"] = [11] * len(data["000001.png"]["label"])
    path.write_text(json.dumps(data))
    assert _train(data_copy, tmp_path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "000001.png" in err[0] and "label 11" in err[0]
    assert not (tmp_path / "run/submission.csv").exists()


def test_corrupt_training_image_exits_2_naming_it(data_copy, tmp_path, capsys):
    (data_copy / "mchar_val" / "000004.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    assert _train(data_copy, tmp_path, "--folds", "2") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "mchar_val/000004.png: cannot decode" in err[-1]
    assert not list((tmp_path / "run").glob("fold*/metrics.json"))


def test_unknown_key_and_synth_verb(tmp_path, capsys):
    assert _train(tmp_path, tmp_path, "--set", "nope=1") == 2
    assert "nope" in capsys.readouterr().err
    assert (
        main(["synth", "--out", str(tmp_path / "d"), "--n-train", "3", "--n-val", "2", "--n-test", "2"]) == 0
    )
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["images"] == 7 and summary["images_per_s"] > 0
    assert summary["fonts"] > 10 and "fonts_digest" in summary
    assert (
        main(["synth", "--out", str(tmp_path / "e"), "--n-train", "1", "--fonts-dir", str(tmp_path / "no")])
        == 2
    )
    assert len(list((tmp_path / "d/mchar_test_a").iterdir())) == 2


def test_module_entry_point(street_data, tmp_path):
    root = Path(__file__).resolve().parents[2]
    cmd = [sys.executable, "-m", "competitions.street_char_rec", "train", "--model", "cnn", "--data-dir"]
    cmd += [str(tmp_path / "missing"), "--run-dir", str(tmp_path / "r")]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, env={**os.environ}, timeout=120)
    assert proc.returncode == 2 and "data directory not found" in proc.stderr
