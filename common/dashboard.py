"""optuna-dashboard over the tuning storage: every study ``tune`` wrote, its trials, their params, intermediate
values (the per-fold running means the pruner saw) and importances, in a browser.

``python -m common.dashboard [--storage runs/optuna.journal | URL] [--port 8080]`` (``make dashboard``, or the
``dashboard`` verb of any contest) serves it on ``http://127.0.0.1:<port>/`` until Ctrl-C. It binds to the
loopback interface only: on a remote machine, forward the port (``ssh -L 8080:127.0.0.1:8080 host``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from common.errors import UserError
from common.tuning import DEFAULT_STORAGE, is_database_url, open_storage

HOST = "127.0.0.1"
DEFAULT_PORT = 8080


def dashboard_storage(storage: str | None):
    """The storage ``tune`` writes to (see :func:`common.tuning.open_storage`). A journal file that does not
    exist is refused: opening it would create an empty one, and a dashboard with no study."""
    where = storage or DEFAULT_STORAGE
    if not is_database_url(where) and "://" not in where and not Path(where).is_file():
        raise UserError(
            f"no Optuna journal at {where}: run `make tune` first, or pass --storage (a journal file or a "
            "database URL)"
        )
    if where.startswith("sqlite:"):
        from sqlalchemy.engine import make_url

        database = make_url(where).database
        if database and database != ":memory:" and not Path(database).is_file():
            raise UserError(f"no SQLite database at {database}: run `make tune STORAGE={where}` first")
    return open_storage(where)


def serve(storage: str | None = None, port: int = DEFAULT_PORT) -> None:
    """Serve optuna-dashboard on ``127.0.0.1:port`` until interrupted."""
    if not 1 <= port <= 65535:
        raise UserError(f"--port {port}: expected 1..65535")
    from optuna_dashboard import run_server

    store = dashboard_storage(storage)
    print(
        f"optuna-dashboard on http://{HOST}:{port}/ over {storage or DEFAULT_STORAGE} (Ctrl-C stops it)",
        flush=True,
    )
    run_server(store, host=HOST, port=port)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--storage", help=f"a journal file (default {DEFAULT_STORAGE}) or a database URL, as given to tune"
    )
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port on {HOST} (default {DEFAULT_PORT})")


def main(argv: Sequence[str] | None = None) -> int:
    from common.cli import run_main

    parser = argparse.ArgumentParser(prog="python -m common.dashboard", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run_main(lambda: serve(args.storage, args.port))


if __name__ == "__main__":
    sys.exit(main())
