import numpy as np
import pandas as pd
import pytest

from common.errors import UserError
from common.folds import get_folds, load_folds, make_folds


def _data(n=100, seed=0):
    rng = np.random.default_rng(seed)
    ids = np.array([f"id{i}" for i in range(n)])
    strata = rng.choice(["a", "b", "c"], size=n, p=[0.6, 0.3, 0.1])
    return ids, strata


def test_stratified():
    ids, strata = _data()
    frame = make_folds(ids, strata, n_folds=5, seed=1)
    assert sorted(frame["fold"].unique()) == [0, 1, 2, 3, 4]
    for label in "abc":
        per_fold = frame[frame["label"] == label]["fold"].value_counts()
        assert per_fold.max() - per_fold.min() <= 1  # each class spread evenly
    assert frame["id"].tolist() == ids.tolist()


def test_seed_changes_assignment():
    ids, strata = _data()
    a = make_folds(ids, strata, 5, seed=1)["fold"]
    assert a.equals(make_folds(ids, strata, 5, seed=1)["fold"])
    assert not a.equals(make_folds(ids, strata, 5, seed=2)["fold"])


def test_saved_csv_is_reused(tmp_path):
    ids, strata = _data()
    folds, path = get_folds(tmp_path, ids, strata, 5, 42)
    mtime, content = path.stat().st_mtime_ns, path.read_bytes()
    again, path2 = get_folds(tmp_path, ids, strata, 5, 42)
    assert path2 == path
    assert path.stat().st_mtime_ns == mtime and path.read_bytes() == content
    assert np.array_equal(folds, again)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    # other data or another k gets its own file
    _, other = get_folds(tmp_path, ids, strata, 3, 42)
    assert other != path


def test_folds_file_from_other_data_is_refused(tmp_path):
    ids, strata = _data()
    _, path = get_folds(tmp_path, ids, strata, 5, 42)
    other_ids, other_strata = _data(seed=1)
    with pytest.raises(UserError, match="other data"):
        load_folds(path, other_ids, other_strata, 5)
    with pytest.raises(UserError, match="100 rows but the data has 99"):
        load_folds(path, ids[:99], strata[:99], 5)
    frame = pd.read_csv(path).drop(columns=["label"])
    frame.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(UserError, match="missing column"):
        load_folds(tmp_path / "bad.csv", ids, strata, 5)
    with pytest.raises(UserError, match="expected folds 0..5"):
        load_folds(path, ids, strata, 6)


def test_too_few_rows():
    with pytest.raises(UserError):
        make_folds(["a", "b"], [0, 1], n_folds=3)
