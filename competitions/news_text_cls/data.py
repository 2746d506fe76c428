"""The contest's files, read exactly, and :class:`Corpus`, the ``X`` every news model takes.

Files (tab-separated, UTF-8, no quoting):

- ``train_set.csv``: header ``label<TAB>text``; ``label`` an integer, ``text`` space-separated integer ids.
- ``test_a.csv`` / ``test_b.csv``: header ``text``.

Rules (each violation is a :class:`~common.errors.UserError` naming the file and the 1-based line, the header
being line 1):

- the header must be exactly the expected columns (a comma-separated file, a missing column, or a ``label`` column
  in a test file is an error on line 1); a row with too many fields is an error on its line;
- every token is a non-negative integer below 2**31, tokens separated by spaces;
- labels are integers and the classes are ``0..C-1`` where ``C`` is the number of distinct labels in the file, so
  a label outside that range (e.g. ``99`` in a 14-class file, or ``-1``) is an error; probability column ``j`` of
  every model is label ``j``;
- an empty text is an error in the training file (a labelled document with no content is a data fault), but is
  kept in a test file as a document with no ids, so the submission still has one row per test line;
- blank lines at the end of a file are not documents (an editor's trailing newlines); a file with no document
  (only a header) is an error.

:class:`Corpus` holds the documents' text (what TF-IDF wants) and parses the integer ids lazily, once, into one flat
``int32`` array with per-document start and length (what sequence models want). Indexing by an integer array
(``corpus[idx]``) returns a view sharing that store, so k-fold subsets cost nothing and the ids are parsed once.
A training corpus may carry ``unlabelled`` companion text (the test documents) that models may fit unsupervised
parts on, such as a TF-IDF vocabulary; labels never travel with it.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from common.errors import UserError

TRAIN_FILE = "train_set.csv"
TEST_FILES = ("test_a.csv", "test_b.csv")

_CHUNK = 20_000  # documents per vectorised parsing step (bounds the temporary memory)
_ALLOWED_BYTES = b"0123456789 \n"
_MAX_ID = np.iinfo(np.int32).max


class _Store:
    """The documents of one file: texts, lazily parsed ids, the file they came from and a per-data cache."""

    def __init__(self, texts: np.ndarray, source: str, unlabelled: np.ndarray | None = None) -> None:
        self.texts = texts
        self.source = source
        self.unlabelled = unlabelled
        self.cache: dict[Any, Any] = {}  # models may memoise per-data work here (e.g. a TF-IDF matrix)
        self._flat: np.ndarray | None = None
        self._starts: np.ndarray | None = None
        self._lengths: np.ndarray | None = None

    def parse(self) -> None:
        if self._flat is not None:
            return
        parts, lengths = [], []
        for begin in range(0, len(self.texts), _CHUNK):
            chunk = self.texts[begin : begin + _CHUNK]
            values, counts = _parse_chunk(chunk, self.source, begin)
            parts.append(values)
            lengths.append(counts)
        self._flat = np.concatenate(parts) if parts else np.zeros(0, np.int32)
        self._lengths = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
        self._starts = np.concatenate([[0], np.cumsum(self._lengths)[:-1]]).astype(np.int64)

    def __getstate__(self) -> dict:
        # Pickled (e.g. into a DataLoader worker under spawn) without the cache, which may hold models.
        return {**self.__dict__, "cache": {}}


class Corpus:
    """Documents of space-separated integer ids; ``corpus[idx]`` (an integer array or slice) is a cheap view.

    - ``texts``: ``ndarray`` of ``str`` (object dtype), one per document;
    - ``flat``, ``starts``, ``lengths``: all ids of the underlying store as one ``int32`` array, and each of this
      corpus's documents as ``flat[starts[i] : starts[i] + lengths[i]]`` (parsed on first use);
    - ``doc(i)``: the ids of document ``i``; ``unlabelled_texts()``: companion unlabelled text (may be empty).
    """

    def __init__(
        self,
        texts,
        source: str = "<memory>",
        unlabelled=None,
        *,
        _store: _Store | None = None,
        _rows: np.ndarray | None = None,
    ) -> None:
        if _store is None:
            arr = np.empty(len(texts), dtype=object)
            arr[:] = list(texts)
            extra = None
            if unlabelled is not None:
                extra = np.empty(len(unlabelled), dtype=object)
                extra[:] = list(unlabelled.texts if isinstance(unlabelled, Corpus) else unlabelled)
            _store = _Store(arr, source, extra)
        self.store = _store
        self.rows = np.arange(len(_store.texts)) if _rows is None else _rows

    @classmethod
    def from_ids(cls, docs, source: str = "<memory>") -> Corpus:
        """A corpus from sequences of integer ids (handy in tests and notebooks)."""
        return cls([" ".join(str(int(t)) for t in doc) for doc in docs], source)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, idx) -> Corpus:
        if isinstance(idx, int | np.integer):
            raise TypeError(
                "index a Corpus with an integer array or slice; use .doc(i) or .texts[i] for one row"
            )
        return Corpus(None, _store=self.store, _rows=self.rows[idx])

    def __iter__(self):
        return iter(self.texts)

    def __repr__(self) -> str:
        return f"Corpus({len(self)} docs from {self.store.source})"

    @property
    def texts(self) -> np.ndarray:
        return self.store.texts[self.rows]

    @property
    def source(self) -> str:
        return self.store.source

    @property
    def flat(self) -> np.ndarray:
        self.store.parse()
        return self.store._flat

    @property
    def starts(self) -> np.ndarray:
        self.store.parse()
        return self.store._starts[self.rows]

    @property
    def lengths(self) -> np.ndarray:
        self.store.parse()
        return self.store._lengths[self.rows]

    def doc(self, i: int) -> np.ndarray:
        self.store.parse()
        row = self.rows[i]
        start = self.store._starts[row]
        return self.store._flat[start : start + self.store._lengths[row]]

    def max_id(self) -> int:
        """The largest id in the file this corpus views (-1 when it has none); an id range, not a label."""
        return int(self.flat.max()) if len(self.flat) else -1

    def unlabelled_texts(self) -> np.ndarray:
        extra = self.store.unlabelled
        return extra if extra is not None else np.empty(0, dtype=object)

    def with_unlabelled(self, other: Corpus) -> Corpus:
        """This corpus (a new store, same text objects) carrying ``other``'s text as unlabelled companion text."""
        return Corpus(self.texts, self.source, unlabelled=other)


