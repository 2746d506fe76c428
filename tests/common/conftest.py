"""Fixtures for the tests of ``common/``: tiny toy data and a way to run the toy CLI in a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.common.toy import write_toy_data

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def toy_dir(tmp_path: Path) -> Path:
    """200 labelled and 50 test rows of the toy contest."""
    return write_toy_data(tmp_path / "data")


@pytest.fixture
def toy_data(toy_dir):
    from tests.common.toy import ToyCompetition

    comp = ToyCompetition()
    return comp, comp.load_train(toy_dir), comp.load_test(toy_dir)


@pytest.fixture
def cli(tmp_path, toy_dir, monkeypatch, capsys):
    """Run the toy contest's CLI in-process in ``tmp_path``: ``cli(*argv)`` returns (exit code, stdout lines,
    stderr); ``cli.data`` is the toy data directory."""
    from tests.common.toy import main

    monkeypatch.chdir(tmp_path)

    def run(*argv):
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out.strip().splitlines(), err

    run.data = toy_dir
    return run


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for a child Python that imports this repository from any working directory."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TQDM_DISABLE="1", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def run_python(args: list[str], cwd: Path, timeout: float = 120, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
