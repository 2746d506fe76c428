import numpy as np
import pandas as pd
import pytest

from common.errors import UserError
from common.submission import archive_name, write_frame, write_submission


def test_writes_then_refuses_to_overwrite(toy_data, tmp_path):
    comp, _, test = toy_data
    proba = np.eye(3)[np.arange(len(test.ids)) % 3]
    path = write_submission(comp, test, proba, tmp_path / "sub.csv")
    frame = pd.read_csv(path)
    assert list(frame.columns) == ["id", "label"] and len(frame) == len(test.ids)
    before = path.read_bytes()
    with pytest.raises(UserError, match="refusing to overwrite"):
        write_submission(comp, test, proba[:, ::-1], path)
    assert path.read_bytes() == before
    write_submission(comp, test, proba[:, ::-1], path, overwrite=True)
    assert path.read_bytes() != before


def test_check_submission_errors_leave_nothing(toy_data, tmp_path):
    comp, _, test = toy_data
    bad = pd.DataFrame({"id": test.ids[:-1], "label": 0})
    with pytest.raises(UserError, match="bad submission"):
        write_frame(comp, test, bad, tmp_path / "sub.csv")
    with pytest.raises(UserError, match="columns"):
        write_frame(comp, test, pd.DataFrame({"id": test.ids, "y": 0}), tmp_path / "sub.csv")
    assert list(tmp_path.glob("sub*")) == []


def test_archive_name(tmp_path):
    path = archive_name("toy", "toy_mlp", 0.123456, tmp_path)
    assert path.parent == tmp_path / "toy"
    assert path.name.startswith("toy_mlp-cv0.12346-") and path.suffix == ".csv"


def test_archive_name_never_collides(tmp_path):
    first = archive_name("toy", "m", 0.5, tmp_path)
    first.parent.mkdir(parents=True)
    first.write_text("x")
    second = archive_name("toy", "m", 0.5, tmp_path)
    if second.name[:-4].rsplit("-", 1)[0] == first.name[:-4]:  # same second
        assert second.name.endswith("-2.csv")
    assert second != first and not second.exists()
