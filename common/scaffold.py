"""``make new-competition NAME=my_contest TASK=text|image|tabular [METRIC=...]``: a new contest, ready to run.

Renders the templates of ``common/templates/`` (``string.Template`` files; see the README there) into
``competitions/<name>/`` (a Competition subclass, a reader with the clear-error conventions, a ``synth`` demo-data
generator, a registered baseline model, ``cli.py``, ``__main__.py`` and ``defaults.mk`` for make's ``MODEL``) and
``tests/<name>/`` (tests that pass as generated). ``make data COMP=<name>`` and ``make train COMP=<name>`` work at
once: the Makefile finds every ``competitions/*/__main__.py``.

The baseline per task: ``text``, TF-IDF over word n-grams + logistic regression on raw text (``tfidf``);
``image``, a small CNN on a folder of images + a labels CSV (``cnn``); ``tabular``, scikit-learn's histogram
gradient boosting on a CSV with an id and a target column named in the data config (``gbdt``; classification or
regression, chosen by the metric). Nothing is overwritten: an existing contest or test folder of that name is an
error, as is a name that is not a lower-case Python identifier.
"""

from __future__ import annotations

import argparse
import keyword
import re
import string
import sys
from collections.abc import Sequence
from pathlib import Path

from common.atomic import write_text
from common.errors import UserError
from common.metrics import METRICS

TEMPLATES = Path(__file__).resolve().parent / "templates"
TASKS = ("text", "image", "tabular")
MODELS = {"text": "tfidf", "image": "cnn", "tabular": "gbdt"}
DEFAULT_METRIC = {"text": "accuracy", "image": "accuracy", "tabular": "accuracy"}
#: metrics of a regression target (every other metric in METRICS scores classes or their probabilities)
REGRESSION_METRICS = frozenset({"rmse", "mae", "r2"})
#: metrics that need something other than one class per row
UNSUITED_METRICS = frozenset({"string_accuracy"})
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,39}")
PLACEHOLDER = "NAME"


def check_name(name: str, root: Path) -> None:
    if not NAME_PATTERN.fullmatch(name or "") or keyword.iskeyword(name) or name.endswith("_"):
        raise UserError(
            f"NAME={name!r} is not a contest name: use a lower-case Python identifier of at most 40 characters "
            "(letters, digits, underscores; starting with a letter), e.g. my_contest"
        )
    for taken in (root / "competitions" / name, root / "competitions" / f"{name}.py", root / "tests" / name):
        if taken.exists():
            raise UserError(f"{taken} already exists; choose another NAME (nothing was written)")


def check_metric(metric: str, task: str) -> str:
    """The metric's kind of target (classification or regression) for ``task``; a metric that does not fit it is
    an error."""
    if metric not in METRICS:
        raise UserError(
            f"unknown METRIC={metric!r}; expected one of {sorted(METRICS)} (add another to common/metrics.py)"
        )
    if metric in UNSUITED_METRICS:
        raise UserError(
            f"METRIC={metric} scores strings of characters; the templates predict one value per row"
        )
    kind = "regression" if metric in REGRESSION_METRICS else "classification"
    if kind == "regression" and task != "tabular":
        raise UserError(f"METRIC={metric} is a regression metric; TASK={task} classifies (use TASK=tabular)")
    return kind


def class_name(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)


def template_files(task: str) -> dict[Path, Path]:
    """Output path (relative to the repository root, ``NAME`` still in it) -> template file; the task's files
    replace the shared ones of the same path."""
    files: dict[Path, Path] = {}
    for source in ("shared", task):
        base = TEMPLATES / source
        for path in sorted(base.rglob("*.tmpl")):
            files[path.relative_to(base).with_suffix("")] = path
    return files


def render(name: str, task: str, metric: str | None = None) -> dict[Path, str]:
    """``{relative output path: text}`` of the new contest's files (nothing is written)."""
    if task not in TASKS:
        raise UserError(f"unknown TASK={task!r}; expected one of {', '.join(TASKS)}")
    metric = metric or DEFAULT_METRIC[task]
    kind = check_metric(metric, task)
    values = {
        "name": name,
        "Name": class_name(name),
        "task": task,
        "model": MODELS[task],
        "metric": metric,
        "kind": kind,
        "submit_proba": str(METRICS[metric].scores == "proba"),
    }
    out = {}
    for relative, template in template_files(task).items():
        target = Path(*(name if part == PLACEHOLDER else part for part in relative.parts))
        try:
            out[target] = string.Template(template.read_text(encoding="utf-8")).substitute(values)
        except (KeyError, ValueError) as exc:  # pragma: no cover - a broken template is a bug, not bad input
            raise RuntimeError(f"{template}: {exc!r}") from None
    return out


def scaffold(name: str, task: str, metric: str | None = None, root: str | Path = ".") -> list[Path]:
    """Write the new contest under ``root``; returns the files written."""
    root = Path(root)
    if not (root / "competitions").is_dir() or not (root / "common").is_dir():
        raise UserError(f"{root.resolve()} is not the repository root (no competitions/ and common/ folders)")
    check_name(name, root)
    files = render(name, task, metric)
    written = []
    for relative, text in files.items():
        written.append(write_text(root / relative, text))
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m common.scaffold", description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="the contest's name, a lower-case Python identifier (e.g. my_contest)")
    parser.add_argument("--task", required=True, choices=TASKS, help="what the baseline does")
    parser.add_argument("--metric", help="a key of common.metrics.METRICS (default accuracy)")
    parser.add_argument("--root", default=".", help="the repository root (default .)")
    args = parser.parse_args(argv)
    try:  # the CLI's convention (common.cli.run_main) without importing the training stack
        written = scaffold(args.name, args.task, args.metric, args.root)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    metric = args.metric or DEFAULT_METRIC[args.task]
    print(f"wrote {len(written)} files:")
    for path in written:
        print(f"  {path}")
    print(
        f"\ncompetitions/{args.name}: a {args.task} contest scored by {metric}, baseline model "
        f"{MODELS[args.task]!r}. Next:\n"
        f"  make data COMP={args.name}     # the demo data set (replace it with the contest's files)\n"
        f"  make train COMP={args.name}    # {MODELS[args.task]}, 5 folds\n"
        f"  pytest tests/{args.name}       # the generated tests"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
