"""The reader on good files and on every kind of bad input the issue lists."""

import json

import numpy as np
import pytest

from common.config import build_tree
from common.errors import UserError
from competitions.street_char_rec.competition import StreetCompetition, StreetData
from competitions.street_char_rec.reader import read_labelled, read_unlabelled


def _edit_json(data_dir, edit):
    path = data_dir / "mchar_train.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_reads_names_in_order_and_labels_as_strings(street_data):
    part = read_labelled(street_data, "mchar_train", "mchar_train.json")
    raw = json.loads((street_data / "mchar_train.json").read_text())
    assert part.names.tolist() == sorted(raw)
    assert part.labels.tolist() == ["".join(map(str, raw[n]["label"])) for n in part.names]
    test = read_unlabelled(street_data / "mchar_test_a")
    assert len(test.names) == 12 and test.labels is None


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["000003.png"]["label"].append(1), r"000003\.png.*differing lengths"),
        (
            lambda d: d["000003.png"].update(label=[12], height=[1], left=[1], top=[1], width=[1]),
            r"label 12.*0\.\.9",
        ),
        (lambda d: d["000003.png"].update(label=[-1], height=[1], left=[1], top=[1], width=[1]), r"label -1"),
        (
            lambda d: d["000003.png"].update(label=["a"], height=[1], left=[1], top=[1], width=[1]),
            r"label 'a'",
        ),
        (lambda d: d["000003.png"].pop("top"), r"000003\.png.*lacks key"),
        (lambda d: d.update({"../x.png": d["000003.png"]}), r"'\.\./x\.png' is not a plain file name"),
        (lambda d: d.update({"sub/x.png": d["000003.png"]}), r"'sub/x\.png' is not a plain file name"),
        (
            lambda d: d.update({"999999.png": d["000003.png"]}),
            r"999999\.png: listed in .*mchar_train\.json but missing",
        ),
        (lambda d: d.pop("000005.png"), r"000005\.png: present but not listed"),
        (lambda d: d.update({"000003.png": [1, 2]}), r"000003\.png.*expected an object"),
    ],
)
def test_bad_label_file_is_a_user_error_naming_it(data_copy, edit, message):
    _edit_json(data_copy, edit)
    with pytest.raises(UserError, match=message):
        StreetCompetition().load_train(data_copy)


def test_unparsable_json(data_copy):
    (data_copy / "mchar_val.json").write_text("{not json")
    with pytest.raises(UserError, match=r"mchar_val\.json: not valid JSON"):
        StreetCompetition().load_train(data_copy)


def test_empty_test_folder(data_copy):
    for p in (data_copy / "mchar_test_a").iterdir():
        p.unlink()
    with pytest.raises(UserError, match=r"mchar_test_a: no images"):
        StreetCompetition().load_test(data_copy)


def test_no_test_folder_means_no_test(data_copy):
    import shutil

    shutil.rmtree(data_copy / "mchar_test_a")
    assert StreetCompetition().load_test(data_copy) is None


def test_kfold_pools_train_and_val(street_data):
    data = StreetCompetition().load_train(street_data)
    assert len(data.X) == len(data.y) == 56 and data.folds is None
    assert data.ids[0] == "mchar_train/000000.png" and data.ids[-1] == "mchar_val/000015.png"
    assert data.strata.tolist() == [str(len(s)) for s in data.y]


def test_official_split_holds_out_the_val_folder(street_data):
    data = StreetCompetition().load_train(street_data, StreetData(split="official"))
    assert data.folds.tolist() == [-1] * 40 + [0] * 16
    with pytest.raises(UserError, match="split: Input should be 'kfold' or 'official'"):
        build_tree({"data": StreetData}, {"split": "x"})


def test_official_split_needs_val(data_copy):
    (data_copy / "mchar_val.json").unlink()
    import shutil

    shutil.rmtree(data_copy / "mchar_val")
    assert len(StreetCompetition().load_train(data_copy).y) == 40
    with pytest.raises(UserError, match="split=official needs"):
        StreetCompetition().load_train(data_copy, StreetData(split="official"))


def test_submission_checks(street_data):
    comp = StreetCompetition()
    test = comp.load_test(street_data)
    proba = np.zeros((12, 6, 11))
    proba[:, 0, 4] = proba[:, 1, 2] = 1
    proba[:, 2:, 10] = 1
    frame = comp.submission_frame(test, proba)
    assert list(frame.columns) == ["file_name", "file_code"] and frame["file_code"].tolist() == ["42"] * 12
    comp.check_submission(frame, test)
    with pytest.raises(UserError, match="row 2"):
        comp.check_submission(frame.iloc[::-1].reset_index(drop=True), test)
    bad = frame.copy()
    bad.loc[3, "file_code"] = "4x"
    with pytest.raises(UserError, match="row 5 has file_code '4x'"):
        comp.check_submission(bad, test)
    assert comp.score(np.array(["42"] * 6 + ["1"] * 6), proba) == 0.5
