"""crnn: CTC decoding on hand-made posteriors (greedy, beam, the position probabilities), long labels, a fit."""

import warnings

import numpy as np
import pytest
import torch

from common.errors import UserError
from common.registry import create_model
from competitions.street_char_rec import models  # noqa: F401  (registers the models)
from competitions.street_char_rec.competition import StreetCompetition
from competitions.street_char_rec.crnn import (
    beam_search,
    decode_frames,
    frames_needed,
    greedy_path,
    normalise,
)
from competitions.street_char_rec.labels import BLANK, decode_scores

from .conftest import TINY, TINY_BY_MODEL

B = BLANK


def posteriors(*columns: dict) -> np.ndarray:
    """One image's (T, 11) posteriors from ``{symbol: probability}`` per column (the rest spread evenly)."""
    out = np.zeros((len(columns), 11))
    for t, col in enumerate(columns):
        rest = (1.0 - sum(col.values())) / (11 - len(col))
        out[t] = rest
        for symbol, p in col.items():
            out[t, symbol] = p
    return out


def test_greedy_merges_repeats_and_drops_blanks():
    # best path 1 1 - 1 2 2 - -> "112"; the second 1 is a new character only because a blank separates them
    probs = posteriors({1: 0.6}, {1: 0.9}, {B: 0.8}, {1: 0.7}, {2: 0.5}, {2: 0.95}, {B: 0.9})
    digits, peaks = greedy_path(probs)
    assert digits == [1, 1, 2] and peaks == [1, 3, 5]  # each character's most confident column
    assert beam_search(probs, 8) == (digits, peaks)
    strings, proba, cut = decode_frames(probs[None], max_chars=6)
    assert strings.tolist() == ["112"] and cut == 0
    np.testing.assert_allclose(proba[0, 0], probs[1], rtol=1e-6)  # character 0 = the posterior where it peaks
    assert proba[0, 3].argmax() == B and proba[0, 4, B] == 1.0  # the end, then blanks


def test_beam_search_finds_the_string_greedy_misses():
    """Column 0 says 1; columns 1-2 each lean blank (0.55) over 2 (0.45). Greedy reads "1"; summed over paths,
    "12" has 0.9 * (1 - 0.55**2) = 0.63 against "1"'s 0.9 * 0.55**2 = 0.27, and the beam search reads "12"."""
    probs = np.zeros((3, 11))
    probs[0, 1], probs[0, B] = 0.9, 0.1
    probs[1:, B], probs[1:, 2] = 0.55, 0.45
    greedy, _, _ = decode_frames(probs[None], 6, "greedy")
    beam, proba, _ = decode_frames(probs[None], 6, "beam", beam_width=4)
    assert greedy.tolist() == ["1"] and beam.tolist() == ["12"]
    assert decode_scores(proba).tolist() == ["12"]
    # the "2" peaks at column 1 where blank is likelier: the mapping still makes 2 that position's argmax
    assert proba[0, 1].argmax() == 2
    assert beam_search(probs, 1)[0] in ([1], [1, 2])  # a width-1 beam is allowed to miss it


def test_end_position_holds_the_chance_of_another_character():
    # "7", then a column that might start a 3 (0.3), then blank
    probs = posteriors({7: 0.9}, {7: 0.2, B: 0.5, 3: 0.3}, {B: 0.95})
    strings, proba, _ = decode_frames(probs[None], 4)
    assert strings.tolist() == ["7"]
    end = proba[0, 1]
    assert end.argmax() == B and end[B] == pytest.approx(0.7, abs=1e-6)  # blank + "7 continues"
    assert end[3] == pytest.approx(0.3, abs=1e-6) and end[7] == 0.0


