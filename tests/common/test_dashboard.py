"""``make dashboard``: optuna-dashboard serves the tuning storage on the loopback interface; a missing journal is a
one-line error."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

from common.dashboard import main
from common.tuning import make_study
from tests.common.conftest import free_port, subprocess_env
from tests.common.toy import main as toy_main

STARTUP_S = 90  # importing optuna and the dashboard on a loaded 2-core CI machine


def _get_json(url: str, proc: subprocess.Popen, deadline: float) -> dict:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.load(response)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if proc.poll() is not None:
                raise AssertionError(
                    f"the dashboard exited with {proc.returncode}: {proc.stderr.read()}"
                ) from None
            if time.monotonic() > deadline:
                raise AssertionError(f"no answer from {url} within {STARTUP_S}s") from None
            time.sleep(0.5)


def test_serves_the_studies_of_a_journal_on_loopback(tmp_path):
    journal = tmp_path / "optuna.journal"
    study = make_study("toy-toy_logreg", str(journal))
    study.optimize(lambda trial: trial.suggest_float("C", 0.01, 10.0, log=True), n_trials=2)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "common.dashboard", "--storage", str(journal), "--port", str(port)],
        cwd=tmp_path,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, stopped below whatever happens
    )
    try:
        body = _get_json(f"http://127.0.0.1:{port}/api/studies", proc, time.monotonic() + STARTUP_S)
        assert [s["study_name"] for s in body["study_summaries"]] == ["toy-toy_logreg"]
        study_id = body["study_summaries"][0]["study_id"]
        detail = _get_json(f"http://127.0.0.1:{port}/api/studies/{study_id}", proc, time.monotonic() + 30)
        assert len(detail["trials"]) == 2
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    assert f"optuna-dashboard on http://127.0.0.1:{port}/" in proc.stdout.read()


def test_a_missing_journal_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["--storage", str(tmp_path / "none.journal")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no Optuna journal at" in err[0] and "make tune" in err[0]
    assert not (tmp_path / "none.journal").exists()
    assert main(["--storage", str(tmp_path / "none.journal"), "--port", "0"]) == 2
    capsys.readouterr()
    assert toy_main(["dashboard", "--storage", str(tmp_path / "none.journal")]) == 2  # the contest verb
    assert "no Optuna journal at" in capsys.readouterr().err


def test_a_missing_sqlite_database_is_refused_and_not_created(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'typo' / 'optuna.db'}"
    assert main(["--storage", url]) == 2
    assert "no SQLite database at" in capsys.readouterr().err
    assert not (tmp_path / "typo").exists()


def test_sqlite_urls_with_query_or_in_memory_are_not_refused_as_missing(tmp_path):
    from common.dashboard import dashboard_storage

    db = tmp_path / "optuna.db"
    make_study("s", storage=f"sqlite:///{db}")
    assert dashboard_storage(f"sqlite:///{db}?timeout=10") is not None
    assert dashboard_storage("sqlite:///:memory:") is not None
