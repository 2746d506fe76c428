import numpy as np
import pytest

from common.errors import UserError
from competitions.news_text_cls import tokenizer as tok


@pytest.fixture()
def flat():
    # id 7 x4, 3750 x3, 12 x2, 5 x1
    return np.array([7, 3750, 7, 12, 7, 3750, 5, 12, 7, 3750], dtype=np.int32)


def test_special_tokens_first_then_by_frequency(flat):
    tokenizer = tok.build_tokenizer(flat)
    vocab = tokenizer.get_vocab()
    assert [vocab[t] for t in tok.SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    assert [vocab[t] for t in ("7", "3750", "12", "5")] == [5, 6, 7, 8]
    assert (tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.cls_token_id) == (0, 1, 2)
    assert (tokenizer.sep_token_id, tokenizer.mask_token_id) == (3, 4)


def test_round_trip_through_save_and_load(tmp_path, flat):
    tokenizer = tok.build_tokenizer(flat, min_count=2)  # id 5 is seen once: [UNK]
    tokenizer.save_pretrained(str(tmp_path))
    loaded = tok.load_tokenizer(tmp_path)
    encoded = loaded("7 12 5 99999")["input_ids"]
    assert encoded == [tok.CLS_ID, 5, 7, tok.UNK_ID, tok.UNK_ID, tok.SEP_ID]
    assert loaded.decode(encoded, skip_special_tokens=True) == "7 12"
    assert loaded.convert_ids_to_tokens(encoded)[1:-1] == ["7", "12", "[UNK]", "[UNK]"]


def test_numpy_lookup_matches_the_tokenizer(flat):
    tokenizer = tok.build_tokenizer(flat, min_count=2)
    ids = np.array([7, 5, 3750, 12, 8000, 0], dtype=np.int32)
    expected = tokenizer(" ".join(map(str, ids)), add_special_tokens=False)["input_ids"]
    assert tok.encode(ids, tok.id_lookup(tokenizer)).tolist() == expected


def test_count_ids_over_several_arrays():
    counts = tok.count_ids(np.array([1, 1, 4]), np.array([], dtype=np.int32), np.array([9, 1]))
    assert counts.tolist() == [0, 3, 0, 0, 1, 0, 0, 0, 0, 1]


def test_missing_tokenizer_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no tokenizer.json"):
        tok.load_tokenizer(tmp_path)