@pytest.mark.parametrize("mode", ["greedy", "beam"])
def test_position_probabilities_decode_back_to_the_ctc_string(mode):
    """On random posteriors (peaky and flat), the (n, max_chars, 11) array decodes to exactly the CTC string, never
    empty, cut to max_chars with a warning."""
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 1, (300, 12, 11)) * rng.uniform(0.1, 6, (300, 1, 1))
    logits[:100, :, B] += 3  # mostly blank: empty decodes
    probs = np.exp(logits)
    probs /= probs.sum(-1, keepdims=True)
    with warnings.catch_warnings(record=True):
        strings, proba, cut = decode_frames(probs, 4, mode, beam_width=5)
    assert cut > 0  # some strings are longer than 4 on this noise
    assert (np.char.str_len(strings.astype(str)) >= 1).all() and (
        np.char.str_len(strings.astype(str)) <= 4
    ).all()
    assert decode_scores(proba).tolist() == strings.tolist()
    np.testing.assert_allclose(proba.sum(-1), 1.0, rtol=1e-5)


def test_an_empty_decode_reads_the_most_probable_digit():
    probs = posteriors({B: 0.6, 4: 0.3}, {B: 0.9}, {B: 0.5, 8: 0.45})
    assert greedy_path(probs)[0] == []
    strings, proba, _ = decode_frames(probs[None], 3, "greedy")
    assert strings.tolist() == ["8"] and decode_scores(proba).tolist() == ["8"]


def test_labels_longer_than_max_chars_train(street_data):
    """CTC has no max_chars: an 8-digit label is accepted (the multi-head models refuse it); one needing more
    frames than the image has columns is warned about."""
    data = StreetCompetition().load_train(street_data)
    y = data.y.astype(object)
    y[0] = "12345678"
    model = create_model("crnn", **TINY, **TINY_BY_MODEL["crnn"])  # 8 columns
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.check_data(data.X, y)
    assert frames_needed("1123") == 5
    y[1] = "11223344"
    with pytest.warns(UserWarning, match=r"1 label\(s\) need more CTC frames than the 8 columns"):
        model.check_data(data.X, y)
    assert model.fit(data.X, y) is model and np.isfinite(model.history_[-1]["train_loss"])


def test_predict_is_the_decode_of_predict_proba_with_tta_and_a_timm_backbone(street_data):
    comp = StreetCompetition()
    data, test = comp.load_train(street_data), comp.load_test(street_data)
    params = {
        **TINY,
        "img_h": 32,
        "img_w": 64,
        "backbone": "test_resnet",
        "col_stride": 8,
        "hidden": 16,
        "seq": "conv",
        "tta": 1,
    }
    model = create_model("crnn", **params).fit(data.X, data.y)
    assert model.columns() == 8  # 64 columns at col_stride 8
    for X in (test.X, data.X[np.arange(12)]):
        proba = model.predict_proba(X)
        assert proba.shape == (12, 6, 11)
        assert comp.predictions(proba).tolist() == model.predict(X).tolist()


def test_an_odd_hidden_size_is_refused_when_the_model_is_built():
    """The residual BiLSTM adds its two directions' halves back onto the frame features."""
    with pytest.raises(UserError, match="hidden: Input should be a multiple of 2"):
        create_model("crnn", hidden=3)


def test_the_default_reads_eight_frames_of_a_resnet18_at_stride_16():
    model = create_model("crnn")
    module = model._build_module()
    assert model.columns() == 8  # a 128-pixel-wide image at col_stride 16
    assert module.features.strides == [16] and module.features.channels == [256]  # resnet18's layer3


def test_the_bilstm_is_added_back_onto_its_input():
    """With the BiLSTM silenced (all weights zero: it outputs zeros), each frame still reads its own features."""
    module = create_model("crnn", backbone="small", width=8, seq="lstm", hidden=16, img_h=32, img_w=64)
    module = module._build_module().eval()
    with torch.no_grad():
        for p in module.rnn.parameters():
            p.zero_()
        images = torch.randint(0, 256, (2, 32, 64, 3), dtype=torch.uint8)
        logits = module({"images": images})["logits"]
        features = module.features(normalise(images, module.mean, module.std))[-1].mean(2).transpose(1, 2)
        torch.testing.assert_close(logits, module.head(module.proj(features)))
    assert logits.std(1).min() > 0  # frames differ: not the head's bias alone
