"""The learnability instruments: cue-placed corpora, the StatsRidge reference, the
default protocol's input conditioning, and the suite's table."""

import json

import keras
import numpy as np
import pytest

from depressionmlp import classical, learnability, synth, train
from depressionmlp.data.schema import AU_INTENSITY
from depressionmlp.errors import DataError
from depressionmlp.layers import (ColumnGate, ColumnJitter, FaceFrame, LevelJitter, MotionJitter,
                                  SegmentCentre, SegmentEnergy, SegmentSpeed,
                                  SplitStandardize)


# ----------------------------------------------------------------------------- corpora

def _per_recording(cue, n_subjects=40):
    rows = []
    au12 = synth._COL["AU01_r"] + AU_INTENSITY.index("AU12")
    au45 = synth._COL["AU01_r"] + AU_INTENSITY.index("AU45")
    for meta, v in synth.iter_recordings(n_subjects=n_subjects, seed=3, duration_s=(8, 10),
                                         cue=cue):
        ok = v[:, synth._COL["success"]] == 1
        rows.append((meta["true_score"], v[ok, au12].mean(), v[ok, au45].std()))
    return np.array(rows)


def test_static_cue_lowers_resting_smile_and_dynamic_does_not():
    static, dynamic = _per_recording("static"), _per_recording("dynamic")
    r_static = np.corrcoef(static[:, 0], static[:, 1])[0, 1]
    r_dynamic = np.corrcoef(dynamic[:, 0], dynamic[:, 1])[0, 1]
    assert r_static < -0.5, r_static           # less smiling at rest when severe
    assert abs(r_dynamic) < 0.35, r_dynamic    # the bundled corpus keeps levels label-free


def test_blink_cue_drives_au45_and_static_cue_does_not():
    blink, static = _per_recording("blink"), _per_recording("static")
    assert np.corrcoef(blink[:, 0], blink[:, 2])[0, 1] < -0.3
    assert abs(np.corrcoef(static[:, 0], static[:, 2])[0, 1]) < 0.35


def test_cue_plan_moves_only_its_own_channel():
    free = 10.0
    for cue in ("motion", "au_variability", "region", "static", "blink"):
        lo, hi = synth.cue_plan(cue, 0.0, free), synth.cue_plan(cue, 45.0, free)
        moved = {k for k in lo if not np.allclose(lo[k], hi[k])}
        want = {"motion": {"e_keypoints"}, "au_variability": {"e_aus"},
                "region": {"e_keypoints"}, "static": {"au_shift"},
                "blink": {"blink_rate_mult", "blink_dur_mult"}}[cue]
        assert moved == want, (cue, moved)
    region = synth.cue_plan("region", 45.0, free)
    assert np.flatnonzero(region["e_keypoints"] != synth.expressivity(free)).tolist() == \
        [synth.BROW_AXIS]
    with pytest.raises(ValueError, match="cue must be one of"):
        synth.cue_plan("smell", 1.0, 1.0)


def test_manifest_names_the_cue(tmp_path):
    m = synth.generate_corpus(tmp_path / "c", n_subjects=4, duration_s=(4, 5), cue="motion")
    assert m["parameters"]["cue"] == "motion" and m["signal"]["cue"] == "motion"
    assert "keypoint motion" in m["signal"]["where"]


# ----------------------------------------------------------------------------- StatsRidge

class _Table:
    """The SegmentTable fields StatsRidge reads."""

    def __init__(self, arrays, recording, labels, subjects):
        self.arrays, self.recording = arrays, np.asarray(recording)
        self.counts = np.bincount(self.recording)
        self.n_recordings = len(self.counts)
        self.recording_labels = np.asarray(labels, np.float32)
        self.subject_ids = np.asarray(subjects)


def _toy_table(rng, n_rec=30, per=5):
    """AU column 10's level carries the label; keypoints are noise."""
    labels = rng.uniform(0, 40, n_rec)
    rec = np.repeat(np.arange(n_rec), per)
    s = n_rec * per
    au = rng.normal(0.5, 0.2, (s, 18, 68))
    au[..., 10] += labels[rec][:, None] / 20
    x = 0.5 + rng.normal(0, 0.05, (s, 18, 68))
    y = 0.5 + rng.normal(0, 0.05, (s, 18, 68))
    arrays = {"R_X": x.astype("float32"), "R_Y": y.astype("float32"),
              "R_AU": au.astype("float32")}
    return _Table(arrays, rec, labels, [f"s{i // 2}" for i in range(n_rec)])


def test_stats_ridge_learns_a_linear_level_and_averages_exactly():
    rng = np.random.default_rng(0)
    table = _toy_table(rng)
    model = classical.StatsRidge().fit(table)
    seg = model.predict(table.arrays)[:, 0]
    per_rec = np.array([seg[table.recording == r].mean() for r in range(table.n_recordings)])
    x = classical.recording_features(table, model.streams)
    direct = (x - model.mean_) / model.scale_ @ model.coef_ + model.intercept_
    np.testing.assert_allclose(per_rec, direct, rtol=1e-9, atol=1e-9)   # affine: mean = rec
    assert np.sqrt(np.mean((per_rec - table.recording_labels) ** 2)) < 4.0
    top = model.feature_names[int(np.argmax(np.abs(model.coef_)))]
    assert top.startswith("au10_")


