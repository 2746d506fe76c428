"""``python -m competitions.news_text_cls VERB``: the shared verbs plus ``synth`` (demo data) and ``pretrain``."""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from common.cli import Verb
from common.cli import main as shared_main
from common.errors import UserError
from competitions.news_text_cls import synth
from competitions.news_text_cls.competition import NewsCompetition

PRETRAIN_MODULE = "competitions.news_text_cls.pretrain"


def _pretrain_module():
    try:
        return importlib.import_module(PRETRAIN_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != PRETRAIN_MODULE:
            raise
        return None


def _pretrain_arguments(parser) -> None:
    module = _pretrain_module()
    if module is not None:
        module.add_arguments(parser)


def _pretrain_run(args) -> int | None:
    module = _pretrain_module()
    if module is None:
        raise UserError(f"the pretrain verb needs {PRETRAIN_MODULE}, which is not installed in this checkout")
    return module.run(args)


def main(argv: Sequence[str] | None = None) -> int:
    verbs = {
        "synth": Verb("write demo data in the contest's format", synth.add_arguments, synth.run),
        "pretrain": Verb(
            "pretrain a small BERT on the unlabelled text (MLM)", _pretrain_arguments, _pretrain_run
        ),
    }
    return shared_main(NewsCompetition(), argv, extra_verbs=verbs)
