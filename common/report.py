"""Execute ``notebooks/compare_baselines.ipynb`` on the runs under ``runs/`` and save an executed copy.

``python -m common.report [--runs-root runs] [--out runs/report] [--competitions a,b] [--data-dirs a=D,b=E]``
writes ``<out>/compare_baselines.ipynb`` (with outputs), ``<out>/compare_baselines.html`` and ``<out>/figures/*.png``.
The kernel is this interpreter (a kernelspec written to a temporary folder), so it runs the same environment on
any machine without an installed Jupyter kernel. Any cell error fails the run (exit code 1).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from common.atomic import atomic_path
from common.runs import REPO_ROOT

NOTEBOOK = REPO_ROOT / "notebooks" / "compare_baselines.ipynb"
KERNEL_NAME = "tianchi-baselines-python"


def kernel_manager(kernel_dir: Path):
    """A kernel manager whose only kernelspec runs ``sys.executable -m ipykernel_launcher``."""
    from jupyter_client import AsyncKernelManager
    from jupyter_client.kernelspec import KernelSpecManager

    spec_dir = kernel_dir / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"Python ({sys.executable})",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    specs = KernelSpecManager(kernel_dirs=[str(kernel_dir)], ensure_native_kernel=False)
    return AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs)


def notebook_env(
    runs_root: str | Path,
    competitions: str | None = None,
    data_dirs: str | None = None,
    submissions_root: str | Path | None = None,
    figures_dir: str | Path | None = None,
) -> dict[str, str]:
    """The kernel's environment: ours, the repository importable, and the notebook's parameters."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
    env.setdefault("TQDM_DISABLE", "1")
    params = {
        "TB_RUNS_ROOT": runs_root,
        "TB_COMPETITIONS": competitions,
        "TB_DATA_DIRS": data_dirs,
        "TB_SUBMISSIONS_ROOT": submissions_root,
        "TB_FIGURES_DIR": figures_dir,
    }
    env.update({k: str(v) for k, v in params.items() if v is not None})
    return env


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
    """Run every cell (raises ``nbclient.exceptions.CellExecutionError`` on the first failing one) and write the
    executed notebook, and its HTML, under ``out_dir``. Relative paths are taken from ``cwd`` (default: here).
    Returns the executed ``NotebookNode``."""
    import nbformat
    from nbclient import NotebookClient

    cwd = Path(cwd or Path.cwd()).resolve()
    out_dir = Path(out_dir) if Path(out_dir).is_absolute() else cwd / out_dir
    notebook = Path(notebook)
    nb = nbformat.read(notebook, as_version=4)
    env = notebook_env(runs_root, competitions, data_dirs, submissions_root, out_dir / "figures")
    with tempfile.TemporaryDirectory(prefix="tb-kernel-") as kernel_dir:
        km = kernel_manager(Path(kernel_dir))
        client = NotebookClient(
            nb, km=km, timeout=timeout, allow_errors=False, resources={"metadata": {"path": str(cwd)}}
        )
        client.owns_km = True  # shut the kernel down when done, as for a manager nbclient made itself
        try:
            client.execute(env=env)
        finally:
            out_dir.mkdir(parents=True, exist_ok=True)
            with atomic_path(out_dir / notebook.name) as tmp:
                nbformat.write(nb, tmp)
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
    from nbclient.exceptions import CellExecutionError

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
    except CellExecutionError as exc:
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