def test_stats_lasso_keeps_the_few_features_that_carry_a_sparse_cue(tmp_path):
    """30 recordings, 135 statistics, the label in one AU column: the lasso keeps a
    handful of coefficients, all on that column, and predicts new recordings better
    than the ridge, which spreads its weight over the noise; it saves, loads as a
    StatsLasso and predicts the same."""
    train_t, test_t = _toy_table(np.random.default_rng(7)), _toy_table(np.random.default_rng(8))
    for t in (train_t, test_t):          # a weaker cue: 1/4 of the toy's
        t.arrays["R_AU"][..., 10] -= 0.75 * t.recording_labels[t.recording][:, None] / 20

    def test_rmse(model):
        seg = model.predict(test_t.arrays)[:, 0]
        rec = np.bincount(test_t.recording, seg) / test_t.counts
        return float(np.sqrt(np.mean((rec - test_t.recording_labels) ** 2)))

    lasso = classical.StatsLasso().fit(train_t)
    ridge = classical.StatsRidge().fit(train_t)
    kept = [n for n, c in zip(lasso.feature_names, lasso.coef_) if c != 0]
    assert 1 <= len(kept) <= 10 and lasso.count_params() == len(kept) + 1
    weight = dict(zip(lasso.feature_names, np.abs(lasso.coef_)))
    on_cue = sum(w for n, w in weight.items() if n.startswith("au10_"))
    assert "au10_level" in kept and on_cue > 0.8 * sum(weight.values()), kept
    assert test_rmse(lasso) < 0.8 * test_rmse(ridge), (test_rmse(lasso), test_rmse(ridge))
    lasso.save(tmp_path / classical.MODEL_FILE)
    again = classical.load(tmp_path / classical.MODEL_FILE)
    assert type(again) is classical.StatsLasso and again.alpha_ == lasso.alpha_
    np.testing.assert_allclose(again.predict(test_t.arrays), lasso.predict(test_t.arrays))


def test_stats_ridge_keypoints_ignore_face_position_and_scale():
    rng = np.random.default_rng(1)
    x, y = rng.normal(0.5, 0.1, (2, 4, 18, 68))
    f1, _ = classical.segment_features({"R_X": x, "R_Y": y}, ("R_X", "R_Y"))
    f2, _ = classical.segment_features({"R_X": 2.5 * x + 0.3, "R_Y": 2.5 * y - 0.1},
                                       ("R_X", "R_Y"))
    np.testing.assert_allclose(f1, f2, rtol=1e-6, atol=1e-9)


def test_stats_ridge_json_round_trip_and_bad_files(tmp_path):
    rng = np.random.default_rng(2)
    table = _toy_table(rng, n_rec=12)
    model = classical.StatsRidge().fit(table)
    model.save(tmp_path / classical.MODEL_FILE)
    again = classical.load(tmp_path / classical.MODEL_FILE)
    np.testing.assert_allclose(again.predict(table.arrays), model.predict(table.arrays))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="invalid JSON"):
        classical.load(bad)
    bad.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(DataError, match="not a StatsRidge model file"):
        classical.load(bad)
    d = model.to_json()
    d["coef"] = d["coef"][:-1]
    bad.write_text(json.dumps(d))
    with pytest.raises(DataError, match="corrupt"):
        classical.load(bad)


# ----------------------------------------------------------------------------- layers

