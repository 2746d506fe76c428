"""``make new-competition``: every template renders lint-clean for any valid name, bad requests change nothing,
and a generated contest of each task passes its own tests and trains two folds through make in a copy of the
repository (subprocesses whose PYTHONPATH is the copy)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from common.errors import UserError
from common.scaffold import MODELS, TASKS, main, render, scaffold

REPO = Path(__file__).resolve().parents[2]
#: the contests generated into the copy: name -> (task, metric)
GENERATED = {
    "gen_text": ("text", "macro_f1"),
    "gen_image": ("image", "accuracy"),
    "gen_tabular": ("tabular", "roc_auc"),
    "gen_regression": ("tabular", "rmse"),
}
#: what a copy of the repository needs to hold a generated contest and run it
NEEDED = [
    "common",
    "competitions/__init__.py",
    "tests/__init__.py",
    "tests/conftest.py",
    "Makefile",
    "pyproject.toml",
]


def _env(root: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(root), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TQDM_DISABLE="1")
    env.pop("DATA_DIR", None)
    return env


def _run(args: list[str], root: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=root, env=_env(root), capture_output=True, text=True, timeout=timeout)


def _ruff(*args) -> list[str] | None:
    """The ruff command of this environment, or None without one."""
    try:
        import ruff  # noqa: F401
    except ImportError:
        return shutil.which("ruff") and [shutil.which("ruff"), *map(str, args)]
    return [sys.executable, "-m", "ruff", *map(str, args)]


def copy_repository(to: Path) -> Path:
    for item in NEEDED:
        source = REPO / item
        if source.is_dir():
            shutil.copytree(source, to / item, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            (to / item).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, to / item)
    return to


@pytest.mark.parametrize("task", TASKS)
def test_templates_render_lint_clean_for_the_longest_name(tmp_path, task):
    ruff = _ruff()
    if ruff is None:
        pytest.skip("ruff is not installed")
    name = ("a_long_contest_name_" * 3)[: 39 - len(task)] + "_" + task
    assert len(name) == 40
    root = copy_repository(tmp_path)  # the repository's ruff settings and first-party packages
    for relative, text in render(name, task).items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    folders = [f"competitions/{name}", f"tests/{name}"]
    for check in (["check", "--no-cache"], ["format", "--check", "--no-cache"]):
        done = subprocess.run([*ruff, *check, *folders], cwd=root, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


def test_bad_requests_are_refused_and_write_nothing(tmp_path, capsys):
    root = copy_repository(tmp_path / "repo")
    (root / "competitions" / "taken").mkdir()
    (root / "competitions" / "demo.py").write_text("")
    (root / "tests" / "used").mkdir()
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    for name, task, metric, message in [
        ("My-Contest", "text", None, "not a contest name"),
        ("class", "text", None, "not a contest name"),
        ("x" * 41, "text", None, "not a contest name"),
        ("taken", "text", None, "competitions/taken already exists"),
        ("demo", "text", None, "competitions/demo.py already exists"),
        ("used", "text", None, "tests/used already exists"),
        ("fine", "audio", None, "unknown TASK='audio'"),
        ("fine", "text", "auc", "unknown METRIC='auc'"),
        ("fine", "image", "rmse", "regression metric; TASK=image classifies"),
        ("fine", "tabular", "string_accuracy", "scores strings"),
    ]:
        with pytest.raises(UserError, match=re.escape(message)):
            scaffold(name, task, metric, root)
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
    assert main(["Bad", "--task", "text", "--root", str(root)]) == 2
    assert capsys.readouterr().err.startswith("error: NAME='Bad' is not a contest name")


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """A copy of the repository with one generated contest per task (a regression one too), its generated tests
    run once (one interpreter for all) and ruff run over the generated files."""
    root = copy_repository(tmp_path_factory.mktemp("scaffold") / "repo")
    for name, (task, metric) in GENERATED.items():
        done = _run([sys.executable, "-m", "common.scaffold", name, "--task", task, "--metric", metric], root)
        assert done.returncode == 0, done.stderr
        assert f"make train COMP={name}" in done.stdout
    folders = [f"{d}/{name}" for name in GENERATED for d in ("competitions", "tests")]
    tests = _run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", *folders[1::2]], root, 600
    )
    lint = (
        [_run([*_ruff(*args), *folders], root) for args in (["check"], ["format", "--check"])]
        if _ruff()
        else []
    )
    return root, tests, lint


@pytest.mark.parametrize("name", list(GENERATED))
def test_a_generated_contest_passes_its_tests_and_trains_through_make(generated, name):
    root, tests, lint = generated
    task, metric = GENERATED[name]
    for done in lint:
        assert done.returncode == 0, done.stdout + done.stderr
    passed = re.findall(rf"^PASSED tests/{name}/test_contest.py::(\w+)", tests.stdout, flags=re.M)
    assert len(passed) == 3, tests.stdout[-3000:] + tests.stderr[-2000:]
    make = None
    if shutil.which("make") is None:  # the same two steps without make
        commands = [["synth", "--out", f"data/{name}"], ["train", "--model", MODELS[task], "--folds", "2"]]
        steps = [_run([sys.executable, "-m", f"competitions.{name}", *c], root) for c in commands]
    else:  # make's PY is this interpreter; -o: never (re)build a virtual environment in the copy
        make = [
            "make",
            "--no-print-directory",
            f"PY={sys.executable}",
            "-o",
            ".venv/.installed",
            f"COMP={name}",
        ]
        steps = [_run([*make, "data"], root), _run([*make, "train", "FOLDS=2"], root)]
    for done in steps:
        assert done.returncode == 0, done.stdout + done.stderr
    assert f"--model {MODELS[task]}" in steps[1].stdout or make is None
    assert re.search(rf"^CV {metric}: \d", steps[1].stdout, flags=re.M), steps[1].stdout
    assert (root / "runs" / name / MODELS[task] / "submission.csv").is_file()
