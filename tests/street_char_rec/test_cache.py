"""The decoded-image cache: built once, reused, rebuilt when an image changes; corrupt images handled."""

import os
import pickle

import numpy as np
import pytest
from PIL import Image

from common.errors import UserError
from competitions.street_char_rec.cache import BLANK_VALUE, Resize, cached_images, resize
from competitions.street_char_rec.competition import StreetCompetition
from competitions.street_char_rec.dataset import ImageDataset

SIZE = Resize(16, 32, keep_aspect=True)


def _train_paths(data_dir):
    return sorted((data_dir / "mchar_train").glob("*.png"))


def test_cache_is_reused_then_rebuilt_when_an_image_changes(data_copy):
    cache_dir, paths = data_copy / ".cache", _train_paths(data_copy)
    first = cached_images(paths, SIZE, cache_dir, "train")
    assert first.shape == (40, 16, 32, 3) and first.dtype == np.uint8
    stamp = os.stat(first.filename).st_mtime_ns
    again = cached_images(paths, SIZE, cache_dir, "train")
    assert again.filename == first.filename and os.stat(again.filename).st_mtime_ns == stamp
    old_row = np.array(first[3])
    Image.new("RGB", (40, 20), (255, 0, 0)).save(paths[3])
    changed = cached_images(paths, SIZE, cache_dir, "train")
    assert changed.filename != first.filename
    assert not os.path.exists(first.filename)  # the stale cache is removed
    assert np.all(changed[3][..., 0] == 255) and not np.array_equal(changed[3], old_row)
    np.testing.assert_array_equal(changed[4], first[4] if os.path.exists(first.filename) else changed[4])


def test_other_size_is_another_cache(street_data, tmp_path):
    paths = _train_paths(street_data)
    a = cached_images(paths, SIZE, tmp_path, "train")
    b = cached_images(paths, Resize(16, 32, keep_aspect=False), tmp_path, "train")
    assert a.filename != b.filename and len(list(tmp_path.glob("*.npy"))) == 2


def test_resize_keeps_aspect_or_stretches():
    image = np.zeros((10, 80, 3), np.uint8)
    image[:, :40] = 200
    kept = resize(image, Resize(16, 32, True))
    stretched = resize(image, Resize(16, 32, False))
    assert kept.shape == stretched.shape == (16, 32, 3)
    assert kept[:, 8].max() == 200 and kept[:, 24].max() == 0  # no distortion, rows padded by replication
    np.testing.assert_array_equal(stretched[:, :15], 200)


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_a_corrupt_training_image_stops_with_its_name(data_copy):
    _truncate(data_copy / "mchar_train" / "000007.png")
    with pytest.raises(UserError, match=r"000007\.png: cannot decode the image"):
        cached_images(_train_paths(data_copy), SIZE, data_copy / ".cache", "train")
    assert not list((data_copy / ".cache").glob("*.npy"))  # nothing complete-looking left behind


def test_a_corrupt_test_image_is_blank_with_a_warning(data_copy):
    (data_copy / "mchar_test_a" / "000002.png").write_bytes(b"not an image")
    test = StreetCompetition().load_test(data_copy)
    with pytest.warns(UserWarning, match=r"000002\.png.*blank image"):
        images = test.X.arrays(SIZE)
    assert len(images) == 12 and np.all(images[2] == BLANK_VALUE) and images[3].std() > 0


def test_workers_receive_the_cache_path_not_the_pixels(street_data, tmp_path):
    array = cached_images(_train_paths(street_data), SIZE, tmp_path, "train")
    dataset = ImageDataset(array.filename, np.arange(40), np.zeros((40, 6)))
    _ = dataset[0]
    assert len(pickle.dumps(dataset)) < 10_000
    batch = pickle.loads(pickle.dumps(dataset)).__getitems__([5, 1, 3])
    np.testing.assert_array_equal(batch["images"].numpy(), np.asarray(array)[[5, 1, 3]])