def test_face_frame_matches_numpy_and_removes_placement():
    rng = np.random.default_rng(3)
    x, y = rng.normal(0.5, 0.1, (2, 3, 6, 8)).astype("float32")
    out_x, out_y = (np.asarray(t) for t in FaceFrame()([x, y]))
    for i in range(3):
        cx, cy = x[i].mean(), y[i].mean()
        size = np.sqrt(x[i].mean(0).var() + y[i].mean(0).var())
        np.testing.assert_allclose(out_x[i], (x[i] - cx) / size, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(out_y[i], (y[i] - cy) / size, rtol=1e-4, atol=1e-5)
    moved = [np.asarray(t) for t in FaceFrame()([3 * x + 0.2, 3 * y - 0.4])]
    np.testing.assert_allclose(moved[0], out_x, rtol=1e-3, atol=1e-4)


def test_segment_energy_is_centred_motion_plus_mean_speed():
    """``y_t = x_t - mean_t x + mean_t |x_t - x_{t-1}|``, checked against NumPy; the
    face shape drops out, and a point that moves twice as far has twice the level."""
    rng = np.random.default_rng(14)
    motion = rng.normal(0, 0.02, (3, 6, 8)).astype("float32")
    shapes = rng.normal(0, 1.0, (3, 1, 8)).astype("float32")
    out = np.asarray(SegmentEnergy()(motion + shapes))
    speed = np.abs(np.diff(motion, axis=1)).mean(axis=1, keepdims=True)
    np.testing.assert_allclose(out, motion - motion.mean(1, keepdims=True) + speed, atol=1e-5)
    np.testing.assert_allclose(out.mean(axis=1), speed[:, 0], atol=1e-5)
    np.testing.assert_allclose(np.asarray(SegmentEnergy()(2 * motion + shapes)), 2 * out,
                               atol=1e-5)


def test_column_gate_scales_columns_and_adds_its_l1_penalty(tmp_path):
    """``y = g * x`` with g = 1 at initialisation and ``l1 * sum |g|`` among the model's
    losses; the option puts one gate per stream after the jitter and saves safely."""
    from depressionmlp.models import build_model
    x = np.random.default_rng(15).normal(0, 1, (2, 6, 8)).astype("float32")
    gate = ColumnGate(0.05)
    np.testing.assert_allclose(np.asarray(gate(x)), x)
    gate.gain.assign(np.arange(8, dtype="float32") - 3)
    np.testing.assert_allclose(np.asarray(gate(x)), x * (np.arange(8) - 3), atol=1e-6)
    assert float(sum(gate.losses)) == pytest.approx(0.05 * np.abs(np.arange(8) - 3).sum())
    with pytest.raises(ValueError, match="l1 must be >= 0"):
        ColumnGate(-1.0)
    model = build_model("DG+MG+Linear", segment_length=6, n_points=8, standardize="split",
                        column_jitter=1.0, column_gate_l1=0.01)
    names = [layer.name for layer in model.layers]
    assert names.index("jitter_R_AU") < names.index("column_gate_R_AU")
    assert float(sum(model.losses)) == pytest.approx(0.01 * 3 * 8)
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert again.get_layer("column_gate_R_X").get_config()["l1"] == 0.01


def test_segment_centre_keeps_motion_and_removes_face_shape():
    rng = np.random.default_rng(4)
    motion = rng.normal(0, 0.02, (3, 6, 8)).astype("float32")
    shapes = rng.normal(0, 1.0, (3, 1, 8)).astype("float32")      # one face shape each
    out = np.asarray(SegmentCentre()(motion + shapes))
    np.testing.assert_allclose(out, motion - motion.mean(1, keepdims=True), atol=1e-5)
    # two subjects with different faces and the same motion look the same
    np.testing.assert_allclose(out[0], np.asarray(SegmentCentre()(motion[:1] + shapes[1:2]))[0],
                               atol=1e-5)


def test_keypoint_levels_drop_centres_keypoints_and_keeps_au_levels():
    from depressionmlp.models import build_model
    model = build_model("DG+MG+Linear", segment_length=6, n_points=8, keypoint_frame="face",
                        keypoint_levels="drop")
    names = [layer.name for layer in model.layers]
    assert {"centre_R_X", "centre_R_Y"} <= set(names) and "centre_R_AU" not in names
    assert names.index("face_frame") < names.index("centre_R_X")
    with pytest.raises(ValueError, match="keypoint_levels"):
        build_model("DG+MG+Linear", segment_length=6, n_points=8, keypoint_levels="maybe")


def test_segment_speed_is_the_absolute_step_and_forgets_face_shape():
    rng = np.random.default_rng(5)
    pos = rng.normal(0, 0.02, (3, 6, 8)).astype("float32")
    shapes = rng.normal(0, 1.0, (3, 1, 8)).astype("float32")
    out = np.asarray(SegmentSpeed()(pos + shapes))
    step = np.abs(np.diff(pos, axis=1))
    assert out.shape == (3, 6, 8)
    np.testing.assert_allclose(out[:, 1:], step, atol=1e-5)
    np.testing.assert_allclose(out[:, 0], step[:, 0], atol=1e-5)
    # twice the motion: twice every speed, so the column means scale with motion energy
    np.testing.assert_allclose(np.asarray(SegmentSpeed()(2 * pos + shapes)), 2 * out, atol=1e-5)


@pytest.mark.parametrize("levels", ["speed", "energy"])
def test_keypoint_levels_speed_and_energy_build_and_round_trip(levels, tmp_path):
    from depressionmlp.models import build_model
    model = build_model("DG+MG+Linear", segment_length=6, n_points=8, keypoint_frame="face",
                        keypoint_levels=levels, standardize="split")
    names = [layer.name for layer in model.layers]
    assert {f"{levels}_R_X", f"{levels}_R_Y"} <= set(names) and f"{levels}_R_AU" not in names
    assert (names.index("face_frame") < names.index(f"{levels}_R_X")
            < names.index("standardize_R_X"))
    rng = np.random.default_rng(2)
    arrays = {s: rng.normal(0.5, 0.1, (4, 6, 8)).astype("float32") for s in model.input}
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(again.predict(arrays, verbose=0),
                               model.predict(arrays, verbose=0), atol=1e-6)


def test_au_levels_interleave_reads_eq3_interpolated_columns_as_energy(tmp_path):
    """au_levels = "interleave": the AU columns of Eq. 3 (even 0-based indices) keep
    their frames, so resting levels (a static cue) survive; the interpolated ones
    (odd) become centred motion plus mean speed. Checked against NumPy."""
    from depressionmlp.models import build_model
    from depressionmlp.data.segments import widen_aus
    rng = np.random.default_rng(4)
    au = widen_aus(rng.uniform(0, 3, (3, 6, 35)), 68)                       # (3, 6, 68)
    out = np.asarray(SegmentEnergy(columns="odd")(au))
    np.testing.assert_array_equal(out[..., ::2], au[..., ::2])               # every AU, as is
    odd = au[..., 1::2]
    speed = np.abs(np.diff(odd, axis=1)).mean(1, keepdims=True)
    np.testing.assert_allclose(out[..., 1::2], odd - odd.mean(1, keepdims=True) + speed,
                               atol=1e-5)
    # a subject with higher AU baselines: the kept columns move, the read ones do not
    shifted = np.asarray(SegmentEnergy(columns="odd")(au + 1.5))
    np.testing.assert_allclose(shifted[..., ::2], out[..., ::2] + 1.5, atol=1e-5)
    np.testing.assert_allclose(shifted[..., 1::2], out[..., 1::2], atol=1e-5)
    with pytest.raises(ValueError, match="columns"):
        SegmentEnergy(columns="even")
    model = build_model("DG+MG+Linear", segment_length=6, n_points=8, keypoint_frame="face",
                        keypoint_levels="energy", au_levels="interleave", standardize="split")
    names = [layer.name for layer in model.layers]
    assert names.index("energy_R_AU") < names.index("standardize_R_AU")
    assert model.get_layer("energy_R_AU").columns == "odd"
    assert model.get_layer("energy_R_X").columns == "all"
    plain = build_model("DG+MG+Linear", segment_length=6, n_points=8, keypoint_frame="face",
                        keypoint_levels="energy", standardize="split")
    assert "energy_R_AU" not in [layer.name for layer in plain.layers]
    assert model.count_params() == plain.count_params()
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert again.get_layer("energy_R_AU").columns == "odd"
    arrays = {s: rng.normal(0.5, 0.1, (4, 6, 8)).astype("float32") for s in model.input}
    np.testing.assert_allclose(again.predict(arrays, verbose=0),
                               model.predict(arrays, verbose=0), atol=1e-6)
    with pytest.raises(ValueError, match="au_levels"):
        build_model("DG+MG+Linear", segment_length=6, n_points=8, au_levels="speed")


def test_split_standardize_keeps_only_motion_of_centred_columns():
    rng = np.random.default_rng(6)
    data = rng.normal(0, 0.02, (40, 12, 4)).astype("float32")
    data[..., :2] -= data[..., :2].mean(1, keepdims=True)          # two centred columns
    data[..., 2:] += rng.normal(0, 2.0, (40, 1, 2)).astype("float32")
    layer = SplitStandardize()
    layer.adapt(data)
    out = np.asarray(layer(data))
    motion = data - data.mean(1, keepdims=True)
    np.testing.assert_allclose(out[..., :2], motion[..., :2]
                               / np.sqrt((motion[..., :2] ** 2).mean((0, 1))), atol=1e-5)
    np.testing.assert_allclose(out[..., 2:].mean(1).std(0), 1, atol=1e-3)   # levels kept


def test_column_jitter_is_one_offset_per_column_in_training_only():
    x = np.zeros((64, 18, 68), "float32")
    layer = ColumnJitter(0.7, seed=1)
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)
    noisy = np.asarray(layer(x, training=True))
    np.testing.assert_allclose(noisy, np.broadcast_to(noisy[:, :1], noisy.shape))
    assert abs(noisy[:, 0].std() - 0.7) < 0.05
    with pytest.raises(ValueError, match="stddev"):
        ColumnJitter(-1.0)
    # group = 8: runs of 8 samples (one recording's draws) share their offsets
    grouped = ColumnJitter(0.7, group=8, seed=1)
    noisy = np.asarray(grouped(x[:60], training=True))[:, 0]          # 60 = 7 x 8 + 4
    for start in range(0, 60, 8):
        np.testing.assert_array_equal(noisy[start:start + 8],
                                      np.broadcast_to(noisy[start], noisy[start:start + 8].shape))
    assert not np.allclose(noisy[0], noisy[8])
    assert ColumnJitter.from_config(grouped.get_config()).group == 8
    with pytest.raises(ValueError, match="group"):
        ColumnJitter(0.7, group=0)


