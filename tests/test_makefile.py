"""The Makefile is the user's entry point: every target is documented in `make help`, bad variables fail early."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True)


def test_help_lists_every_target_with_a_description():
    targets = set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), flags=re.M))
    out = _make("help")
    assert out.returncode == 0, out.stderr
    listed = dict(
        re.findall(r"^  ([a-z][a-z-]*)\s+(\S.*)$", out.stdout.split("variables (default)")[0], flags=re.M)
    )
    assert targets <= set(listed), f"undocumented targets: {sorted(targets - set(listed))}"
    assert {"demo", "test", "train", "fold", "folds", "tune", "submit", "blend", "leaderboard"} <= set(listed)


def test_the_readme_shows_the_current_make_help():
    out = _make("help")
    assert out.returncode == 0, out.stderr
    assert f"$ make help\n{out.stdout}```" in (ROOT / "README.md").read_text(), (
        "paste `make help` into the README"
    )


def test_unknown_competition_fails_before_running_anything():
    out = _make("-n", "train", "COMP=nope")
    assert out.returncode == 2
    assert (
        "unknown COMP=nope" in out.stderr
        and "news_text_cls" in out.stderr
        and "street_char_rec" in out.stderr
    )


def test_set_and_parallel_folds_expand_to_cli_flags():
    out = _make(
        "-n", "folds", "COMP=street_char_rec", "MODEL=cnn", "FOLDS=2", "SET=epochs=1 lr=0.1", "GPUS=3 5"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("--fold ") == 3  # fold-0, fold-1, then the merge with --fold all
    assert "--set epochs=1 --set lr=0.1" in out.stdout
    assert "${gpus[$(( 1 % ${#gpus[@]} ))]}" in out.stdout or "gpus=(3 5)" in out.stdout
