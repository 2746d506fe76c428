import numpy as np
import pytest

from common.atomic import atomic_path, write_bytes_with, write_json, write_npy, write_text


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


def test_writes_land(tmp_path):
    write_json(tmp_path / "a" / "m.json", {"score": np.float32(0.5), "arr": np.arange(2)})
    write_npy(tmp_path / "x.npy", np.arange(3))
    assert (tmp_path / "a" / "m.json").read_text().startswith("{")
    assert np.load(tmp_path / "x.npy").tolist() == [0, 1, 2]


def test_failing_writer_leaves_no_file(tmp_path):
    def writer(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_bytes_with(tmp_path / "out.bin", writer)
    assert _leftovers(tmp_path) == []


def test_failing_writer_keeps_existing_file(tmp_path):
    target = tmp_path / "metrics.json"
    write_text(target, "old\n")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text("new, half written")
            raise KeyboardInterrupt
    assert target.read_text() == "old\n"
    assert _leftovers(tmp_path) == ["metrics.json"]


def test_unserialisable_json_leaves_nothing(tmp_path):
    with pytest.raises(TypeError):
        write_json(tmp_path / "m.json", {"x": object()})
    assert _leftovers(tmp_path) == []