def test_column_jitter_per_stream_builds_each_streams_own_sd():
    """model.column_jitter as a table: each stream's ColumnJitter gets its own sd, a
    stream left out (or at 0) gets none; bad streams and values are ValueErrors."""
    from depressionmlp.models import build_model
    model = build_model("DG+MG+Linear", "all", column_jitter={"R_X": 1.5, "R_Y": 1.5,
                                                                "R_AU": 0.0})
    sds = {l.name: l.stddev for l in model.layers if isinstance(l, ColumnJitter)}
    assert sds == {"jitter_R_X": 1.5, "jitter_R_Y": 1.5}
    with pytest.raises(ValueError, match="streams must be among"):
        build_model("DG+MG+Linear", "all", column_jitter={"R_Z": 1.0})
    with pytest.raises(ValueError, match="column_jitter must be >= 0"):
        build_model("DG+MG+Linear", "all", column_jitter={"R_AU": -1.0})


def test_motion_jitter_scales_each_columns_motion_and_keeps_its_level():
    rng = np.random.default_rng(7)
    x = (rng.normal(0, 2, (64, 1, 30)) + rng.normal(0, 1, (64, 18, 30))).astype("float32")
    layer = MotionJitter(0.4, group=8, seed=3)
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)
    y = np.asarray(layer(x, training=True))
    level = x.mean(1, keepdims=True)
    np.testing.assert_allclose(y.mean(1, keepdims=True), level, atol=1e-5)   # levels kept
    gain = (y - level).std(1) / (x - level).std(1)                           # (64, 30)
    motion = y - level                     # y = m + (x - m) exp(e): one gain per column
    np.testing.assert_allclose(motion, (x - level) * gain[:, None, :], rtol=1e-4, atol=1e-5)
    for start in range(0, 64, 8):          # a recording's 8 draws share their gains
        np.testing.assert_allclose(gain[start:start + 8],
                                   np.broadcast_to(gain[start], (8, 30)), rtol=1e-4)
    log_gain = np.log(gain[::8])
    assert abs(log_gain.std() - 0.4) < 0.06 and abs(log_gain.mean()) < 0.06
    assert MotionJitter.from_config(layer.get_config()).group == 8
    with pytest.raises(ValueError, match="stddev"):
        MotionJitter(-0.1)
    from depressionmlp.models import build_model
    names = {l.name for l in build_model("DG+MG+Linear", motion_jitter=0.3).layers}
    assert {"motion_jitter_R_X", "motion_jitter_R_Y", "motion_jitter_R_AU"} <= names
    with pytest.raises(ValueError, match="motion_jitter"):
        build_model("DG+MG+Linear", motion_jitter=-1.0)


