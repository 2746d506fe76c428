"""The bench's Datawhale reference and scoring run end to end on the tiny street data."""

import json
import shutil

from bench.street_bench_data import read_test_labels, score
from bench.street_references import datawhale_resnet18
from competitions.street_char_rec.synth import write_dataset


def test_reference_predicts_every_test_image_and_is_scored(tmp_path):
    data = tmp_path / "data"
    write_dataset(data, n_train=24, n_val=8, n_test=6, seed=2, workers=1)
    # a bench folder keeps the test labels beside the images: reuse the val labels' format for the test images
    shutil.copytree(data / "mchar_val", data / "mchar_test_a", dirs_exist_ok=True)
    labels = json.loads((data / "mchar_val.json").read_text())
    (data / "test_labels.json").write_text(json.dumps(labels))
    result = datawhale_resnet18(data, epochs=1, batch_size=8, num_workers=0, log=lambda line: None)
    assert sorted(result["predictions"]) == sorted(p.name for p in (data / "mchar_test_a").iterdir())
    assert all(set(s) <= set("0123456789") for s in result["predictions"].values())
    assert len(result["history"]) == 1 and result["seconds"] > 0
    truth = read_test_labels(data)
    assert score(data, truth) == 1.0
    assert 0.0 <= score(data, result["predictions"]) <= 1.0
    assert score(data, {}) == 0.0
