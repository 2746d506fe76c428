"""Blending runs: weights fitted on out-of-fold probabilities, applied to the test probabilities.

Runs blend only when they share the folds file and the rows (same OOF ids, same data). The weights are
non-negative and sum to 1; the search (equal weights, each member alone, Dirichlet samples, then Nelder-Mead from
the best point) keeps the best point it has scored, so the blend is never worse on the OOF than its best member.

Scores fitted on the same OOF they are measured on are optimistic; each is reported beside a *cross-fitted* one:
for every fold, weights fitted on the other folds' OOF rows are applied to that fold, and the assembled predictions
are scored once. The optional per-class multiplicative weights (for macro-F1 on ``(n, n_classes)`` probabilities)
are fitted by coordinate ascent and reported the same two ways.

The blend is one more producer through the run store (:mod:`common.store`): a run directory with ``config.yaml``
(model ``blend``, its members and their data section), ``run.json``, ``oof.npy``, ``oof_ids.npy``, ``test.npy``,
``cv.json`` with the weights and ``submission.csv``, so it shows on the leaderboard.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from common.competition import Competition
from common.config import build_tree, to_dict
from common.errors import UserError
from common.folds import load_folds
from common.store import Run, RunStore, device_description, new_manifest, open_run

ScoreFn = Callable[[np.ndarray, np.ndarray], float]
#: relative steps tried for one class's weight in each round of coordinate ascent
CLASS_STEPS = (0.5, 0.7, 0.85, 1.2, 1.4, 2.0)


@dataclass
class BlendResult:
    out_dir: Path
    members: list[str]
    weights: np.ndarray
    member_scores: list[float]
    score: float
    score_crossfit: float | None  # None with a single validation fold (nothing to fit on but itself)
    fold_scores: list[float]
    metric: str
    class_weights: np.ndarray | None = None
    score_weights_only: float | None = None
    submission: Path | None = None
    archived: Path | None = None
    extra: dict = field(default_factory=dict)

    def summary(self) -> str:
        width = max(len(m) for m in self.members)
        lines = [f"{'member':<{width}}  weight  {self.metric}"]
        for name, w, s in zip(self.members, self.weights, self.member_scores, strict=True):
            lines.append(f"{name:<{width}}  {w:6.3f}  {s:.5f}")
        if self.class_weights is not None:
            lines.append(f"{'blend (weights only)':<{width}}          {self.score_weights_only:.5f}")
            lines.append(f"{'blend + class weights':<{width}}          {self.score:.5f}")
        else:
            lines.append(f"{'blend':<{width}}          {self.score:.5f}")
        crossfit = "n/a (one fold)" if self.score_crossfit is None else f"{self.score_crossfit:.5f}"
        lines.append(f"(fitted on the same OOF, so optimistic; cross-fitted on the folds: {crossfit})")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------------- fitting
def _normalise(w: np.ndarray) -> np.ndarray:
    w = np.abs(np.asarray(w, dtype=np.float64))
    total = w.sum()
    return np.full(len(w), 1.0 / len(w)) if total <= 0 else w / total


def fit_weights(
    probas: Sequence[np.ndarray],
    y: np.ndarray,
    score_fn: ScoreFn,
    greater_is_better: bool = True,
    max_evals: int = 200,
    seed: int = 0,
) -> tuple[np.ndarray, float]:
    """Non-negative weights summing to 1 that optimise ``score_fn(y, sum_m w_m * probas[m])``; returns
    ``(weights, score)``. Equal weights and each member alone are scored first, so the result is at least as
    good as the best member on these rows; ties keep the earlier point."""
    stack = np.stack([np.asarray(p, dtype=np.float32) for p in probas])
    m = len(stack)
    sign = 1.0 if greater_is_better else -1.0
    best = {"w": None, "score": None, "value": -np.inf, "evals": 0}

    def evaluate(w) -> float:
        w = _normalise(w)
        score = float(score_fn(y, np.tensordot(w.astype(np.float32), stack, axes=1)))
        best["evals"] += 1
        if sign * score > best["value"]:
            best.update(w=w, score=score, value=sign * score)
        return -sign * score

    evaluate(np.ones(m))
    for i in range(m):
        evaluate(np.eye(m)[i])
    if m == 1:
        return best["w"], best["score"]
    rng = np.random.default_rng(seed)
    for w in rng.dirichlet(np.ones(m), size=max(0, max_evals // 3 - m - 1)):
        evaluate(w)
    x0 = best["w"]
    simplex = np.vstack([x0] + [x0 + 0.25 * np.eye(m)[i] for i in range(m)])
    remaining = max(0, max_evals - best["evals"])
    if remaining:
        minimize(
            evaluate,
            x0,
            method="Nelder-Mead",
            options={"initial_simplex": simplex, "maxfev": remaining, "xatol": 1e-3, "fatol": 1e-7},
        )
    return best["w"], best["score"]


def apply_class_weights(proba: np.ndarray, class_weights: np.ndarray | None) -> np.ndarray:
    if class_weights is None:
        return proba
    out = np.asarray(proba, dtype=np.float32) * np.asarray(class_weights, dtype=np.float32)
    return out / out.sum(axis=-1, keepdims=True)


def fit_class_weights(
    proba: np.ndarray, y: np.ndarray, score_fn: ScoreFn, greater_is_better: bool = True, rounds: int = 2
) -> tuple[np.ndarray, float]:
    """Per-class multiplicative weights on ``(n, n_classes)`` probabilities (a prior/threshold shift, e.g. for
    macro-F1), fitted by coordinate ascent; starts at all ones, so the score never drops on these rows."""
    proba = np.asarray(proba, dtype=np.float32)
    if proba.ndim != 2:
        raise UserError(f"class weights need (n, n_classes) probabilities, got shape {proba.shape}")
    sign = 1.0 if greater_is_better else -1.0
    weights = np.ones(proba.shape[1])
    best = float(score_fn(y, proba))
    for _ in range(rounds):
        improved = False
        for c in range(proba.shape[1]):
            for step in CLASS_STEPS:
                candidate = weights.copy()
                candidate[c] *= step
                score = float(score_fn(y, apply_class_weights(proba, candidate)))
                if sign * score > sign * best + 1e-12:
                    weights, best, improved = candidate, score, True
        if not improved:
            break
    return weights / weights.mean(), best


# -------------------------------------------------------------------------------------------------- checks
def _same_folds(a: Run, b: Run) -> bool:
    """Whether two runs scored the same rows on the same folds: the same folds file, or two files that put every
    scored row (fold >= 0) on the same fold. Rows only ever trained on (fold -1, e.g. pseudo-labelled test rows or
    an official split's training part) do not enter the OOF, so they do not matter here."""
    fa, fb = a.folds_file, b.folds_file
    if fa == fb:
        return True
    if not (fa and fb and Path(fa).is_file() and Path(fb).is_file()):
        return False
    ta, tb = (pd.read_csv(p, dtype={"id": str}) for p in (fa, fb))
    ta, tb = (t[t["fold"] >= 0] for t in (ta, tb))
    return (
        len(ta) == len(tb)
        and np.array_equal(ta["id"].to_numpy(), tb["id"].to_numpy())
        and np.array_equal(ta["fold"].to_numpy(), tb["fold"].to_numpy())
    )


def check_members(runs: Sequence[Run], competition: Competition) -> tuple[list[np.ndarray], np.ndarray]:
    """Refuse runs that cannot be blended; return their OOF probabilities and the shared ids."""
    if len(runs) < 2:
        raise UserError(f"a blend needs at least two runs, got {len(runs)}")
    sections = [to_dict(data_config(competition, r)) for r in runs]  # keys added since a run: their defaults
    if any(section != sections[0] for section in sections):
        different = next(r for r, section in zip(runs, sections, strict=True) if section != sections[0])
        raise UserError(
            f"{different.path} was trained with data settings {different.data_params}, {runs[0].path} with "
            f"{runs[0].data_params}; only runs on the same data can be blended"
        )
    paths = [r.path.resolve() for r in runs]
    if len(set(paths)) != len(paths):
        raise UserError("the same run is given twice; list each run once")
    for run in runs:
        if run.competition != competition.name:
            raise UserError(f"{run.path} is a run of {run.competition!r}, not {competition.name!r}")
        if not run.complete:
            have = sorted(run.fold_metrics)
            raise UserError(
                f"{run.path} is incomplete (complete folds {have} of {run.n_folds}, merged: {run.cv is not None}); "
                "finish it before blending"
            )
    first = runs[0]
    oofs, ids0 = [], None
    for run in runs:
        if not _same_folds(first, run):
            raise UserError(
                f"{run.path} was trained on folds {run.folds_file} but {first.path} on {first.folds_file}; "
                "only runs on the same folds file can be blended (train them with the same --folds and --seed)"
            )
        oof, ids = run.oof()
        if ids0 is None:
            ids0 = ids
        elif len(ids) != len(ids0) or not np.array_equal(ids, ids0):
            raise UserError(
                f"{run.path}/oof_ids.npy lists other rows than {first.path}/oof_ids.npy (other data?)"
            )
        if oofs and oof.shape != oofs[0].shape:
            raise UserError(f"{run.path}/oof.npy has shape {oof.shape}, {first.path}'s has {oofs[0].shape}")
        if len(oof) != len(ids):
            raise UserError(f"{run.path}: oof.npy has {len(oof)} rows but oof_ids.npy {len(ids)}")
        oofs.append(oof)
    return oofs, ids0


def _targets_and_folds(
    competition: Competition, data_dir: Path, runs: Sequence[Run], ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """True targets and the fold of each OOF row, checking the runs were made from this data."""
    data = competition.load_train(data_dir, data_config(competition, runs[0]))
    data_ids = np.asarray(data.ids).astype(str)
    position = pd.Index(data_ids).get_indexer(ids)
    if (position < 0).any():
        missing = ids[position < 0][0]
        raise UserError(
            f"the runs were made from other data than {data_dir}: row id {missing!r} is not in it"
        )
    folds_file = runs[0].folds_file
    if folds_file and Path(folds_file).is_file():
        folds = load_folds(folds_file, data.ids, data.strata)[position]
    else:  # recover folds from the first run's per-fold OOF ids
        folds = np.full(len(ids), -1, dtype=np.int64)
        where = pd.Index(ids)
        for k in runs[0].fold_metrics:
            part = runs[0].fold_oof_ids(k)
            if part is not None:
                folds[where.get_indexer(part)] = k
    y = np.asarray(data.y, dtype=object if isinstance(data.y, list) else None)[position]
    return y, folds


def _crossfit(
    fit: Callable[[np.ndarray], Callable[[np.ndarray], np.ndarray]],
    blended_shape_like: np.ndarray,
    folds: np.ndarray,
) -> np.ndarray:
    """For each fold k: ``predict = fit(train_mask)``; fill fold k's rows with ``predict(valid_mask)``."""
    out = np.zeros_like(blended_shape_like, dtype=np.float32)
    for k in sorted(set(folds.tolist()) - {-1}):
        valid = folds == k
        out[valid] = fit(~valid)(valid)
    return out


def data_config(competition: Competition, run: Run):
    """The data section a run was trained with, as the contest's data config."""
    return build_tree({"data": competition.data_config}, {"data": run.data_params}, source=str(run.path))[
        "data"
    ]


# ---------------------------------------------------------------------------------------------------- blend
def blend(
    run_dirs: Sequence[str | Path],
    competition: Competition,
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    class_weights: bool = False,
    submissions_dir: str | Path | None = "submissions",
    max_evals: int = 200,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> BlendResult:
    """Blend the runs in ``run_dirs`` (see the module doc); write the blend run to ``out_dir`` and, when the test
    files exist, its submission (also archived under ``submissions_dir`` unless ``None``). ``max_evals`` bounds
    the metric evaluations of the weight search (half as many for each cross-fitting fold); ``log`` receives
    progress lines."""
    started = time.perf_counter()
    say = log or (lambda _msg: None)
    out_dir = Path(out_dir)
    runs = [open_run(p) for p in run_dirs]
    if out_dir.resolve() in {r.path.resolve() for r in runs}:
        raise UserError(f"--out {out_dir} is one of the blended runs; choose another directory")
    store = RunStore(out_dir)
    if store.has_config() and (store.read_config() or {}).get("model") != "blend":
        raise UserError(
            f"{out_dir} holds a run of model {store.read_config().get('model')!r}; choose another --out"
        )
    oofs, ids = check_members(runs, competition)
    y, folds = _targets_and_folds(competition, Path(data_dir), runs, ids)
    greater = competition.metric.greater_is_better
    score_fn = competition.score
    member_scores = [float(score_fn(y, p)) for p in oofs]
    stack = np.stack(oofs).astype(np.float32)

    def fit_all(mask: np.ndarray, evals: int = max_evals) -> tuple[np.ndarray, np.ndarray | None]:
        w, _ = fit_weights([p[mask] for p in oofs], y[mask], score_fn, greater, evals, seed)
        cw = None
        if class_weights:
            cw, _ = fit_class_weights(np.tensordot(w, stack[:, mask], axes=1), y[mask], score_fn, greater)
        return w, cw

    def predictor(mask: np.ndarray):
        say(f"cross-fitting: weights from {int(mask.sum())} rows of the other folds")
        w, cw = fit_all(mask, max(max_evals // 2, len(oofs) + 1))
        return lambda rows: apply_class_weights(np.tensordot(w, stack[:, rows], axes=1), cw)

    say(f"blending {len(runs)} runs on {len(ids)} OOF rows: " + ", ".join(f"{r.name} {s:.5f}" for r, s in
        zip(runs, member_scores, strict=True)))  # fmt: skip
    everything = np.ones(len(ids), dtype=bool)
    weights, cw = fit_all(everything)
    weighted = np.tensordot(weights.astype(np.float32), stack, axes=1)
    score_weights_only = float(score_fn(y, weighted))
    oof = apply_class_weights(weighted, cw)
    score = float(score_fn(y, oof))
    n_folds = len(set(folds.tolist()) - {-1})
    score_crossfit = float(score_fn(y, _crossfit(predictor, oof, folds))) if n_folds > 1 else None
    fold_scores = [
        float(score_fn(y[folds == k], oof[folds == k])) for k in sorted(set(folds.tolist()) - {-1})
    ]

    tests = [r.test() for r in runs]
    test_proba = None
    if all(t is not None for t in tests) and len({t.shape for t in tests}) == 1:
        test_proba = apply_class_weights(
            np.tensordot(weights.astype(np.float32), np.stack(tests), axes=1), cw
        )

    names = [r.name for r in runs]
    config = {
        "competition": competition.name,
        "model": "blend",
        "n_folds": len(fold_scores),
        "seed": seed,
        "folds_file": runs[0].folds_file,
        "data_dir": str(data_dir),
        "data": runs[0].data_params,
        "params": {"members": [str(r.path) for r in runs], "class_weights": bool(class_weights)},
    }
    result = BlendResult(
        out_dir=out_dir,
        members=names,
        weights=weights,
        member_scores=member_scores,
        score=score,
        score_crossfit=score_crossfit,
        fold_scores=fold_scores,
        metric=competition.metric.name,
        class_weights=cw,
        score_weights_only=score_weights_only,
    )
    summary = {
        "score": score,
        "metric": competition.metric.name,
        "fold_scores": fold_scores,
        "n_folds": len(fold_scores),
        "seconds": round(time.perf_counter() - started, 3),
        "folds_file": runs[0].folds_file,
        "model": "blend",
        "members": [
            {"run": n, "path": str(r.path), "weight": float(w), "score": s}
            for n, r, w, s in zip(names, runs, weights, member_scores, strict=True)
        ],
        "weights": {n: float(w) for n, w in zip(names, weights, strict=True)},
        "score_weights_only": score_weights_only,
        "score_crossfit": score_crossfit,
        "class_weights": None if cw is None else [float(v) for v in cw],
        "note": "score: weights fitted on this same OOF (optimistic); score_crossfit: fitted on the other folds",
    }
    test = (
        competition.load_test(Path(data_dir), data_config(competition, runs[0]))
        if test_proba is not None
        else None
    )
    store.prepare()
    with store.run_lock("write the blend"):
        store.clear_outputs()  # cv.json, written last, marks a complete blend again
        store.write_config(config)
        first = runs[0].manifest
        store.write_manifest(
            {
                **new_manifest(
                    {"blend": seed},
                    first.get("inputs") or {},
                    runs[0].folds_file,
                    device_description("cpu"),
                ),
                "members": {r.name: {"path": str(r.path), "commit": r.commit} for r in runs},
            }
        )
        store.write_merged(
            oof.astype(np.float32),
            ids,
            None if test_proba is None else test_proba.astype(np.float32),
            summary,
        )
        if test is not None and len(test.ids) == len(test_proba):
            result.submission, result.archived = store.write_submission(
                competition, test, test_proba, archive_root=submissions_dir
            )
    return result


def run_blend_cli(
    competition: Competition, run_dirs: Sequence[Path], data_dir: Path, out: Path, args
) -> BlendResult:
    """The ``blend`` verb: blend, print members and blend side by side, say where the submission went."""
    result = blend(
        run_dirs,
        competition,
        data_dir,
        out,
        class_weights=bool(getattr(args, "class_weights", False)),
        submissions_dir=getattr(args, "submissions_dir", "submissions"),
        log=lambda msg: print(msg, flush=True),
    )
    print(result.summary(), flush=True)
    if result.submission is not None:
        print(f"submission: {result.submission} (archived as {result.archived})", flush=True)
    print(f"blend run: {result.out_dir}", flush=True)
    print(f"CV {result.metric}: {result.score:.5f}", flush=True)
    return result
