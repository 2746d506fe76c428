"""bench/news_models.py end to end on tiny generated data: one JSON line per method, scored on the test labels."""

import json
import subprocess
import sys
from pathlib import Path

from competitions.news_text_cls.synth import write_demo

REPO = Path(__file__).resolve().parents[2]


def test_every_method_prints_its_scores_memory_and_command(tmp_path):
    data = write_demo(tmp_path / "tiny", n_train=300, n_test=80, seed=1, n_classes=3)
    assert len((data / "test_labels.csv").read_text().splitlines()) == 81  # header + one label per test row
    bare = tmp_path / "bare"
    bare.mkdir()
    done = subprocess.run(
        [sys.executable, str(REPO / "bench/news_models.py"), "--data-dir", str(data), str(bare),
         "--methods", "datawhale_ridge,tfidf", "--folds", "2", "--threads", "1"],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    by_method = {line.get("method"): line for line in lines if "method" in line}
    assert set(by_method) == {"datawhale_ridge", "tfidf"}
    for line in by_method.values():
        assert "error" not in line, line
        assert 0.0 <= line["macro_f1"] <= 1.0 and line["peak_rss_mb"] > 50 and line["wall_s"] > 0
    assert "cv" in by_method["tfidf"] and "cv" not in by_method["datawhale_ridge"]
    assert by_method["tfidf"]["command"].startswith(
        "python -m competitions.news_text_cls train --model tfidf"
    )
    assert [line for line in lines if str(line.get("data")).endswith("bare")][0]["skipped"].startswith(
        "no test_labels.csv"
    )
