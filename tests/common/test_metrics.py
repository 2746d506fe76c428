import numpy as np
import pytest

from common.errors import UserError
from common.metrics import METRICS, accuracy, get_metric, log_loss, macro_f1, string_accuracy


def test_accuracy():
    assert accuracy(np.array([0, 1, 2, 1]), np.array([0, 1, 1, 1])) == 0.75


def test_macro_f1_known_value():
    # class 0: P=1 R=1/2 F1=2/3; class 1: P=1/2 R=1 F1=2/3; class 2: F1=1 -> mean 7/9
    y_true = np.array([0, 0, 1, 2])
    y_pred = np.array([0, 1, 1, 2])
    assert macro_f1(y_true, y_pred) == pytest.approx(7 / 9)
    assert isinstance(macro_f1(y_true, y_pred), float)


def test_string_accuracy_is_whole_string():
    assert string_accuracy(["12", "345", "6"], ["12", "344", "6"]) == pytest.approx(2 / 3)
    assert string_accuracy([12, 7], ["12", "7"]) == 1.0
    with pytest.raises(ValueError):
        string_accuracy(["1"], ["1", "2"])


def test_log_loss_known_value():
    proba = np.array([[0.5, 0.5], [0.2, 0.8]])
    assert log_loss(np.array([0, 1]), proba) == pytest.approx(-(np.log(0.5) + np.log(0.8)) / 2)
    # labels order the columns
    assert log_loss(np.array(["a", "b"]), proba, labels=["a", "b"]) == pytest.approx(log_loss([0, 1], proba))


def test_get_metric_and_its_direction():
    assert get_metric("accuracy").fn is accuracy
    assert get_metric("accuracy")(np.array([1, 2]), np.array([1, 3])) == 0.5
    lower = {name for name, m in METRICS.items() if not m.greater_is_better}
    assert lower == {"log_loss", "rmse", "mae"}
    log = get_metric("log_loss")
    assert log.better(0.1, 0.2) and not log.better(0.2, 0.1) and log.direction == "minimize"
    assert get_metric("macro_f1").better(0.9, 0.8) and get_metric("macro_f1").direction == "maximize"
    with pytest.raises(UserError, match="unknown metric 'auc'.*macro_f1"):
        get_metric("auc")


def test_metric_on_transforms_predictions_and_keeps_the_direction():
    on_logits = get_metric("accuracy").on(lambda logits: logits.argmax(-1))
    assert on_logits(np.array([0, 1]), np.array([[2.0, 1.0], [0.0, 3.0]])) == 1.0
    assert on_logits.greater_is_better and on_logits.name == "accuracy"
    rmse_on = get_metric("rmse").on(lambda s: s[:, 0], lambda y: y * 2)
    assert rmse_on(np.array([1.0]), np.array([[2.0]])) == 0.0 and not rmse_on.greater_is_better


@pytest.mark.parametrize("as_str", [False, True])
def test_macro_f1_matches_sklearn_on_random_labels(as_str):
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    for _ in range(20):
        k = int(rng.integers(2, 15))
        y_true, y_pred = rng.integers(0, k, 300), rng.integers(0, k + 2, 300)
        if as_str:
            y_true, y_pred = y_true.astype(str), y_pred.astype(str)
        assert macro_f1(y_true, y_pred) == pytest.approx(f1_score(y_true, y_pred, average="macro"), abs=1e-12)


def test_balanced_accuracy_weighs_every_class_the_same():
    # class 0: 3 of 4 right, class 1: 0 of 1 right -> (0.75 + 0) / 2
    assert get_metric("balanced_accuracy")(np.array([0, 0, 0, 0, 1]), np.array([0, 0, 0, 1, 0])) == 0.375
    assert get_metric("balanced_accuracy").greater_is_better
