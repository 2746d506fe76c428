"""``make demo``: the whole workflow on generated data, for both contests, in minutes on a laptop CPU.

Builds demo data in each contest's exact file formats (once; reused), trains the quick baselines k-fold through the
same CLI users type, blends each contest's runs, prints the leaderboard and executes the comparison notebook.
Every step prints what it runs, so the equivalent commands can be copied.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from competitions.news_text_cls.cli import main as news_main
from competitions.street_char_rec.cli import main as street_main

NEWS, STREET = "news_text_cls", "street_char_rec"
CLIS: dict[str, Callable[[Sequence[str]], int]] = {NEWS: news_main, STREET: street_main}

# Small enough for ~10 minutes on 2 CPU cores, large enough for the models to differ.
SYNTH = {
    NEWS: ["--n-train", "4000", "--n-test", "1000"],
    STREET: ["--n-train", "2000", "--n-val", "600", "--n-test", "600"],
}
MODELS = {
    NEWS: [
        ("tfidf", []),
        (
            "textcnn",
            [
                "epochs=10",
                "lr=5e-3",
                "max_len=512",
                "embed_dim=64",
                "num_filters=64",
                "batch_size=32",
                "dropout=0.5",
                "valid_size=0.1",
            ],
        ),
    ],
    STREET: [
        (
            "cnn",
            ["split=official", "img_h=32", "img_w=64", "batch_size=64", "width=16", "epochs=30", "lr=3e-3"],
        ),
        (
            "resnet",
            # the street models' shared recipe (TakeOffConfig: batch 32, lr 1e-3 held then decayed, light
            # augmentation, every row trained on), smaller images
            ["split=official", "backbone=resnet18", "img_h=48", "img_w=96", "epochs=15"],
        ),
    ],
}
FOLDS = {NEWS: 5, STREET: 5}


def _run(competition: str, args: list[str]) -> None:
    print(f"\n$ python -m competitions.{competition} {shlex.join(args)}", flush=True)
    code = CLIS[competition](args)
    if code != 0:
        raise SystemExit(
            f"demo step failed (exit {code}): python -m competitions.{competition} {shlex.join(args)}"
        )


def run_demo(data_root: Path, runs_root: Path, competitions: Sequence[str], report: bool = True) -> None:
    started = time.perf_counter()
    for comp in competitions:
        data_dir = data_root / comp
        if not any(data_dir.glob("*")):
            _run(comp, ["synth", "--out", str(data_dir), *SYNTH[comp]])
        else:
            print(f"\n# demo data for {comp} already in {data_dir}", flush=True)
        run_dirs = []
        for model, overrides in MODELS[comp]:
            run_dir = runs_root / comp / f"demo-{model}"
            run_dirs.append(str(run_dir))
            args = ["train", "--model", model, "--data-dir", str(data_dir), "--run-dir", str(run_dir)]
            args += ["--folds", str(FOLDS[comp]), "--folds-dir", str(runs_root / comp / "folds")]
            for item in overrides:
                args += ["--set", item]
            _run(comp, args)
        _run(
            comp,
            [
                "blend",
                "--data-dir",
                str(data_dir),
                "--runs",
                *run_dirs,
                "--out",
                str(runs_root / comp / "demo-blend"),
            ],
        )
    from common.leaderboard import leaderboard_cli

    print("\n$ python -m common.leaderboard", flush=True)
    leaderboard_cli(runs_root, None, None)
    if report:
        from common import report as report_mod

        print("\n$ python -m common.report", flush=True)
        code = report_mod.main(["--runs-root", str(runs_root), "--out", str(runs_root / "report")])
        if code:
            raise SystemExit(f"demo step failed (exit {code}): python -m common.report")
    print(
        f"\ndemo finished in {time.perf_counter() - started:.0f}s; submissions are under submissions/",
        flush=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m competitions.demo", description=__doc__)
    parser.add_argument("--data-root", default="data/demo", help="where demo data goes (default data/demo)")
    parser.add_argument("--runs-root", default="runs", help="where runs go (default runs)")
    parser.add_argument("--only", choices=[NEWS, STREET], help="one contest only")
    parser.add_argument("--no-report", action="store_true", help="skip executing the notebook")
    args = parser.parse_args(argv)
    comps = [args.only] if args.only else [NEWS, STREET]
    run_demo(Path(args.data_root), Path(args.runs_root), comps, report=not args.no_report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
