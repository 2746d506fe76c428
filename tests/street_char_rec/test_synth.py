import json
import shutil
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from PIL import Image, ImageFont

from common.errors import UserError
from competitions.street_char_rec import synth
from competitions.street_char_rec.synth import (
    BUNDLED_FONTS,
    bundled_fonts,
    find_fonts,
    font_has_digits,
    render,
    write_dataset,
)


def test_layout_labels_and_boxes(street_data):
    for folder, n in (("mchar_train", 40), ("mchar_val", 16), ("mchar_test_a", 12)):
        names = sorted(p.name for p in (street_data / folder).iterdir())
        assert names == [f"{i:06d}.png" for i in range(n)]
    assert not (street_data / "mchar_test_a.json").exists()
    test_labels = json.loads((street_data / synth.TEST_LABELS).read_text())  # for scoring, beside the data
    assert sorted(test_labels) == [f"{i:06d}.png" for i in range(12)]
    labels = json.loads((street_data / "mchar_train.json").read_text())
    assert sorted(labels) == [f"{i:06d}.png" for i in range(40)]
    for name, entry in labels.items():
        assert sorted(entry) == ["height", "label", "left", "top", "width"]
        n = len(entry["label"])
        assert 1 <= n <= 6 and all(len(v) == n for v in entry.values())
        assert all(0 <= d <= 9 for d in entry["label"])
        with Image.open(street_data / "mchar_train" / name) as img:
            assert img.mode == "RGB"
            w, h = img.size
        for left, top, bw, bh in zip(
            entry["left"], entry["top"], entry["width"], entry["height"], strict=True
        ):
            assert bw > 0 and bh > 0
            assert -2 <= left and left + bw <= w + 2 and -2 <= top and top + bh <= h + 2
        assert entry["left"] == sorted(entry["left"])  # left to right


def test_same_seed_same_data_with_or_without_processes(tmp_path):
    a = write_dataset(tmp_path / "a", 6, 2, 2, seed=3, workers=1)
    b = write_dataset(tmp_path / "b", 6, 2, 2, seed=3, workers=2)
    assert a["images"] == b["images"] == 10
    assert (tmp_path / "a/mchar_train.json").read_text() == (tmp_path / "b/mchar_train.json").read_text()
    assert (tmp_path / "a/mchar_test_a/000001.png").read_bytes() == (
        tmp_path / "b/mchar_test_a/000001.png"
    ).read_bytes()


def test_only_fonts_shipped_with_matplotlib_by_default(tmp_path, monkeypatch):
    fonts = bundled_fonts()
    mpl_fonts = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    assert [Path(f).name for f in fonts] == list(BUNDLED_FONTS)
    assert all(Path(f).parent == mpl_fonts for f in fonts)
    assert all(font_has_digits(synth._font(f, 30)) for f in fonts)
    assert synth._font(fonts[0], 30).layout_engine == ImageFont.Layout.BASIC  # raqm depends on system libs

    def no_system_fonts(dirs):
        raise AssertionError(f"looked for fonts in {dirs}")

    monkeypatch.setattr(synth, "find_fonts", no_system_fonts)
    summary = write_dataset(tmp_path / "d", 5, 2, 2, seed=0, workers=1)
    assert summary["fonts"] == len(BUNDLED_FONTS) and len(summary["fonts_digest"]) == 12
    item = render(np.random.default_rng(0), fonts)
    assert np.asarray(item.image).std() > 5  # something was drawn


def test_fonts_dir_adds_its_fonts(tmp_path):
    assert find_fonts([tmp_path]) == []
    with pytest.raises(UserError, match="no .ttf/.otf font"):
        write_dataset(tmp_path / "d0", 1, 0, 0, workers=1, fonts_dir=tmp_path)
    with pytest.raises(UserError, match="not a folder"):
        write_dataset(tmp_path / "d0", 1, 0, 0, workers=1, fonts_dir=tmp_path / "missing")
    extra = tmp_path / "fonts"
    extra.mkdir()
    shutil.copy(bundled_fonts()[0], extra / "Extra.ttf")
    plain = write_dataset(tmp_path / "d1", 2, 0, 0, workers=1)
    more = write_dataset(tmp_path / "d2", 2, 0, 0, workers=1, fonts_dir=extra)
    assert more["fonts"] == plain["fonts"] + 1 and more["fonts_digest"] != plain["fonts_digest"]


def test_a_font_without_digit_glyphs_is_rejected():
    class NoDigits:  # every character renders as the same .notdef box
        def __init__(self):
            self.font = ImageFont.load_default(size=20)

        def getmask(self, text):
            return self.font.getmask("\u25a1")

    assert not font_has_digits(NoDigits())
