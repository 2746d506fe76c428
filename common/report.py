"""Execute ``notebooks/compare_baselines.ipynb`` on the runs under ``runs/`` and save an executed copy.

``python -m common.report [--runs-root runs] [--out runs/report] [--competitions a,b] [--data-dirs a=D,b=E]``
writes ``<out>/compare_baselines.ipynb`` (with outputs), ``<out>/compare_baselines.html`` and ``<out>/figures/*.png``.
The notebook is run by papermill, which injects the arguments as a cell after its ``parameters`` cell. The kernel
is this interpreter (a kernelspec in a temporary folder on ``JUPYTER_PATH``), so it runs the same environment on any
machine without an installed Jupyter kernel. Any cell error fails the run (exit code 1).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from common.atomic import atomic_path
from common.store import REPO_ROOT

NOTEBOOK = REPO_ROOT / "notebooks" / "compare_baselines.ipynb"
KERNEL_NAME = "tianchi-baselines-python"


@contextlib.contextmanager
def this_interpreter_kernel() -> Iterator[str]:
    """A kernelspec running ``sys.executable -m ipykernel_launcher`` with the repository importable; yields its
    name while ``JUPYTER_PATH`` points at it."""
    with tempfile.TemporaryDirectory(prefix="tb-kernel-") as root:
        spec_dir = Path(root) / "kernels" / KERNEL_NAME
        spec_dir.mkdir(parents=True)
        spec = {
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": f"Python ({sys.executable})",
            "language": "python",
            "env": {
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
            },
        }
        (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
        saved = os.environ.get("JUPYTER_PATH")
        os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [root, saved]))
        try:
            yield KERNEL_NAME
        finally:
            if saved is None:
                os.environ.pop("JUPYTER_PATH", None)
            else:
                os.environ["JUPYTER_PATH"] = saved


def execute_notebook(
    out_dir: str | Path = "runs/report",
    *,
    notebook: str | Path = NOTEBOOK,
    runs_root: str | Path = "runs",
    competitions: str | None = None,
    data_dirs: str | None = None,
    submissions_root: str | Path | None = None,
    cwd: str | Path | None = None,
    timeout: int = 600,
    html: bool = True,
):
    """Run every cell (raises ``papermill.PapermillExecutionError`` on the first failing one; the executed copy
    with the traceback is still written) and write the executed notebook, and its HTML, under ``out_dir``.
    Relative paths are taken from ``cwd`` (default: here). Returns the executed ``NotebookNode``."""
    import nbformat
    import papermill

    cwd = Path(cwd or Path.cwd()).resolve()
    out_dir = Path(out_dir) if Path(out_dir).is_absolute() else cwd / out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    notebook = Path(notebook)
    parameters = {
        "RUNS_ROOT": str(runs_root),
        "COMPETITIONS": competitions,
        "DATA_DIRS": data_dirs,
        "SUBMISSIONS_ROOT": None if submissions_root is None else str(submissions_root),
        "FIGURES_DIR": str(out_dir / "figures"),
    }
    parameters = {k: v for k, v in parameters.items() if v is not None}
    output = out_dir / notebook.name
    with this_interpreter_kernel() as kernel:
        # papermill saves the copy after every cell, so a failing cell leaves its traceback in it
        papermill.execute_notebook(
            str(notebook),
            str(output),
            parameters=parameters,
            kernel_name=kernel,
            cwd=str(cwd),
            progress_bar=False,
            execution_timeout=timeout,
        )
    nb = nbformat.read(output, as_version=4)
    if html:
        from nbconvert import HTMLExporter

        body, _ = HTMLExporter().from_notebook_node(nb)
        with atomic_path(out_dir / f"{notebook.stem}.html") as tmp:
            tmp.write_text(body, encoding="utf-8")
    return nb


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m common.report", description=__doc__.splitlines()[0])
    parser.add_argument("--runs-root", default="runs", help="where runs live (default runs)")
    parser.add_argument(
        "--out", default="runs/report", help="folder for the executed copy (default runs/report)"
    )
    parser.add_argument("--competitions", help="comma-separated competitions (default: both contests)")
    parser.add_argument("--data-dirs", help="name=path,... overriding the data dirs in the runs' configs")
    parser.add_argument("--submissions-root", help="archive of submissions (default submissions)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell (default 600)")
    parser.add_argument("--no-html", action="store_true", help="only the executed .ipynb")
    args = parser.parse_args(argv)
    from papermill.exceptions import PapermillExecutionError

    print(f"executing {NOTEBOOK.relative_to(REPO_ROOT)} on {args.runs_root} ...", flush=True)
    try:
        execute_notebook(
            args.out,
            runs_root=args.runs_root,
            competitions=args.competitions,
            data_dirs=args.data_dirs,
            submissions_root=args.submissions_root,
            timeout=args.timeout,
            html=not args.no_html,
        )
    except PapermillExecutionError as exc:
        print(
            f"error: a notebook cell failed (executed copy with the traceback in {args.out}):\n{exc}",
            file=sys.stderr,
        )
        return 1
    print(f"executed notebook: {Path(args.out) / NOTEBOOK.name}", flush=True)
    if not args.no_html:
        print(f"html: {Path(args.out) / (NOTEBOOK.stem + '.html')}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
