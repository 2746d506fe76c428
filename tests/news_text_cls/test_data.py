from __future__ import annotations

import numpy as np
import pytest

from common.competition import DataConfig
from common.errors import UserError
from competitions.news_text_cls.competition import NewsCompetition
from competitions.news_text_cls.data import Corpus, read_test, read_train
from tests.news_text_cls.conftest import write


def test_reads_train_exactly(tmp_path):
    path = write(tmp_path / "train_set.csv", "label\ttext\n2\t3750 12 900\n0\t7\n1\t5 5 5 648\n")
    corpus, labels = read_train(path)
    assert labels.tolist() == [2, 0, 1] and labels.dtype == np.int64
    assert corpus.texts.tolist() == ["3750 12 900", "7", "5 5 5 648"]
    assert corpus.lengths.tolist() == [3, 1, 4]
    assert corpus.doc(0).tolist() == [3750, 12, 900] and corpus.doc(0).dtype == np.int32
    sub = corpus[np.array([2, 0])]
    assert len(sub) == 2 and sub.doc(0).tolist() == [5, 5, 5, 648] and sub.texts.tolist()[1] == "3750 12 900"
    assert sub.store is corpus.store  # views share the parsed ids


def test_reads_test_and_keeps_empty_text(tmp_path):
    corpus = read_test(write(tmp_path / "test_a.csv", "text\n1 2 3\n\n4\n"))
    assert len(corpus) == 3
    assert corpus.lengths.tolist() == [3, 0, 1]
    assert corpus.doc(1).tolist() == []


def test_blank_lines_at_the_end_are_not_documents(tmp_path):
    """An editor's trailing newlines: 80 documents, 80 submission rows (a blank line inside stays a document)."""
    corpus = read_test(write(tmp_path / "test_a.csv", "text\n1 2\n\n3\n\n\n"))
    assert len(corpus) == 3 and corpus.lengths.tolist() == [2, 0, 1]
    corpus, labels = read_train(write(tmp_path / "train_set.csv", "label\ttext\n0\t1 2\n1\t3\n\n\n"))
    assert len(corpus) == len(labels) == 2


def test_largest_id_is_accepted_and_checked_when_read(tmp_path):
    corpus = read_test(write(tmp_path / "t.csv", "text\n2147483647 0\n"))
    assert corpus.doc(0).tolist() == [2**31 - 1, 0]


def test_duplicate_documents_share_a_group(tmp_path):
    write(tmp_path / "train_set.csv", "label\ttext\n0\t1 2\n1\t3 4\n0\t1 2\n1\t5\n")
    data = NewsCompetition().load_train(tmp_path)
    assert data.groups[0] == data.groups[2] and len(set(data.groups.tolist())) == 3
    assert [p.name for p in data.sources] == ["train_set.csv"]


def test_irregular_spacing_is_parsed_exactly(tmp_path):
    corpus = read_test(write(tmp_path / "t.csv", "text\n 1  2 3 \n4\n"))
    assert corpus.lengths.tolist() == [3, 1] and corpus.doc(0).tolist() == [1, 2, 3]


