"""detector: reading strings from hand-made detections (order, cross-class merging, threshold, fallbacks, TTA
fusion), a fit on tiny data, and the checks of the boxes it trains on."""

import warnings

import numpy as np
import pytest

from common.errors import UserError
from common.registry import create_model
from competitions.street_char_rec import models  # noqa: F401  (registers the models)
from competitions.street_char_rec.competition import StreetCompetition
from competitions.street_char_rec.detector import decode_detections, merge_detections, read_string, tta_scales
from competitions.street_char_rec.labels import BLANK, decode_scores

from .conftest import TINY, TINY_BY_MODEL


def dets(*rows, width: int = 8) -> np.ndarray:
    """Packed detections of one image from ``(x1, y1, x2, y2, score, class[, view])`` rows."""
    out = np.zeros((width, 7))
    out[:, 4] = -1
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def test_digits_are_read_left_to_right_and_overlapping_classes_merge():
    rows = dets(
        (40, 2, 52, 30, 0.9, 5),  # right
        (2, 2, 14, 30, 0.8, 1),  # left
        (20, 2, 32, 30, 0.7, 3),  # middle ...
        (21, 3, 32, 29, 0.5, 8),  # ... also read as an 8 by its class: merged into the 3 (IoU ~0.84)
        (60, 2, 70, 30, 0.1, 4),  # below the threshold
    )
    text, proba, cut = read_string(rows[None][0], 1, score_threshold=0.3, iou=0.5, max_chars=6)
    assert text == "135" and not cut
    assert decode_scores(proba[None]).tolist() == ["135"]
    middle = proba[1]
    assert middle.argmax() == 3 and middle[8] == pytest.approx(0.5 / 1.2, rel=1e-5)  # the 8 stays as evidence
    assert proba[3, BLANK] == pytest.approx(0.9) and proba[3, 4] == pytest.approx(0.1)  # a rejected 4 after
    assert (proba[4:, BLANK] == 1).all()


def test_fallbacks_below_the_threshold_and_with_no_detection():
    weak = dets((10, 2, 20, 30, 0.2, 7), (30, 2, 40, 30, 0.1, 2))
    strings, proba, _ = decode_detections(np.stack([weak, dets()]), 1, 0.3, 0.5, 6)
    assert strings.tolist() == ["7", "1"]  # the best cluster; "1" with nothing detected
    assert decode_scores(proba).tolist() == ["7", "1"]


def test_more_digits_than_max_chars_keeps_the_most_confident():
    rows = dets(
        *[
            (10 * i, 0, 10 * i + 8, 20, s, d)
            for i, (s, d) in enumerate(zip([0.9, 0.4, 0.8, 0.95], [1, 2, 3, 4], strict=True))
        ]
    )
    strings, proba, cut = decode_detections(rows[None], 1, 0.3, 0.5, max_chars=3)
    assert strings.tolist() == ["134"] and cut == 1
    assert decode_scores(proba).tolist() == ["134"]


def test_tta_fuses_views_and_averages_their_scores():
    rows = dets(
        (10, 2, 20, 30, 0.8, 6, 0),
        (11, 3, 21, 31, 0.6, 6, 1),  # the same digit in view 1, slightly shifted
        (30, 2, 40, 30, 0.5, 9, 1),  # a digit only view 1 sees: 0.5 / 2 views = 0.25
    )
    boxes, scores = merge_detections(rows, n_views=2, iou=0.5)
    assert len(boxes) == 2
    assert scores[0, 6] == pytest.approx(0.7) and scores[1, 9] == pytest.approx(0.25)
    np.testing.assert_allclose(
        boxes[0], [(10 * 0.8 + 11 * 0.6) / 1.4, (2 * 0.8 + 3 * 0.6) / 1.4, 20.43, 30.43], atol=0.01
    )
    text, _, _ = read_string(rows, 2, score_threshold=0.3, iou=0.5, max_chars=6)
    assert text == "6"
    assert tta_scales(3) == pytest.approx([1.0, 1.2, 1 / 1.2, 1.44])


def _fit(data, **extra):
    return create_model("detector", **{**TINY, **TINY_BY_MODEL["detector"], **extra}).fit(data.X, data.y)


@pytest.mark.parametrize("extra", [{}, {"arch": "retinanet", "tta": 2}], ids=["fcos", "retinanet-tta"])
def test_predict_is_the_decode_of_predict_proba(street_data, extra):
    comp = StreetCompetition()
    data, test = comp.load_train(street_data), comp.load_test(street_data)
    model = _fit(data, **extra)
    dets_ = model.detections(test.X)
    assert dets_.shape == (12, (1 + model.tta) * model.max_detections, 7)
    for X in (test.X, data.X[np.arange(10)]):
        proba = model.predict_proba(X)
        assert proba.shape == (len(X), 6, 11)
        assert comp.predictions(proba).tolist() == model.predict(X).tolist()
    assert model.module_.scales == [1.0]  # TTA views only while predicting


def test_bf16_autocast_reaches_the_backbone_only():
    """Under the trainer's bf16 autocast (on CPU here, on CUDA in the GPU tier) the losses and the boxes stay
    float32."""
    import torch

    module = create_model("detector", **TINY, **TINY_BY_MODEL["detector"])._build_module()
    images = torch.randint(0, 255, (2, 16, 32, 3), dtype=torch.uint8)
    batch = {
        "images": images,
        "boxes": torch.tensor([[[2.0, 2.0, 10.0, 14.0]], [[12.0, 1.0, 20.0, 15.0]]]),
        "box_labels": torch.tensor([[3], [7]]),
    }
    seen = []
    first_conv = module.model.backbone.body.blocks[0][0]
    first_conv.register_forward_hook(lambda mod, inputs, output: seen.append(output.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = module.train()(batch)["loss"]
        loss.backward()
        out = module.eval()({"images": images})["logits"]
    assert seen == [torch.bfloat16, torch.bfloat16]  # the backbone, in training and in evaluation
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert out.dtype == torch.float32 and out.shape == (2, module.max_detections, 7)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda e: e["width"].__setitem__(0, 0), r"box 1 of .* has no area"),
        (lambda e: e["left"].__setitem__(0, 5000), r"box 1 of .* lies outside the \d+x\d+ image"),
    ],
)
def test_impossible_boxes_are_refused_before_training(data_copy, edit, message):
    import json

    path = data_copy / "mchar_train.json"
    raw = json.loads(path.read_text())
    edit(raw["000004.png"])
    path.write_text(json.dumps(raw))
    data = StreetCompetition().load_train(data_copy)  # the other models still read this data
    with pytest.raises(UserError, match=r"mchar_train/000004\.png: " + message):
        create_model("detector", **TINY).check_data(data.X, data.y)


def test_labels_longer_than_max_chars_are_accepted(street_data):
    data = StreetCompetition().load_train(street_data)
    model = create_model("detector", **TINY, max_chars=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.check_data(data.X, data.y)  # labels of up to 6 digits, max_chars 2: fine (outputs are cut)
    with pytest.raises(UserError, match="carry no digit boxes"):
        model.check_data(data.X.__class__(data.X.paths, data.X.cache_dir, "x"), data.y)
