"""Demo data in exactly the contest's format (``train_set.csv``, ``test_a.csv``), generated with numpy.

What it imitates: the 14 class priors; document lengths (log-normal, median ~676 and mean ~907 ids, long tail,
clipped at ``MAX_LEN``); the punctuation ids 3750/900/648 in nearly every document; ~6,900 distinct character ids
among 0..7549 with Zipf frequencies; "words" of one to four ids shared by all classes (the background); per class
topical words of two or three ids; and confusable class pairs (stocks/finance, tech/games, politics/society,
home/real estate, entertainment/fashion, sports/lottery) that share topical words, where part of what separates
the two classes of a pair is the *order* of the same ids (class a writes ``x y``, class b ``y x``), so bigrams beat
unigrams. A few per cent of documents take their topical words from another class (noise), so no model is perfect.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from common.atomic import atomic_path

#: rows of each label in the real 200,000-row training file (label = index)
CLASS_COUNTS = (38918, 36945, 31425, 22133, 15016, 12232, 9985, 8841, 7847, 5878, 4920, 3131, 1821, 908)
PAIRS = ((1, 7), (0, 9), (4, 5), (8, 10), (3, 11), (2, 12))
PUNCTUATION = {3750: 0.05, 900: 0.03, 648: 0.025}  # probability of a word slot being this id
VOCAB = 7550
N_CHARS = 6900
N_BACKGROUND = 25_000
N_OWN, N_SHARED, N_ORDER = 150, 150, 100
MEDIAN_LEN, SIGMA_LEN, MIN_LEN, MAX_LEN = 676.0, 0.78, 8, 20_000
NOISE = 0.04
_CHUNK = 10_000


class _Lexicon:
    """All words as strings, and per class the word sets its topical words come from."""

    def __init__(self, rng: np.random.Generator, n_classes: int) -> None:
        reserved = np.array(list(PUNCTUATION))
        pool = rng.permutation(np.setdiff1d(np.arange(VOCAB), reserved))[:N_CHARS]
        char_p = 1.0 / (np.arange(N_CHARS) + 20.0)
        char_p /= char_p.sum()
        words: list[str] = [str(t) for t in reserved]  # punctuation first, as one-id words
        lens = rng.choice([1, 2, 3, 4], size=N_BACKGROUND, p=[0.3, 0.45, 0.17, 0.08])
        chars = rng.choice(pool, size=int(lens.sum()), p=char_p)
        words += _join_words(chars, lens)
        self.background_p = np.concatenate(
            [list(PUNCTUATION.values()), _zipf(N_BACKGROUND, 1.05, 10.0) * (1 - sum(PUNCTUATION.values()))]
        )
        mid = pool[150:3000]  # topical words use mid-frequency characters

        def new_words(n: int, lengths=(2, 3)) -> tuple[int, np.ndarray]:
            wl = rng.choice(lengths, size=n)
            start = len(words)
            words.extend(_join_words(rng.choice(mid, size=int(wl.sum())), wl))
            return start, wl

        # sets: (start, size) ranges into ``words``; per class a list of (set, weight)
        self.sets: list[tuple[int, int]] = []
        self.class_sets: list[list[tuple[int, float]]] = [[] for _ in range(n_classes)]
        for c in range(n_classes):
            start, _ = new_words(N_OWN)
            self.class_sets[c].append((self._add_set(start, N_OWN), 1.0))
        for a, b in PAIRS:
            if max(a, b) >= n_classes:
                continue
            start, _ = new_words(N_SHARED)
            shared = self._add_set(start, N_SHARED)
            start_a = len(words)
            wl = rng.choice([2, 3], size=N_ORDER)
            ordered = rng.choice(mid, size=int(wl.sum()))
            words.extend(_join_words(ordered, wl))
            order_a = self._add_set(start_a, N_ORDER)
            start_b = len(words)
            words.extend(" ".join(reversed(w.split())) for w in words[start_a : start_a + N_ORDER])
            order_b = self._add_set(start_b, N_ORDER)
            for c, order in ((a, order_a), (b, order_b)):
                self.class_sets[c] = [(self.class_sets[c][0][0], 0.2), (shared, 0.45), (order, 0.35)]
        self.words = np.array(words, dtype=object)
        self.set_start = np.array([s for s, _ in self.sets])
        self.set_size = np.array([n for _, n in self.sets])
        # per class up to 3 (set, cumulative weight) entries, padded with the last one
        self.class_set_ids = np.zeros((n_classes, 3), dtype=np.int64)
        self.class_cum = np.ones((n_classes, 3))
        for c, entries in enumerate(self.class_sets):
            ids = [s for s, _ in entries] + [entries[-1][0]] * (3 - len(entries))
            cum = np.cumsum([w for _, w in entries] + [0.0] * (3 - len(entries)))
            self.class_set_ids[c] = ids
            self.class_cum[c] = cum / cum[-1]

    def _add_set(self, start: int, size: int) -> int:
        self.sets.append((start, size))
        return len(self.sets) - 1


def _zipf(n: int, a: float, shift: float) -> np.ndarray:
    p = 1.0 / (np.arange(n) + shift) ** a
    return p / p.sum()


def _join_words(chars: np.ndarray, lens: np.ndarray) -> list[str]:
    text = chars.astype(str)
    bounds = np.concatenate([[0], np.cumsum(lens)])
    return [" ".join(text[bounds[i] : bounds[i + 1]]) for i in range(len(lens))]


def class_priors(n_classes: int = len(CLASS_COUNTS)) -> np.ndarray:
    counts = np.asarray(CLASS_COUNTS[:n_classes], dtype=np.float64)
    return counts / counts.sum()


def sample_labels(rng: np.random.Generator, n: int, n_classes: int) -> np.ndarray:
    """Labels with the contest's priors; each class appears at least ``min(n // n_classes, 5)`` times."""
    floor = min(n // n_classes, 5)
    fixed = np.repeat(np.arange(n_classes), floor)
    rest = rng.choice(n_classes, size=n - len(fixed), p=class_priors(n_classes))
    return rng.permutation(np.concatenate([fixed, rest])).astype(np.int64)


def generate_texts(lex: _Lexicon, labels: np.ndarray, rng: np.random.Generator) -> list[str]:
    """One document per label (vectorised over all word slots of the batch)."""
    n = len(labels)
    n_classes = len(lex.class_sets)
    lengths = np.clip(rng.lognormal(np.log(MEDIAN_LEN), SIGMA_LEN, size=n), MIN_LEN, MAX_LEN)
    n_words = np.maximum(2, np.round(lengths / 2.05)).astype(np.int64)
    topic_class = labels.copy()
    noisy = rng.random(n) < NOISE
    topic_class[noisy] = rng.integers(0, n_classes, size=int(noisy.sum()))
    topic_rate = rng.beta(2.0, 16.0, size=n)
    doc = np.repeat(np.arange(n), n_words)
    total = len(doc)
    slots = rng.choice(len(lex.background_p), size=total, p=lex.background_p)
    topical = rng.random(total) < topic_rate[doc]
    k = np.flatnonzero(topical)
    cls = topic_class[doc[k]]
    u = rng.random(len(k))
    which = (u > lex.class_cum[cls, 0]).astype(np.int64) + (u > lex.class_cum[cls, 1])
    set_id = lex.class_set_ids[cls, which]
    rank = np.floor(lex.set_size[set_id] * rng.random(len(k)) ** 2).astype(np.int64)
    slots[k] = lex.set_start[set_id] + rank
    strings = lex.words[slots]
    bounds = np.concatenate([[0], np.cumsum(n_words)])
    return [" ".join(strings[bounds[i] : bounds[i + 1]]) for i in range(n)]


def write_demo(
    out: str | Path, n_train: int = 2000, n_test: int = 500, seed: int = 0, n_classes: int = 14
) -> Path:
    """Write ``train_set.csv``, ``test_a.csv`` and ``test_labels.csv`` (the test rows' generated labels, for
    scoring a submission; the contest gives no such file) atomically into ``out``; return ``out``."""
    if not 2 <= n_classes <= len(CLASS_COUNTS):
        raise ValueError(f"n_classes must be in 2..{len(CLASS_COUNTS)}, got {n_classes}")
    out = Path(out)
    rng = np.random.default_rng(seed)
    lex = _Lexicon(rng, n_classes)
    labels = sample_labels(rng, n_train, n_classes)
    _write(out / "train_set.csv", "label\ttext\n", lex, labels, seed, 0, with_labels=True)
    if n_test > 0:
        test_labels = sample_labels(rng, n_test, n_classes)
        _write(out / "test_a.csv", "text\n", lex, test_labels, seed, 1, with_labels=False)
        with atomic_path(out / "test_labels.csv") as tmp:
            Path(tmp).write_text(
                "label\n" + "".join(f"{y}\n" for y in test_labels.tolist()), encoding="utf-8"
            )
    return out


def _write(
    path: Path, header: str, lex: _Lexicon, labels: np.ndarray, seed: int, stream: int, with_labels: bool
):
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(header)
        for i, begin in enumerate(range(0, len(labels), _CHUNK)):
            chunk = labels[begin : begin + _CHUNK]
            texts = generate_texts(lex, chunk, np.random.default_rng([seed, stream, i]))
            if with_labels:
                fh.write("".join(f"{y}\t{t}\n" for y, t in zip(chunk.tolist(), texts, strict=True)))
            else:
                fh.write("".join(f"{t}\n" for t in texts))


# ------------------------------------------------------------------------------------------------ CLI verb
def add_arguments(parser) -> None:
    parser.add_argument(
        "--out", required=True, help="directory to write train_set.csv, test_a.csv and test_labels.csv into"
    )
    parser.add_argument("--n-train", type=int, default=2000, help="training rows (default 2000)")
    parser.add_argument("--n-test", type=int, default=500, help="test rows (default 500; 0 for none)")
    parser.add_argument("--n-classes", type=int, default=14, help="classes, 2..14 (default 14)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def run(args) -> int:
    import time

    from common.errors import UserError

    if args.n_train < 2 * args.n_classes:
        raise UserError(f"--n-train must be at least {2 * args.n_classes} for {args.n_classes} classes")
    if not 2 <= args.n_classes <= len(CLASS_COUNTS):
        raise UserError(f"--n-classes must be in 2..{len(CLASS_COUNTS)}, got {args.n_classes}")
    started = time.perf_counter()
    out = write_demo(args.out, args.n_train, args.n_test, args.seed, args.n_classes)
    print(
        f"wrote {args.n_train} train / {args.n_test} test rows to {out} in {time.perf_counter() - started:.1f}s"
    )
    return 0