def as_texts(X) -> np.ndarray | list:
    """The document strings of a :class:`Corpus`, a list/array of strings, or a 1-column frame."""
    if isinstance(X, Corpus):
        return X.texts
    if hasattr(X, "iloc"):
        return X.iloc[:, 0].astype(str).tolist() if X.ndim == 2 else X.astype(str).tolist()
    return X


def as_corpus(X) -> Corpus:
    return X if isinstance(X, Corpus) else Corpus(as_texts(X))


# ------------------------------------------------------------------------------------------------ reading
def read_train(path: str | Path) -> tuple[Corpus, np.ndarray]:
    """Read ``train_set.csv``: a :class:`Corpus` and the labels as ``int64``."""
    path = Path(path)
    frame = _read_table(path, ["label", "text"])
    if len(frame) == 0:
        raise UserError(f"{path}:1: no documents (only a header); expected label<TAB>text rows")
    labels = _parse_labels(frame["label"], path)
    texts = frame["text"].to_numpy(dtype=object)
    empty = np.flatnonzero([not t.strip() for t in texts])
    if len(empty):
        raise UserError(
            f"{path}:{empty[0] + 2}: empty text; a labelled document needs at least one id "
            f"({len(empty)} such row(s))"
        )
    _check_tokens(texts, path)
    return Corpus(texts, str(path)), labels


def read_test(path: str | Path) -> Corpus:
    """Read ``test_a.csv``/``test_b.csv``; an empty text is kept as a document with no ids."""
    path = Path(path)
    frame = _read_table(path, ["text"])
    if len(frame) == 0:
        raise UserError(f"{path}:1: no documents (only a header); expected one text per line")
    texts = frame["text"].to_numpy(dtype=object)
    _check_tokens(texts, path)
    return Corpus(texts, str(path))


