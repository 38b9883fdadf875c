import math

import numpy as np
import pytest

from depressionmlp import metrics as M


def test_regression_metrics_hand_computed():
    y = np.array([10.0, 20.0, 0.0, 40.0])
    p = np.array([12.0, 17.0, 0.0, 44.0])
    r = M.regression_metrics(y, p)
    assert r["rmse"] == pytest.approx(math.sqrt((4 + 9 + 0 + 16) / 4))          # Eq. 21
    assert r["mae"] == pytest.approx((2 + 3 + 0 + 4) / 4)                       # Eq. 22
    ss_tot = sum((v - 17.5) ** 2 for v in y)
    assert r["r2"] == pytest.approx(1 - 29 / ss_tot)                            # Eq. 23
    # Eq. 24, the 0/0 term counts 0
    assert r["smape"] == pytest.approx(100 * (2 / 11 + 3 / 18.5 + 0 + 4 / 42) / 4)
    assert r["n"] == 4


def test_aggregate_by_recording_means_in_first_seen_order():
    ids = ["b", "a", "b", "a", "c"]
    pred = [1.0, 10.0, 3.0, 20.0, 7.0]
    lab = [5, 30, 5, 30, 9]
    rid, rp, rl = M.aggregate_by_recording(ids, pred, lab)
    assert list(rid) == ["b", "a", "c"]
    np.testing.assert_allclose(rp, [2.0, 15.0, 7.0])
    np.testing.assert_allclose(rl, [5, 30, 9])


def test_severity_classes_bdi2_and_phq8_boundaries():
    np.testing.assert_array_equal(M.severity_class([0, 13, 13.9, 14, 19, 20, 28, 29, 63]),
                                  [0, 0, 0, 1, 1, 2, 2, 3, 3])
    np.testing.assert_array_equal(M.severity_class([0, 4, 5, 9, 10, 14, 15, 19, 20, 24], "phq8"),
                                  [0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    assert M.severity_name(25) == "moderate"
    with pytest.raises(ValueError, match="unknown severity scale"):
        M.severity_class([1], "hamd")


def test_classification_metrics_accuracy_and_auc():
    y = np.array([5, 10, 30, 40])
    p = np.array([8, 16, 35, 12])       # classes: 0,1,3,0 vs true 0,0,3,3
    r = M.classification_metrics(y, p)
    assert r["accuracy_classes"] == pytest.approx(0.5)
    assert r["accuracy_2class"] == pytest.approx(0.5)   # true >=14: F,F,T,T; pred: F,T,T,F
    # AUC of scores [8,16 | 35,12]: pairs (35>8,35>16,12>8,12<16) -> 3/4
    assert r["roc_auc_2class"] == pytest.approx(0.75)
    assert np.asarray(r["confusion"]).sum() == 4


def test_mean_predictor_and_bad_shapes():
    r = M.mean_predictor_metrics([0, 10], [5, 5, 15])
    assert r["rmse"] == pytest.approx(math.sqrt((0 + 0 + 100) / 3))
    with pytest.raises(ValueError):
        M.rmse([1, 2], [1])
    with pytest.raises(ValueError):
        M.rmse([], [])