@pytest.mark.parametrize(
    ("name", "content", "line", "fragment"),
    [
        ("train_set.csv", "label\ttext\n0\t1 2\n1\t3 x4 5\n", 3, "'x4'"),
        ("train_set.csv", "label\ttext\n0\t1 2\n1\t3 -4\n", 3, "'-4'"),
        ("train_set.csv", "label\ttext\n0\t1 2\n1\t3 99999999999\n", 3, "99999999999"),
        ("train_set.csv", "label\ttext\n0\t1 2\n1\t3 2147483648\n", 3, "'2147483648' is not an integer id"),
        ("test_a.csv", "text\n1 2\n4294967296 5\n", 3, "'4294967296' is not an integer id"),
        ("train_set.csv", "label\ttext\n", 1, "no documents (only a header)"),
        ("test_a.csv", "text\n", 1, "no documents (only a header)"),
        ("train_set.csv", "label\ttext\n0\t1 2\n1\t3 4\n7\t5\n", 4, "label 7 is outside the classes 0..2"),
        ("train_set.csv", "label\ttext\n0\t1 2\n-1\t3 4\n", 3, "outside the classes"),
        ("train_set.csv", "label\ttext\n0\t1 2\nsport\t3 4\n", 3, "'sport' is not an integer"),
        ("train_set.csv", "label\ttext\n0\t1 2\n1\t\n", 3, "empty text"),
        ("train_set.csv", "label\ttext\n0\t1 2\n1\t3\t4\n", 3, "3 tab-separated fields, expected 2"),
        ("train_set.csv", "label,text\n0,1 2\n1,3 4\n", 1, "comma-separated"),
        ("train_set.csv", "text\n1 2\n", 1, "expected 'label<TAB>text'"),
        ("train_set.csv", "label\n0\n", 1, "expected 'label<TAB>text'"),
        ("test_a.csv", "label\ttext\n0\t1 2\n", 1, "must not have a label column"),
        ("test_a.csv", "text\n1 2\n3 4.5\n", 3, "'4.5'"),
    ],
)
def test_bad_input_names_file_and_line(tmp_path, name, content, line, fragment):
    path = write(tmp_path / name, content)
    reader = read_train if name.startswith("train") else read_test
    with pytest.raises(UserError) as err:
        corpus = reader(path)
        (corpus[0] if isinstance(corpus, tuple) else corpus).lengths  # noqa: B018  (ids are parsed lazily)
    message = str(err.value)
    assert message.startswith(f"{path}:{line}:"), message
    assert fragment in message, message


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        NewsCompetition().load_train(tmp_path)


def test_two_class_file(tmp_path):
    path = write(tmp_path / "train_set.csv", "label\ttext\n1\t1 2\n0\t3\n1\t4 5\n")
    _, labels = read_train(path)
    assert sorted(set(labels.tolist())) == [0, 1]


def test_competition_loads_demo_and_attaches_unlabelled_test_text(demo_dir):
    comp = NewsCompetition()
    train = comp.load_train(demo_dir)
    test = comp.load_test(demo_dir)
    assert len(train.X) == len(train.y) == len(train.ids) == 420
    assert len(train.X.unlabelled_texts()) == len(test.X) == 60
    assert train.y.min() == 0 and train.y.max() == 13
    assert (
        comp.load_test(demo_dir, DataConfig(test_file="test_a.csv")).X.texts.tolist() == test.X.texts.tolist()
    )
    with pytest.raises(UserError, match="test file not found"):
        comp.load_test(demo_dir, DataConfig(test_file="test_b.csv"))


def test_score_and_submission(demo_dir):
    comp = NewsCompetition()
    test = comp.load_test(demo_dir)
    proba = np.eye(3)[[2, 0, 1, 1]]
    assert comp.score(np.array([2, 0, 1, 1]), proba) == 1.0
    assert comp.score(np.array([2, 0, 1, 0]), proba) < 1.0
    frame = comp.submission_frame(test, np.eye(14)[np.arange(len(test.ids)) % 14])
    assert list(frame.columns) == ["label"] and frame["label"].tolist()[:3] == [0, 1, 2]
    comp.check_submission(frame, test)
    with pytest.raises(UserError, match="rows"):
        comp.check_submission(frame.iloc[:-1], test)
    with pytest.raises(UserError, match="columns"):
        comp.check_submission(frame.rename(columns={"label": "y"}), test)
    with pytest.raises(UserError, match="integers"):
        comp.check_submission(frame.astype(float), test)


def test_corpus_from_ids_and_max_id():
    corpus = Corpus.from_ids([[1, 2], [], [7549]])
    assert corpus.lengths.tolist() == [2, 0, 1] and corpus.max_id() == 7549