def test_column_dropout_drops_whole_columns_in_training_only():
    from depressionmlp.models import build_model
    model = build_model("DG+MG+Linear", column_dropout=0.3)
    layer = model.get_layer("column_dropout_R_AU")
    x = np.ones((64, 18, 68), "float32")
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)
    out = np.asarray(layer(x, training=True))
    np.testing.assert_allclose(out, np.broadcast_to(out[:, :1], out.shape))  # whole columns
    np.testing.assert_allclose(np.unique(out), [0.0, 1 / 0.7], rtol=1e-6)  # kept: x / 0.7
    assert abs((out[:, 0] == 0).mean() - 0.3) < 0.03
    assert "column_dropout_R_X" not in {l.name for l in build_model("DG+MG+Linear").layers}
    with pytest.raises(ValueError, match="column_dropout"):
        build_model("DG+MG+Linear", column_dropout=1.0)


def test_split_standardize_matches_numpy_and_scales_level_and_motion_apart():
    rng = np.random.default_rng(5)
    # levels differ by ~3 between segments, motion within a segment by ~0.03
    data = (rng.normal(0, 3, (50, 1, 6)) + rng.normal(0, 0.03, (50, 12, 6)) + 7).astype("float32")
    layer = SplitStandardize()
    layer.adapt(data)
    out = np.asarray(layer(data))
    level = data.mean(1, keepdims=True)
    motion = data - level
    want = ((level - level.mean((0, 1))) / level.std((0, 1))
            + motion / np.sqrt((motion ** 2).mean((0, 1))))
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out.mean(1).std(0), 1, atol=1e-3)                   # levels
    np.testing.assert_allclose((out - out.mean(1, keepdims=True)).std((0, 1)), 1, atol=1e-3)
    # plain per-column standardisation leaves the motion ~100x smaller than the levels
    plain = (data - data.mean((0, 1))) / data.std((0, 1))
    assert (plain - plain.mean(1, keepdims=True)).std() < 0.02