def _read_table(path: Path, columns: list[str]) -> pd.DataFrame:
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    with open(path, encoding="utf-8", errors="replace") as fh:
        header = fh.readline().rstrip("\r\n")
    got = header.split("\t")
    expected = "<TAB>".join(columns)
    if got != columns:
        if columns == ["text"] and "label" in got:
            raise UserError(f"{path}:1: a test file must not have a label column; header is {header!r}")
        hint = " (is it comma-separated? the contest files are tab-separated)" if "," in header else ""
        raise UserError(f"{path}:1: header is {header!r}; expected {expected!r}{hint}")
    try:
        frame = pd.read_csv(
            path,
            sep="\t",
            dtype=str,
            engine="c",
            quoting=csv.QUOTE_NONE,
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=False,
            encoding="utf-8",
        )
    except pd.errors.ParserError as exc:
        match = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if match:
            want, line, saw = match.groups()
            raise UserError(
                f"{path}:{line}: {saw} tab-separated fields, expected {want} ({expected})"
            ) from None
        raise UserError(f"{path}: not a readable tab-separated file ({exc})") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text ({exc})") from None
    # blank lines at the end of the file are not documents
    blank = (frame == "").all(axis=1).to_numpy()
    end = len(frame)
    while end > 0 and blank[end - 1]:
        end -= 1
    return frame.iloc[:end]


def _parse_labels(column: pd.Series, path: Path) -> np.ndarray:
    values = column.astype(str).str.strip()
    bad = np.flatnonzero(~values.str.fullmatch(r"-?\d{1,9}").to_numpy(dtype=bool))
    if len(bad):
        raise UserError(f"{path}:{bad[0] + 2}: label {column.iat[bad[0]]!r} is not an integer")
    labels = values.astype(np.int64).to_numpy()
    n_classes = len(np.unique(labels))
    outside = np.flatnonzero((labels < 0) | (labels >= n_classes))
    if len(outside):
        raise UserError(
            f"{path}:{outside[0] + 2}: label {labels[outside[0]]} is outside the classes 0..{n_classes - 1} "
            f"(the file has {n_classes} distinct labels; labels must be the integers 0..C-1)"
        )
    return labels


_LONG_TOKEN = re.compile(r"\d{10,}")  # 10+ digits: may exceed the largest id (2**31 - 1)


def _check_tokens(texts: np.ndarray, path: Path) -> None:
    """Every character is a digit or a space and every id below 2**31 (``bytes.translate`` and one regex per
    chunk; the slow per-row search only on failure)."""
    for begin in range(0, len(texts), _CHUNK):
        chunk = texts[begin : begin + _CHUNK]
        joined = "\n".join(chunk)
        bad = joined.encode("utf-8").translate(None, _ALLOWED_BYTES)
        if not bad and _LONG_TOKEN.search(joined):
            bad = any(int(m) > _MAX_ID for m in _LONG_TOKEN.findall(joined))
        if bad:
            for i, text in enumerate(chunk):
                token = _bad_token(text)
                if token is not None:
                    raise UserError(
                        f"{path}:{begin + i + 2}: token {token!r} is not an integer id "
                        f"(expected space-separated integers 0..{_MAX_ID})"
                    )


def _bad_token(text: str) -> str | None:
    for token in text.split():
        if not (token.isascii() and token.isdigit() and int(token) <= _MAX_ID):
            return token
    odd = re.search(r"[^0-9 ]", text)
    return odd.group(0) if odd else None


def _parse_chunk(texts: np.ndarray, source: str, begin: int) -> tuple[np.ndarray, np.ndarray]:
    """Ids of a chunk of documents as one int32 array, and each document's number of ids."""
    # single spaces between ids (the contest's files): count spaces; anything else: split (slower, exact)
    counts = np.fromiter((t.count(" ") + 1 if t else 0 for t in texts), dtype=np.int64, count=len(texts))
    raw = " ".join(texts)
    try:
        values = np.fromstring(raw, dtype=np.int64, sep=" ") if raw.strip() else np.zeros(0, np.int64)
    except ValueError:
        values = None
    if values is not None and len(values) != counts.sum():
        counts = np.fromiter((len(t.split()) for t in texts), dtype=np.int64, count=len(texts))
    if values is None or len(values) != counts.sum() or (len(values) and values.max() > _MAX_ID):
        for i, text in enumerate(texts):
            token = _bad_token(text)
            if token is not None:
                raise UserError(f"{source}:{begin + i + 2}: token {token!r} is not an integer id")
        raise UserError(f"{source}: could not parse the ids of rows {begin + 2}..{begin + len(texts) + 1}")
    return values.astype(np.int32), counts
