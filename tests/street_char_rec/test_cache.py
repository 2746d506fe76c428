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


def test_a_16_bit_grayscale_png_is_scaled_not_clipped_to_white(tmp_path):
    from competitions.street_char_rec.cache import decode

    ramp = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1024).astype(np.uint16)  # 0 .. 64512
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as img:
        assert img.mode.startswith("I")  # Pillow reads it back as 16-bit (I;16 or I)
    image = decode(tmp_path / "g16.png")
    assert image.shape == (8, 8, 3) and image.dtype == np.uint8
    assert image[0, 0, 0] == 0 and 250 <= image[-1, -1, 0] <= 255 and (image[..., 0] == image[..., 2]).all()
    assert len(np.unique(image)) > 32  # a ramp, not all white


def test_a_decompression_bomb_is_a_blank_test_image_or_a_training_error(data_copy, monkeypatch):
    from competitions.street_char_rec import cache

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # a 15000x15000 image without writing one
    test = StreetCompetition().load_test(data_copy)
    with pytest.warns(UserWarning, match="too large to decode safely"):
        arrays = test.X.arrays(SIZE)
    assert (arrays == cache.BLANK_VALUE).all()
    with pytest.raises(UserError, match="too large to decode safely"):
        StreetCompetition().load_train(data_copy).X.arrays(SIZE)


def test_a_symlink_out_of_the_image_folder_is_refused(data_copy, tmp_path):
    outside = tmp_path / "outside.png"
    Image.new("RGB", (8, 8)).save(outside)
    (data_copy / "mchar_test_a" / "zzz.png").symlink_to(outside)
    with pytest.raises(UserError, match="zzz.png: a symbolic link to .*outside"):
        StreetCompetition().load_test(data_copy)
    inside = data_copy / "mchar_test_a" / "zzz.png"
    inside.unlink()
    inside.symlink_to(data_copy / "mchar_test_a" / "000000.png")  # a link inside the folder is fine
    assert len(StreetCompetition().load_test(data_copy).ids) == 13


def test_under_torchrun_rank0_builds_the_cache_and_the_other_rank_maps_it(data_copy, tmp_path):
    import json

    from tests.common.conftest import free_port, run_python

    out = tmp_path / "out"
    out.mkdir()
    args = ["-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
            "--master_port", str(free_port()), "-m", "tests.street_char_rec.ddp_cache_worker", str(data_copy), str(out)]  # fmt: skip
    result = run_python(args, cwd=tmp_path, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0] == ranks[1] and ranks[0]["shape"] == [56, 16, 32, 3]
    assert result.stderr.count("caching 56 images") == 1  # decoded once, by rank 0
    assert len(list((data_copy / ".cache").glob("labelled-*.npy"))) == 1


def test_another_cache_dir_reuses_the_trained_folds(street_data, tmp_path, capsys):
    """``cache_dir`` says where decoded images are kept, not what was trained: a re-run with another one resumes
    the run (its complete fold skipped) instead of refusing it as trained with other data."""
    from competitions.street_char_rec.cli import main

    argv = ["train", "--model", "cnn", "--data-dir", str(street_data), "--run-dir", str(tmp_path / "run"),
            "--folds-dir", str(tmp_path / "folds"), "--submissions-dir", str(tmp_path / "subs"), "--quiet"]  # fmt: skip
    for item in ["img_h=16", "img_w=32", "epochs=1", "batch_size=16", "width=8", "split=official"]:
        argv += ["--set", item]
    assert main([*argv, "--set", f"cache_dir={tmp_path / 'cache_a'}"]) == 0
    marker = tmp_path / "run/fold0/metrics.json"
    stamp = marker.stat().st_mtime_ns
    capsys.readouterr()
    assert main([*argv, "--set", f"cache_dir={tmp_path / 'cache_b'}"]) == 0, capsys.readouterr().err
    assert marker.stat().st_mtime_ns == stamp
    assert "already complete, skipped" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("main_rank", "cache_there"),
    [(True, False), (True, True), (False, True)],
    ids=["rank0-builds", "rank0-finds", "late-rank-finds"],
)
def test_under_torchrun_every_rank_meets_the_barrier_once(
    street_data, tmp_path, monkeypatch, main_rank, cache_there
):
    """Rank 0 builds (or finds) the cache before the barrier, the others map it after: each rank calls the barrier
    exactly once whether or not the file is already there, so a rank that starts late (rank 0's file already
    written) never skips the collective rank 0 waits in."""
    from competitions.street_char_rec import cache

    paths = _train_paths(street_data)
    built = cached_images(paths, SIZE, tmp_path, "train") if cache_there else None
    caches_at_barrier = []
    monkeypatch.setattr(cache.distributed, "is_distributed", lambda: True)
    monkeypatch.setattr(cache.distributed, "init_if_needed", lambda device: None)
    monkeypatch.setattr(cache.distributed, "is_main_process", lambda: main_rank)
    monkeypatch.setattr(
        cache.distributed,
        "barrier",
        lambda: caches_at_barrier.append(len(list(tmp_path.glob("train-*.npy")))),
    )
    array = cached_images(paths, SIZE, tmp_path, "train")
    assert caches_at_barrier == [1]  # one barrier, the cache complete by then
    assert array.shape == (40, 16, 32, 3)
    if built is not None:
        assert array.filename == built.filename


def test_a_rank_whose_cache_rank0_failed_to_build_says_so(street_data, tmp_path, monkeypatch):
    from competitions.street_char_rec import cache

    monkeypatch.setattr(cache.distributed, "is_distributed", lambda: True)
    monkeypatch.setattr(cache.distributed, "init_if_needed", lambda device: None)
    monkeypatch.setattr(cache.distributed, "is_main_process", lambda: False)
    monkeypatch.setattr(cache.distributed, "barrier", lambda: None)
    with pytest.raises(UserError, match="rank 0 did not build"):
        cached_images(_train_paths(street_data), SIZE, tmp_path, "train")
    assert not list(tmp_path.glob("*.npy"))  # a non-main rank never decodes
