"""The comparison notebook: stored without outputs, only calls into common/, and runs end to end (nbclient, a
kernel on this interpreter) on fake run directories, a blend among them and a competition with no runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from common import adversarial
from common.blend import blend
from common.competition import DataConfig
from common.report import NOTEBOOK, execute_notebook, main
from tests.common.fake_runs import FakeNews, make_fake_runs, score_fake_submissions
from tests.common.toy import ToyCompetition, write_toy_data

REPO = Path(__file__).resolve().parents[1]
SPECS = "tests.common.fake_runs:FakeNews,tests.common.fake_runs:FakeStreet,tests.common.toy:ToyCompetition"


def code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def test_stored_without_outputs_and_without_logic():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    cells = code_cells(nb)
    assert cells and all(c.outputs == [] and c.execution_count is None for c in cells)
    source = "\n".join(c.source for c in cells)
    for construct in ("def ", "class ", "lambda", "import numpy", "import pandas", "matplotlib"):
        assert construct not in source, f"notebook holds logic ({construct!r}); move it to common/"
    assert "parameters" in cells[0].metadata.get("tags", [])


def outputs_text(nb) -> str:
    parts = []
    for cell in code_cells(nb):
        for out in cell.outputs:
            parts.append(out.get("text", "") or out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    root = tmp_path_factory.mktemp("nb")
    fake = make_fake_runs(root)
    news = fake["news"]
    runs = [news["runs"][m] for m in ("linear", "lstm")]
    blend(runs, FakeNews(), news["data_dir"], fake["runs_root"] / "fake_news" / "blend", max_evals=30,
          submissions_dir=root / "submissions")  # fmt: skip
    score_fake_submissions(fake, root / "submissions")  # public scores for the CV-vs-LB section
    toy_data = write_toy_data(root / "toy_data")
    adversarial.run(
        ToyCompetition(), toy_data, DataConfig(), root / "runs" / "toy" / "adversarial", n_folds=3
    )
    nb = execute_notebook(
        "report", runs_root="runs", competitions=SPECS, submissions_root="submissions", cwd=root, timeout=120
    )
    return root, nb


def test_executes_every_section_on_fake_runs(executed):
    root, nb = executed
    out = root / "report"
    saved = nbformat.read(out / "compare_baselines.ipynb", as_version=4)
    assert all(c.execution_count is not None for c in code_cells(saved))
    assert not [o for c in code_cells(saved) for o in c.outputs if o.output_type == "error"]
    assert (out / "compare_baselines.html").stat().st_size > 10_000
    figures = {p.name for p in (out / "figures").glob("*.png")}
    expected = {
        "fake_news-cv-by-run.png", "fake_news-per-class-f1.png", "fake_news-confusion.png",
        "fake_news-learning-curves.png", "fake_news-blend-blend.png", "fake_street-cv-by-run.png",
        "fake_street-accuracy-by-length.png", "fake_street-hardest.png", "fake_street-learning-curves.png",
        "fake_news-cv-vs-lb.png",
        "toy-adversarial.png",
    }  # fmt: skip
    assert expected <= figures
    images = sum(1 for c in code_cells(saved) for o in c.outputs if "image/png" in o.get("data", {}))
    assert images >= len(expected)
    text = outputs_text(saved)
    assert "toy: no runs" in text  # a competition without runs degrades to a line
    assert "toy: adversarial AUC" in text and "fake_news: no adversarial validation yet" in text
    assert "incomplete" in text and "cross-fitted" in text and "most confident mistakes" in text
    assert "fake_news board a: 3 submission(s), Spearman rho(CV, LB)" in text and "out of line" in text
    assert "fake_street: no public scores recorded yet" in text


def test_a_failing_cell_fails_the_report(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TB_DATA_DIRS", "")
    code = main(
        ["--runs-root", "runs", "--out", "rep", "--competitions", SPECS, "--data-dirs", "broken", "--no-html"]
    )
    assert code == 1
    assert "cell failed" in capsys.readouterr().err
    saved = json.loads((tmp_path / "rep" / "compare_baselines.ipynb").read_text())
    assert any(o.get("output_type") == "error" for c in saved["cells"] for o in c.get("outputs", []))


def test_notebook_path_is_in_the_repository():
    assert NOTEBOOK.is_file() and NOTEBOOK.parent.name == "notebooks"
    assert Path(NOTEBOOK).suffix == ".ipynb"


def _cli(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "2"}
    done = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{args}: {done.stderr[-2000:]}"
    return done.stdout


@pytest.mark.slow
def test_executes_on_real_demo_runs_of_both_contests(tmp_path):
    """Tiny demo data of both real contests, quick runs, a blend, the leaderboard, then the notebook."""
    news = ["-m", "competitions.news_text_cls"]
    street = ["-m", "competitions.street_char_rec"]
    _cli([*news, "synth", "--out", "data/news_text_cls", "--n-train", "400", "--n-test", "50"], tmp_path)
    for run, c in (("tfidf", "1.0"), ("tfidf-c01", "0.1")):
        _cli([*news, "train", "--model", "tfidf", "--data-dir", "data/news_text_cls", "--run-dir",
              f"runs/news_text_cls/{run}", "--folds", "3", "--quiet", "--set", f"C={c}"], tmp_path)  # fmt: skip
    out = _cli([*news, "blend", "--data-dir", "data/news_text_cls", "--runs", "runs/news_text_cls/tfidf",
                "runs/news_text_cls/tfidf-c01"], tmp_path)  # fmt: skip
    assert "cross-fitted" in out
    _cli([*street, "synth", "--out", "data/street_char_rec", "--n-train", "90", "--n-val", "30", "--n-test", "10",
          "--workers", "1"], tmp_path)  # fmt: skip
    _cli([*street, "train", "--model", "cnn", "--data-dir", "data/street_char_rec", "--run-dir",
          "runs/street_char_rec/cnn", "--folds", "3", "--quiet", "--set", "epochs=1", "--set", "img_h=32",
          "--set", "img_w=64"], tmp_path)  # fmt: skip
    board = _cli(["-m", "common.leaderboard"], tmp_path)
    assert "== news_text_cls ==" in board and "== street_char_rec ==" in board
    _cli(["-m", "common.report"], tmp_path)
    figures = {p.name for p in (tmp_path / "runs" / "report" / "figures").glob("*.png")}
    assert {
        "news_text_cls-confusion.png",
        "news_text_cls-blend-blend.png",
        "street_char_rec-hardest.png",
    } <= figures
