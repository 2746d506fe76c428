"""``python -m competitions.street_char_rec VERB``: the shared verbs (train, predict, tune, blend, models,
leaderboard) plus ``synth`` (demo data in the contest's layout)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from common.cli import Verb
from common.cli import main as common_main
from common.errors import UserError
from competitions.street_char_rec.competition import StreetCompetition


def add_synth_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out", required=True, help="folder to write mchar_train/, mchar_val/, mchar_test_a/ and JSONs"
    )
    p.add_argument("--n-train", type=int, default=3000, help="training images (default 3000)")
    p.add_argument("--n-val", type=int, default=1000, help="validation images (default 1000)")
    p.add_argument("--n-test", type=int, default=1000, help="test images (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: CPU count, at most 8)")
    p.add_argument(
        "--fonts-dir",
        default=None,
        help="a folder of .ttf/.otf fonts to use besides the bundled ones (default: bundled only, so the data "
        "is the same on every machine)",
    )


def run_synth(args: argparse.Namespace) -> int:
    from competitions.street_char_rec.synth import write_dataset

    for flag in ("n_train", "n_val", "n_test"):
        if getattr(args, flag) < 0:
            raise UserError(f"--{flag.replace('_', '-')} must be >= 0")
    summary = write_dataset(
        args.out, args.n_train, args.n_val, args.n_test, args.seed, args.workers, fonts_dir=args.fonts_dir
    )
    print(json.dumps(summary))
    return 0


SYNTH = Verb(
    help="render SVHN-like demo data in the contest's exact layout",
    add_arguments=add_synth_arguments,
    run=run_synth,
)


def main(argv: Sequence[str] | None = None) -> int:
    return common_main(StreetCompetition(), argv, extra_verbs={"synth": SYNTH})
