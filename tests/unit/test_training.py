"""The demo CNN: fixed splits, deterministic under a seed, and at least 97% test accuracy."""

import numpy as np

from modelpress.core.data import DatasetSplits, load_dataset
from modelpress.models.train import TrainConfig, accuracy, train
from modelpress.models.zoo import DigitsCNNSpec, build_model


def test_splits_are_fixed_and_disjoint(tmp_path):
    a, b = load_dataset("sklearn-digits"), load_dataset("sklearn-digits")
    assert (len(a.y_train), len(a.y_val), len(a.y_test)) == (1257, 180, 360)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    train_rows = {r.tobytes() for r in a.x_train}
    assert not any(r.tobytes() in train_rows for r in a.x_test)
    a.save(tmp_path / "d.npz")
    c = DatasetSplits.load(tmp_path / "d.npz")
    np.testing.assert_array_equal(a.y_val, c.y_val)
    assert c.name == "sklearn-digits"


def test_training_is_deterministic_under_a_seed():
    data = load_dataset("sklearn-digits")
    cfg = TrainConfig(epochs=2, seed=3)
    states = []
    for _ in range(2):
        m = build_model(DigitsCNNSpec(), seed=cfg.seed)
        train(m, data, cfg, progress=lambda s: None)
        states.append({k: v.clone() for k, v in m.state_dict().items()})
    for k in states[0]:
        assert (states[0][k] == states[1][k]).all(), k


def test_demo_cnn_reaches_97_percent():
    data = load_dataset("sklearn-digits")
    cfg = TrainConfig()
    m = build_model(DigitsCNNSpec(), seed=cfg.seed)
    train(m, data, cfg, progress=lambda s: None)
    assert accuracy(m, data.x_test, data.y_test) >= 0.97
