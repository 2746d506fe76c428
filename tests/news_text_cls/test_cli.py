"""The CLI contract on tiny demo data: train (one fold, all folds, resume), predict, exit code 2 on bad input."""

from __future__ import annotations

import pandas as pd
import pytest

from competitions.news_text_cls.cli import main


def _train(demo_dir, run_dir, *extra):
    return main(
        ["train", "--model", "tfidf", "--data-dir", str(demo_dir), "--run-dir", str(run_dir), "--folds", "3",
         "--folds-dir", str(run_dir.parent / "folds"), "--submissions-dir", str(run_dir.parent / "subs"), *extra]
    )  # fmt: skip


def test_train_all_folds_writes_submission_and_prints_cv_last(demo_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(demo_dir, run) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("CV macro_f1: ")
    assert float(out[-1].split()[-1]) > 0.3
    sub = pd.read_csv(run / "submission.csv")
    assert list(sub.columns) == ["label"] and len(sub) == 60 and sub["label"].between(0, 13).all()
    for name in ("oof.npy", "test.npy", "cv.json", "config.yaml"):
        assert (run / name).is_file()


def test_fold_resume(demo_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(demo_dir, run, "--fold", "0") == 0
    marker = run / "fold0" / "metrics.json"
    stamp = marker.stat().st_mtime_ns
    assert not (run / "submission.csv").exists()
    assert _train(demo_dir, run, "--fold", "all") == 0
    assert marker.stat().st_mtime_ns == stamp  # fold 0 was complete: skipped, not retrained
    assert (run / "submission.csv").is_file()
    assert _train(demo_dir, run, "--fold", "0", "--force") == 0
    assert marker.stat().st_mtime_ns != stamp


def test_predict_writes_a_submission(demo_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(demo_dir, run) == 0
    out = tmp_path / "pred.csv"
    assert main(["predict", "--run-dir", str(run), "--data-dir", str(demo_dir), "--out", str(out),
                 "--submissions-dir", str(tmp_path / "subs")]) == 0  # fmt: skip
    pred = pd.read_csv(out)
    assert pred.equals(pd.read_csv(run / "submission.csv"))


@pytest.mark.parametrize(
    ("train_text", "fragment"),
    [
        ("label\ttext\n0\t1 2\n1\t3 x 4\n", "train_set.csv:3:"),
        ("label,text\n0,1 2\n", "train_set.csv:1:"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, train_text, fragment):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train_set.csv").write_text(train_text)
    run = tmp_path / "run"
    assert _train(data, run) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0]
    assert not any(run.glob("fold*/metrics.json")) and not (run / "submission.csv").exists()


def test_test_file_with_label_column_exits_2(demo_dir, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train_set.csv").write_text((demo_dir / "train_set.csv").read_text())
    (data / "test_a.csv").write_text("label\ttext\n0\t1 2\n")
    assert _train(data, tmp_path / "run") == 2
    assert "test_a.csv:1: a test file must not have a label column" in capsys.readouterr().err


def test_unknown_config_key_exits_2(demo_dir, tmp_path, capsys):
    assert _train(demo_dir, tmp_path / "run", "--set", "nope=1") == 2
    assert "nope" in capsys.readouterr().err


def test_pretrain_verb_is_listed(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "pretrain" in capsys.readouterr().out


def _data_with(tmp_path, demo_dir, test_text: str | None):
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    (data / "train_set.csv").write_text((demo_dir / "train_set.csv").read_text())
    if test_text is not None:
        (data / "test_a.csv").write_text(test_text)
    return data


def test_a_header_only_test_file_is_one_line_in_train_and_predict(demo_dir, tmp_path, capsys):
    data = _data_with(tmp_path, demo_dir, None)
    run = tmp_path / "run"
    assert _train(data, run) == 0
    (data / "test_a.csv").write_text("text\n")
    capsys.readouterr()
    assert _train(data, tmp_path / "run2") == 2
    assert "test_a.csv:1: no documents (only a header)" in capsys.readouterr().err
    assert (
        main(
            [
                "predict",
                "--run-dir",
                str(run),
                "--data-dir",
                str(data),
                "--out",
                str(tmp_path / "p.csv"),
                "--submissions-dir",
                str(tmp_path / "subs"),
            ]
        )  # fmt: skip
        == 2
    )
    assert "no documents" in capsys.readouterr().err


def test_trailing_blank_lines_give_one_row_per_document(demo_dir, tmp_path):
    text = (demo_dir / "test_a.csv").read_text().rstrip("\n") + "\n\n\n"
    data = _data_with(tmp_path, demo_dir, text)
    assert _train(data, tmp_path / "run") == 0
    assert len(pd.read_csv(tmp_path / "run" / "submission.csv")) == 60


def test_min_df_above_the_documents_is_refused_before_anything_is_written(demo_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(demo_dir, run, "--set", "min_df=100000") == 2
    assert "min_df=100000 is above the 480 documents" in capsys.readouterr().err
    assert not run.exists()
    assert _train(demo_dir, run, "--set", "min_df=300", "--set", "vocab_fit=fold") == 2  # a fold has fewer
    assert "min_df=300 is above the 210 documents" in capsys.readouterr().err
    assert _train(demo_dir, run, "--set", "min_df=50", "--set", "max_df=0.05") == 2
    assert "max_df=0.05 of 480 documents is below min_df=50" in capsys.readouterr().err
    assert not run.exists()


def test_tfidf_and_textcnn_fold_models_are_stored_without_pickle(demo_dir, tmp_path):
    import numpy as np

    from common.store import RunStore

    for model, extra in (("tfidf", []), ("textcnn", ["--set", "epochs=1", "--set", "max_len=64", "--quiet"])):
        run = tmp_path / model
        argv = ["train", "--model", model, "--data-dir", str(demo_dir), "--run-dir", str(run), "--folds", "3",
                "--fold", "0", "--folds-dir", str(tmp_path / "folds"), *extra]  # fmt: skip
        assert main(argv) == 0
        names = {p.name for p in (run / "fold0").iterdir()}
        assert "model.pkl" not in names and "estimator.json" in names
        store = RunStore(run)
        from competitions.news_text_cls.competition import NewsCompetition

        test = NewsCompetition().load_test(demo_dir)
        proba = store.load_model(0).predict_proba(test.X)
        np.testing.assert_allclose(proba, np.load(run / "fold0" / "test.npy"), atol=1e-5)
