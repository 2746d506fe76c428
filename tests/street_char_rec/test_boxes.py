"""Digit boxes: read from the JSON, mapped onto the cached images (round trip, and onto the very pixels the cache
writes), moved with the augmentation, and refused when they cannot be a digit."""

import json

import numpy as np
import pytest

from common.errors import UserError
from competitions.street_char_rec.boxes import check_boxes, image_sizes, to_original, to_resized
from competitions.street_char_rec.cache import Resize, resize
from competitions.street_char_rec.competition import StreetCompetition
from competitions.street_char_rec.dataset import BoxDataset
from competitions.street_char_rec.reader import read_labelled
from competitions.street_char_rec.transforms import AugParams, train_transform

SIZES = [(37, 91), (64, 40), (20, 20), (123, 57)]


def test_reader_exposes_the_boxes_of_every_labelled_image(street_data):
    part = read_labelled(street_data, "mchar_train", "mchar_train.json")
    raw = json.loads((street_data / "mchar_train.json").read_text())
    for name, boxes in zip(part.names, part.boxes, strict=True):
        entry = raw[name]
        expected = np.array([entry["left"], entry["top"], entry["width"], entry["height"]], dtype=float).T
        np.testing.assert_array_equal(boxes, expected)
    data = StreetCompetition().load_train(street_data)
    assert len(data.X.boxes) == len(data.y) == 56
    subset = data.X[np.array([3, 50])]
    assert [len(b) for b in subset.row_boxes()] == [len(data.y[3]), len(data.y[50])]
    sizes = image_sizes(subset.paths[subset.rows])
    assert sizes.shape == (2, 2) and (sizes > 0).all()


def test_a_box_that_is_not_a_finite_number_is_a_reader_error(data_copy):
    path = data_copy / "mchar_train.json"
    raw = json.loads(path.read_text())
    raw["000002.png"]["top"][0] = float("nan")  # Python's json reads and writes NaN
    path.write_text(json.dumps(raw))
    with pytest.raises(UserError, match=r"000002\.png.*top nan; expected finite numbers"):
        StreetCompetition().load_train(data_copy)


@pytest.mark.parametrize("keep_aspect", [True, False])
@pytest.mark.parametrize("size_hw", SIZES)
def test_to_resized_and_back_is_the_identity(size_hw, keep_aspect):
    rng = np.random.default_rng(0)
    h, w = size_hw
    left, top = rng.uniform(0, w / 2, 5), rng.uniform(0, h / 2, 5)
    boxes = np.stack([left, top, rng.uniform(1, w - left), rng.uniform(1, h - top)], axis=1)
    size = Resize(32, 64, keep_aspect)
    moved = to_resized(boxes, size_hw, size)
    assert (moved[:, [0, 2]] >= 0).all() and (moved[:, [0, 2]] <= 64 + 1e-4).all()
    assert (moved[:, [1, 3]] >= 0).all() and (moved[:, [1, 3]] <= 32 + 1e-4).all()
    np.testing.assert_allclose(to_original(moved, size_hw, size), boxes, atol=1e-3)


@pytest.mark.parametrize("keep_aspect", [True, False])
@pytest.mark.parametrize("size_hw", SIZES)
def test_boxes_land_on_the_pixels_the_cache_writes(size_hw, keep_aspect):
    """A red box drawn in the original image is, after the cache's resize, where to_resized says (to a pixel)."""
    h, w = size_hw
    box = np.array([[w * 0.3, h * 0.2, w * 0.4, h * 0.5]]).round()
    image = np.zeros((h, w, 3), dtype=np.uint8)
    x0, y0, bw, bh = box[0].astype(int)
    image[y0 : y0 + bh, x0 : x0 + bw, 0] = 255
    size = Resize(48, 96, keep_aspect)
    out = resize(image, size)
    ys, xs = np.nonzero(out[..., 0] > 127)
    found = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    np.testing.assert_allclose(found, to_resized(box, size_hw, size)[0], atol=1.0)


def test_boxes_past_the_border_are_clipped_and_impossible_boxes_refused():
    hw = (20, 40)
    clipped = to_resized(np.array([[-5, -3, 15, 30]]), hw, Resize(20, 40))
    np.testing.assert_allclose(clipped, [[0, 0, 10, 20]])
    check_boxes(np.array([[-5, -3, 15, 30]]), hw, "1", "a.png")  # reaches past the border: fine
    with pytest.raises(UserError, match=r"a\.png: box 2 of '12' .*width 0.*has no area"):
        check_boxes(np.array([[1, 1, 5, 5], [6, 1, 0, 5]]), hw, "12", "a.png")
    with pytest.raises(UserError, match=r"a\.png: box 1 of '1' .*lies outside the 40x20 image"):
        check_boxes(np.array([[45, 1, 5, 5]]), hw, "1", "a.png")
    with pytest.raises(UserError, match=r"a\.png: 1 box\(es\) for the 2 digit\(s\)"):
        check_boxes(np.array([[1, 1, 5, 5]]), hw, "12", "a.png")


def test_augmentation_moves_the_boxes_with_the_image(tmp_path):
    """Bright rectangles on black, heavily augmented: the boxes the dataset returns still frame bright pixels."""
    rng = np.random.default_rng(0)
    images = np.zeros((8, 32, 64, 3), dtype=np.uint8)
    boxes, digits = [], []
    for i in range(8):
        b = np.array([[6, 6, 20, 26], [30, 8, 46, 28]], dtype=np.float32) + rng.integers(-4, 5, (2, 1))
        for x1, y1, x2, y2 in b.astype(int):
            images[i, y1:y2, x1:x2] = 255
        boxes.append(b)
        digits.append(np.array([3, 7]))
    np.save(tmp_path / "cache.npy", images)
    import albumentations as A

    aug = AugParams(rotate=10, scale=0.15, shift=0.1, color=0.0, blur_p=0, noise_p=0, dropout_p=0)
    bbox = A.BboxParams(format="pascal_voc", label_fields=["digits"], min_visibility=0.3, clip=True)
    transform = A.Compose(train_transform(aug).transforms, bbox_params=bbox)
    dataset = BoxDataset(tmp_path / "cache.npy", np.arange(8), None, boxes, digits, transform)
    batch = dataset.__getitems__(list(range(8)))
    assert batch["images"].shape == (8, 32, 64, 3) and batch["boxes"].shape[2] == 4
    moved = 0
    arrays = (batch["images"].numpy(), batch["boxes"].numpy(), batch["box_labels"].numpy())
    for i, (image, bxs, labels) in enumerate(zip(*arrays, strict=True)):
        for (x1, y1, x2, y2), label in zip(bxs, labels, strict=True):
            if label < 0:
                continue
            assert label in (3, 7)
            inside = image[int(y1) : int(np.ceil(y2)), int(x1) : int(np.ceil(x2)), 0]
            assert inside.mean() > 150, (x1, y1, x2, y2)  # the box still frames the rectangle's pixels
        kept = bxs[labels >= 0]
        moved += len(kept) != 2 or not np.allclose(kept, boxes[i])
    assert moved  # the augmentation did move them
