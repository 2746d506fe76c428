import numpy as np
import pytest

from common.errors import UserError
from competitions.street_char_rec.labels import BLANK, decode, decode_scores, encode, n_digits


def test_encode_pads_with_blanks():
    assert encode(["19"], 6).tolist() == [[1, 9, 10, 10, 10, 10]]


def test_round_trip_keeps_leading_zeros():
    labels = ["0", "19", "007", "123456", "5"]
    assert decode(encode(labels, 6)).tolist() == labels


def test_too_long_or_not_digits_is_a_clear_error():
    with pytest.raises(UserError, match="max_chars is 4"):
        encode(["12345"], 4)
    with pytest.raises(UserError, match="not a string of digits"):
        encode(["1a"], 6)


def test_decoding_stops_at_the_first_blank():
    assert decode(np.array([[1, BLANK, 2, 3]])).tolist() == ["1"]


def test_decode_scores_never_returns_an_empty_string():
    scores = np.zeros((1, 3, 11))
    scores[0, 0, BLANK] = 5.0
    scores[0, 0, 7] = 1.0
    scores[0, 1, 2] = 3.0
    scores[0, 2, BLANK] = 1.0
    assert decode_scores(scores).tolist() == ["72"]


def test_strata_are_digit_counts():
    assert n_digits(["1", "23", "456"]).tolist() == ["1", "2", "3"]