def test_level_jitter_covariance_is_the_levels_and_training_only():
    rng = np.random.default_rng(6)
    mix = rng.normal(0, 1, (5, 5))
    data = (rng.normal(0, 1, (400, 1, 5)) @ mix + rng.normal(0, 0.1, (400, 9, 5))).astype("float32")
    layer = LevelJitter(0.5, seed=2)
    layer.adapt(data)
    x = np.zeros((20000, 9, 5), "float32")
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)
    noise = np.asarray(layer(x, training=True))
    np.testing.assert_allclose(noise, np.broadcast_to(noise[:, :1], noise.shape))
    want = 0.25 * np.cov(data.mean(1), rowvar=False)
    np.testing.assert_allclose(np.cov(noise[:, 0], rowvar=False), want,
                               atol=0.05 * np.abs(want).max())
    with pytest.raises(ValueError, match="stddev"):
        LevelJitter(-1.0)


def test_adapting_many_models_traces_nothing_twice(caplog):
    """An ensemble or the suite adapts one fresh model after another: the statistics
    must come out as on one model, without TensorFlow's retracing warning (which
    model.predict on each new probe model raised after a few models)."""
    import logging
    from depressionmlp.models import adapt_inputs, build_model
    rng = np.random.default_rng(5)
    arrays = {s: rng.normal(0.5, 0.1, (1500, 18, 68)).astype("float32")   # 2 batches
              for s in ("R_X", "R_Y", "R_AU")}
    caplog.set_level(logging.WARNING)
    for _ in range(6):
        model = build_model("DG+MG+Linear", keypoint_frame="face", standardize="split",
                            column_jitter=1.0)
        adapt_inputs(model, arrays)
        std = np.asarray(model.get_layer("standardize_R_AU")(arrays["R_AU"]))
        levels = std.mean(axis=1)                 # split: resting levels standardised
        np.testing.assert_allclose(levels.mean(0), 0, atol=1e-3)
    assert "retracing" not in caplog.text


def test_default_model_saves_and_loads_safely(tmp_path):
    from depressionmlp.models import adapt_inputs, build_model
    rng = np.random.default_rng(4)
    arrays = {s: rng.normal(0.5, 0.1, (40, 18, 68)).astype("float32")
              for s in ("R_X", "R_Y", "R_AU")}
    model = build_model("DG+MG+Linear", keypoint_frame="face", standardize=True,
                        column_jitter=1.0, score_scale=9.0, score_offset=15.0)
    adapt_inputs(model, arrays)
    std = np.asarray(model.get_layer("standardize_R_AU")(arrays["R_AU"]))
    np.testing.assert_allclose(std.reshape(-1, 68).mean(0), 0, atol=1e-3)
    np.testing.assert_allclose(std.reshape(-1, 68).std(0), 1, atol=1e-2)
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(again.predict(arrays, verbose=0), model.predict(arrays, verbose=0),
                               rtol=1e-5, atol=1e-5)
    cfg = again.get_layer("jitter_R_X").get_config()
    assert cfg["stddev"] == 1.0
    assert again.get_layer("score").get_config()["score_offset"] == 15.0


# ----------------------------------------------------------------------------- suite

def test_suite_rows_and_table():
    rows = {name for name, _, _ in learnability.model_rows("static")}
    assert {"StatsRidge", "StatsLasso", "StatsRidge train+dev", "DG+MG default",
            "DG+MG paper", "DG+Linear au default"} == rows
    pooled = dict((n, c) for n, c, _ in learnability.model_rows("static"))
    assert pooled["StatsRidge train+dev"]["data"]["train_splits"] == ["train", "dev"]
    assert "DG+Linear xy default" in {n for n, _, _ in learnability.model_rows("motion")}
    # the Table III row resolves as experiments/table3_dg_au.toml does: views 0-1
    from depressionmlp.runs import load_config
    table3 = train.resolve_config(load_config("experiments/table3_dg_au.toml"), "t3")["train"]
    single = train.resolve_config(pooled["DG+Linear au default"], "row")["train"]
    assert single["member_model"] == table3["member_model"] and len(single["member_model"]) == 2
    results = {f"static/s{s}": {"cue": "static", "seed": s, "noise_floor": 3.0,
                                "mean_predictor": 11.0,
                                "rows": {"StatsRidge": {"test_rmse": 7.0 + s, "seconds": 1},
                                         "DG+MG default": {"test_rmse": 6.0 + s,
                                                           "seconds": 60}}}
               for s in (0, 1)}
    md = learnability.to_markdown(results)
    line = next(l for l in md.splitlines() if l.startswith("| static"))
    assert "| 2 | 3.00 | - | - | 11.00 |" in line
    floors = {"static": {"floor": 4.25, "floor_at_size": 5.5}}
    line = next(l for l in learnability.to_markdown(results, floors).splitlines()
                if l.startswith("| static"))
    assert "| 2 | 3.00 | 4.25 (5.50) | - | 11.00 |" in line
    # with the pooled size and the simulation's mean predictor: both, and as ratios
    floors["static"].update(floor_at_pooled=5.0, mean_predictor=12.5)
    line = next(l for l in learnability.to_markdown(results, floors).splitlines()
                if l.startswith("| static"))
    assert "| 2 | 3.00 | 4.25 (5.50 / 5.00) | 0.34x (0.44x / 0.40x) | 11.00 |" in line
    assert "7.50 ± 0.50 (1 s)" in line and "6.50 ± 0.50 (60 s)" in line
    assert line.rstrip().endswith(f"| {6.5 / 7.5:.2f} | {6.5 / 11:.2f} |")
    for s in (0, 1):                   # with the pooled ridge: a ratio to it as well
        results[f"static/s{s}"]["rows"]["StatsRidge train+dev"] = {"test_rmse": 5.0 + s,
                                                                   "seconds": 1}
    md = learnability.to_markdown(results)
    assert "DG+MG default / ridge | DG+MG default / ridge train+dev |" in md
    line = next(l for l in md.splitlines() if l.startswith("| static"))
    assert line.rstrip().endswith(f"| {6.5 / 7.5:.2f} | {6.5 / 5.5:.2f} | {6.5 / 11:.2f} |")
    for s in (0, 1):                   # with the lasso: its ratio after the pooled ridge's
        results[f"static/s{s}"]["rows"]["StatsLasso"] = {"test_rmse": 4.0 + s, "seconds": 1}
    md = learnability.to_markdown(results)
    assert "DG+MG default / ridge train+dev | DG+MG default / lasso |" in md
    line = next(l for l in md.splitlines() if l.startswith("| static"))
    assert line.rstrip().endswith(
        f"| {6.5 / 7.5:.2f} | {6.5 / 5.5:.2f} | {6.5 / 4.5:.2f} | {6.5 / 11:.2f} |")


# ----------------------------------------------------------------------------- cue floor

def test_latent_signals_are_what_the_recording_renders():
    """simulate_recording draws its signal through latent_signals: the same stream
    gives resting AU means at ``au_base`` and AU45 presence where the blink is shut."""
    nuis = synth.draw_nuisance(np.random.default_rng(5))
    lat = synth.latent_signals(np.random.default_rng(6), nuis, 30.0, 900, 30.0, "blink", 5.0)
    v, n_failed = synth.simulate_recording(np.random.default_rng(6), nuis, 30.0, 900, 30.0,
                                           0.0, cue="blink", free_score=5.0)
    assert n_failed == 0
    a0 = synth._COL["AU01_r"]
    np.testing.assert_allclose(v[:, a0:a0 + 17].mean(0), lat["au_base"], atol=0.05)
    au45_c = v[:, a0 + 17 + synth.AU_PRESENCE.index("AU45")]
    assert np.mean(au45_c == (lat["blink"] > 0.5)) > 0.99


def _channel_rmse(x, y, columns):
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-1, 4, 11)))
    pred = cross_val_predict(model, np.log(x[:, columns] + 1e-3), y, cv=5)
    return float(np.sqrt(np.mean((pred - y) ** 2)))


@pytest.mark.parametrize("cue,other", [("static", "blink"), ("blink", "static"),
                                       ("region", "resting")])
def test_each_cue_reaches_only_its_channel(cue, other):
    from depressionmlp import cue_floor as cf
    x, y, _ = cf.simulate(cue, 300, duration_s=(30, 50), seed=1)
    assert x.shape == (300, sum(len(b) for b in cf.BLOCKS.values()))
    spread = float(y.std())
    own = _channel_rmse(x, y, cf.CHANNELS[cue])
    elsewhere = _channel_rmse(x, y, cf.CHANNELS.get(other) or list(cf.BLOCKS[other]))
    assert own < 0.8 * spread, (own, spread)           # the cue's channel carries it ...
    assert elsewhere > 0.95 * spread, (elsewhere, spread)  # ... and no other does


def test_cue_floor_sits_between_the_noise_floor_and_the_mean_predictor():
    from depressionmlp.cue_floor import cue_floor
    r = cue_floor("static", 56, n_sim=320, n_draws=3, label_noise_sd=3.0, n_pooled=200)
    assert abs(r["noise_floor"] - 3.0) < 0.5, r
    assert r["noise_floor"] < r["floor"] < 0.6 * r["mean_predictor"], r
    assert r["floor"] < r["floor_at_size"] < r["mean_predictor"], r
    # more recordings for the same ridge: lower, still above the ample-data floor
    assert r["floor"] < r["floor_at_pooled"] < r["floor_at_size"], r
    assert (r["n_test"], r["n_train"], r["n_pooled"]) == (80, 56, 200)


def test_suite_cue_floors_are_computed_once_and_reused(tmp_path, monkeypatch):
    from depressionmlp import cue_floor
    lines = []
    floors = learnability.ensure_cue_floors(tmp_path, ["static"], "long", {"static": 30},
                                            n_sim=120, log=lines.append)
    r = floors["static"]
    assert (r["n_train"], r["n_sim"], r["duration_s"], r["label_noise_sd"]) == (
        30, 120, [150, 240], 2.0)                   # the long corpora's settings
    assert json.loads((tmp_path / "cue_floors.json").read_text()) == floors
    assert len(lines) == 1 and "static" in lines[0]
    monkeypatch.setattr(cue_floor, "cue_floor", lambda *a, **k: pytest.fail("recomputed"))
    assert learnability.ensure_cue_floors(tmp_path, ["static"], "long", {"static": 30}) == floors
    monkeypatch.undo()                  # a saved floor without the pooled size is redone ...
    again = learnability.ensure_cue_floors(tmp_path, ["static"], "long", {"static": 30},
                                           n_sim=120, log=lines.append,
                                           n_pooled={"static": 45})["static"]
    assert again["n_pooled"] == 45 and again["floor_at_size"] == r["floor_at_size"]
    assert "at 45 (train + dev)" in lines[-1]
    monkeypatch.setattr(cue_floor, "cue_floor", lambda *a, **k: pytest.fail("recomputed"))
    assert learnability.ensure_cue_floors(            # ... once
        tmp_path, ["static"], "long", {"static": 30}, n_pooled={"static": 45})["static"] == again


def test_an_experiment_config_is_a_suite_row_of_its_own(tmp_path, monkeypatch, capsys):
    """--config: the config's name, its protocol and its own settings, without the corpus,
    data root and seed that the suite sets; it runs whatever --rows selects, and the
    table gives its ratios to the ridge and the mean predictor. A bad config fails
    before anything is built, naming its file."""
    cfg = tmp_path / "variant.toml"
    cfg.write_text('name = "wide-head"\nprotocol = "default"\n[model]\nname = "DG+MG+Linear"\n'
                   'head_hidden = 8\n[data]\ncorpus = "avec2013"\n[train]\nseed = 7\n'
                   'steps = 300\n')
    name, row, protocol = learnability.config_row(cfg)
    assert (name, protocol) == ("wide-head default", "default")
    assert learnability.config_row(cfg, "paper")[::2] == ("wide-head paper", "paper")
    assert row == {"name": "wide-head", "model": {"name": "DG+MG+Linear", "head_hidden": 8},
                   "data": {}, "train": {"steps": 300}}
    calls = []
    manifest = {"recordings": [{"split": s} for s in ("train",) * 4 + ("dev",) * 2],
                "noise_floor": {"test": {"rmse": 3.0}},
                "mean_predictor_rmse": {"test": {"rmse": 11.0}}}
    monkeypatch.setattr(learnability, "ensure_corpus", lambda *a, **k: manifest)
    monkeypatch.setattr(learnability, "ensure_cue_floors", lambda *a, **k: {})

    def fake_run_row(c, prot, root, seed, out, overrides=None):
        calls.append((c["model"]["name"], prot, seed))
        rmse = {"StatsRidge": 8.0, "DG+MG+Linear": 5.5 if "head_hidden" in c["model"] else 6.0}
        return {"test_rmse": rmse[c["model"]["name"]] + seed, "seconds": 2.0}
    monkeypatch.setattr(learnability, "run_row", fake_run_row)
    results = learnability.run_suite(tmp_path / "out", tmp_path / "data", cues=("static",),
                                     seeds=(0, 1), rows=["StatsRidge", "DG+MG default"],
                                     log=lambda *_: None, configs=[cfg])
    assert calls == [("StatsRidge", "default", 0), ("DG+MG+Linear", "default", 0),
                     ("DG+MG+Linear", "default", 0)] + [
        ("StatsRidge", "default", 1), ("DG+MG+Linear", "default", 1),
        ("DG+MG+Linear", "default", 1)]
    assert results["static/s0"]["rows"]["wide-head default"]["config"] == str(cfg)
    md = (tmp_path / "out" / "table.md").read_text()
    assert ("| DG+MG default / mean | wide-head default / ridge | wide-head default / mean |"
            in md)
    line = next(l for l in md.splitlines() if l.startswith("| static"))
    assert line.rstrip().endswith(f"| {6.5 / 11:.2f} | {6.0 / 8.5:.2f} | {6.0 / 11:.2f} |")
    bad = tmp_path / "bad.toml"
    bad.write_text('[train]\nmember_model = [{name = "DG+Linear"}]\n')
    with pytest.raises(DataError, match="bad.toml.*not the model's name"):
        learnability.run_suite(tmp_path / "out2", tmp_path / "data", configs=[bad])
    clash = tmp_path / "clash.toml"
    clash.write_text('name = "DG+MG"\n')
    with pytest.raises(DataError, match="one of the suite's own rows"):
        learnability.config_row(clash)
    assert not (tmp_path / "out2").exists()
    from depressionmlp.cli import main
    capsys.readouterr()
    assert main(["learnability", "--out", str(tmp_path / "out3"), "--config", str(bad)]) != 0
    err = capsys.readouterr().err
    assert "bad.toml" in err and "Traceback" not in err and not (tmp_path / "out3").exists()
