"""The bundled synthetic corpus: format contract, determinism, noise floor, honesty.

The honesty tests are the point of this file. The corpus is a measuring
instrument: a model may only learn the score from facial *dynamics*. So across
recordings, every static statistic (mean AU levels, mean landmark positions, face
width, frame counts, failures, confidence, pose, gaze, subject ids) must be
uncorrelated with the label, while a dynamic one (temporal spread of the AUs,
keypoint motion) must carry it, and a ridge regression must find the label in
dynamic features but not in static ones.

Sampling noise decides the thresholds. Recordings of one subject share the
score and all nuisance, so the effective sample is the number of subjects n; under
independence a correlation's sd is about 1 / sqrt(n - 1). About 50 static
statistics are checked (at most 60 allowed for), so a family-wise false alarm
rate of ~1 % needs |z| < 3.76 (Bonferroni, two-sided): the threshold is
3.76 / sqrt(n - 1), 0.31 for the 150 subjects used here. That still catches any leak that explains more than
~9 % of the label variance. The statistics are computed in memory from
:func:`synth.iter_recordings` (the very matrices the writer formats;
``test_written_values_match_simulation`` ties the two together) so that 150
subjects cost seconds rather than minutes of CSV writing.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm, pearsonr, spearmanr
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from depressionmlp import synth
from depressionmlp.data.schema import AU_INTENSITY, AU_PRESENCE, OPENFACE_COLUMNS
from depressionmlp.errors import DataError

COL = {c: i for i, c in enumerate(OPENFACE_COLUMNS)}
SMALL = dict(n_subjects=12, seed=5, duration_s=(12, 20))
HONESTY_SUBJECTS = 150
N_STATIC_TESTS = 60
STATIC_MAX_R = norm.ppf(1 - 0.01 / (2 * N_STATIC_TESTS)) / np.sqrt(HONESTY_SUBJECTS - 1)


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "small"
    return out, synth.generate_corpus(out, **SMALL)


@pytest.fixture(scope="module")
def honesty_table():
    """Per-recording (meta, static stats, dynamic stats) of a 150-subject corpus."""
    rows = []
    for meta, values in synth.iter_recordings(n_subjects=HONESTY_SUBJECTS, seed=123):
        rows.append((meta, static_stats(meta, values), dynamic_stats(values)))
    return rows


def _au(values):
    a = COL["AU01_r"]
    return values[:, a:a + 17], values[:, a + 17:a + 35]


def _landmarks(values):
    x0, y0 = COL["x_0"], COL["y_0"]
    return values[:, x0:x0 + 68], values[:, y0:y0 + 68]


def _shape_ratios(x, y):
    """Translation/scale/rotation-free face measures per frame (over inter-ocular distance)."""
    iod = np.hypot(x[:, 45] - x[:, 36], y[:, 45] - y[:, 36])
    return {"mouth_open": np.hypot(x[:, 66] - x[:, 62], y[:, 66] - y[:, 62]) / iod,
            "mouth_width": np.hypot(x[:, 54] - x[:, 48], y[:, 54] - y[:, 48]) / iod,
            "brow_height": (y[:, 39] + y[:, 42] - y[:, 21] - y[:, 22]) / (2 * iod)}


def static_stats(meta, values) -> dict:
    """Statistics that must not know the label (success frames, as readers use)."""
    ok = values[:, COL["success"]] == 1
    good = values[ok]
    au_r, au_c = _au(good)
    x, y = _landmarks(good)
    st = {f"mean_{a}_r": au_r[:, j].mean() for j, a in enumerate(AU_INTENSITY)}
    st.update({f"mean_{a}_c": au_c[:, j].mean() for j, a in enumerate(AU_PRESENCE)})
    st.update({"mean_x": x.mean(), "mean_y": y.mean(), "face_width": (x[:, 16] - x[:, 0]).mean(),
               "n_frames": len(values), "failure_rate": 1 - ok.mean(),
               "confidence": values[:, COL["confidence"]].mean(),
               "subject_id": int(meta["subject"])})
    for c in ("pose_Rx", "pose_Ry", "pose_Rz", "pose_Tz", "gaze_angle_x", "gaze_angle_y"):
        st[f"mean_{c}"] = good[:, COL[c]].mean()
    st.update({f"mean_{k}": v.mean() for k, v in _shape_ratios(x, y).items()})
    return st


def dynamic_stats(values) -> dict:
    """Statistics of motion, where the label is meant to live."""
    good = values[values[:, COL["success"]] == 1]
    au_r, au_c = _au(good)
    x, y = _landmarks(good)
    ratios = _shape_ratios(x, y)
    return {"au_std": au_r[:, :16].std(axis=0).mean(),          # AU45 = blinks, label-free
            "au_speed": np.abs(np.diff(au_r[::5, :16], axis=0)).mean(),
            "keypoint_std": np.mean([v.std() for v in ratios.values()]),
            "keypoint_speed": np.mean([np.abs(np.diff(v[::5])).mean() for v in ratios.values()]),
            "au_c_onsets_per_frame": (np.diff(au_c[:, :16], axis=0) == 1).sum() / len(good)}


def _column(rows, part, key):
    return np.array([r[part][key] for r in rows], dtype=float)


def _files(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------- format

def test_layout_header_and_columns(small):
    root, manifest = small
    recs = manifest["recordings"]
    assert len(recs) >= SMALL["n_subjects"]
    header = ", ".join(OPENFACE_COLUMNS)
    for r in recs:
        csv = root / "openface" / r["split"] / f"{r['rec']}.csv"
        with open(csv) as f:
            assert f.readline().rstrip("\n") == header
        df = pd.read_csv(csv, skipinitialspace=True)
        assert list(df.columns) == OPENFACE_COLUMNS and df.shape == (r["n_frames"], 714)
        assert df.dtypes.map(lambda t: t.kind in "if").all()
        assert np.array_equal(df["frame"], np.arange(1, r["n_frames"] + 1))
        assert (df["face_id"] == 0).all()
        np.testing.assert_allclose(df["timestamp"], np.round((df["frame"] - 1) / 30, 3))
        assert 12 * 30 <= r["n_frames"] <= 20 * 30
        failed = df["success"] == 0
        assert int(failed.sum()) == r["n_failed"]
        assert set(df["success"].unique()) <= {0, 1}
        assert (df.loc[failed, "confidence"] < 0.5).all()
        assert (df.loc[~failed, "confidence"] >= 0.5).all()
        good = df[~failed]
        assert good["x_0"].between(0, 640).all() and good["y_8"].between(0, 480).all()
        au_r = good[[f"{a}_r" for a in AU_INTENSITY]].to_numpy()
        assert au_r.min() >= 0 and au_r.max() <= 5
        assert set(np.unique(good[[f"{a}_c" for a in AU_PRESENCE]])) <= {0.0, 1.0}
        width = (good["x_16"] - good["x_0"]).mean()
        assert 100 < width < 290


def test_decimals_are_openface_precisions(small):
    root, manifest = small
    r = manifest["recordings"][0]
    lines = (root / "openface" / r["split"] / f"{r['rec']}.csv").read_text().splitlines()
    cells = dict(zip(OPENFACE_COLUMNS, lines[1].split(", ")))
    expect = {"frame": 0, "timestamp": 3, "confidence": 2, "success": 0, "gaze_0_x": 6,
              "gaze_angle_x": 3, "eye_lmk_x_0": 1, "pose_Tx": 1, "pose_Rx": 3, "x_0": 1,
              "Z_67": 1, "p_scale": 3, "p_33": 3, "AU01_r": 2, "AU45_c": 2}
    for name, dec in expect.items():
        cell = cells[name]
        assert (len(cell.split(".")[1]) if "." in cell else 0) == dec, (name, cell)


def test_labels_are_integers_and_match_manifest(small):
    root, manifest = small
    for r in manifest["recordings"]:
        text = (root / "labels" / r["split"] / f"{r['rec']}_Depression.csv").read_text()
        assert text.strip() == str(r["label"]) and text.count("\n") == 1
        assert 0 <= r["label"] <= 63 and isinstance(r["label"], int)
        assert 0 <= r["true_score"] <= 63
    n_csv = len(list(root.glob("openface/*/*.csv")))
    assert n_csv == len(list(root.glob("labels/*/*_Depression.csv"))) == len(manifest["recordings"])


def test_written_values_match_simulation(small):
    """The CSV holds the simulated matrix rounded to OpenFace's decimals."""
    root, manifest = small
    dec = synth.column_decimals()
    for meta, values in synth.iter_recordings(**SMALL):
        df = pd.read_csv(root / "openface" / meta["split"] / f"{meta['rec']}.csv",
                         skipinitialspace=True)
        err = np.abs(df.to_numpy() - values)
        assert (err <= 0.5 * 10.0 ** -dec + 1e-9).all(), meta["rec"]


def test_subject_disjoint_stratified_splits(small):
    _, manifest = small
    recs = manifest["recordings"]
    by_split = {s: {r["subject"] for r in recs if r["split"] == s} for s in synth.SPLITS}
    assert all(by_split.values())
    assert not (by_split["train"] & by_split["dev"] or by_split["train"] & by_split["test"]
                or by_split["dev"] & by_split["test"])
    assert sum(map(len, by_split.values())) == SMALL["n_subjects"]
    for r in recs:
        assert r["rec"] == f"{r['subject']}_{r['session']}" and len(r["subject"]) == 3
        assert r["session"] in (1, 2)
    # stratified: every split spans low and higher scores (quota blocks of 5 sorted scores)
    scores = {s: [r["true_score"] for r in recs if r["split"] == s] for s in synth.SPLITS}
    all_sorted = sorted(r["true_score"] for r in recs if r["session"] == 1)
    for s, v in scores.items():
        assert min(v) <= all_sorted[len(all_sorted) // 2], s


def test_sessions_of_one_subject_differ_by_at_most_two(honesty_table):
    by_subject = {}
    for meta, _, _ in honesty_table:
        by_subject.setdefault(meta["subject"], []).append(meta["true_score"])
    pairs = [v for v in by_subject.values() if len(v) == 2]
    assert 0.25 * len(by_subject) < len(pairs) < 0.55 * len(by_subject)   # 0.4 expected
    assert max(abs(a - b) for a, b in pairs) <= 2.0 + 1e-6
    assert all(len(v) <= 2 for v in by_subject.values())


def test_score_distribution_is_skewed_to_low_scores(honesty_table):
    true = np.array([m["true_score"] for m, _, _ in honesty_table])
    assert 11 < true.mean() < 19 and np.median(true) < true.mean()
    assert (true < 14).mean() > 0.45 and true.max() > 40


# ----------------------------------------------------------------------------- determinism

def test_same_seed_same_bytes_different_seed_different(small, tmp_path):
    root, _ = small
    again = tmp_path / "again"
    synth.generate_corpus(again, **SMALL)
    assert _files(again) == _files(root)
    other = tmp_path / "other"
    synth.generate_corpus(other, **{**SMALL, "seed": SMALL["seed"] + 1})
    a, b = _files(root), _files(other)
    csv_a = {h for k, h in a.items() if k.startswith("openface")}
    csv_b = {h for k, h in b.items() if k.startswith("openface")}
    assert a["manifest.json"] != b["manifest.json"] and not csv_a & csv_b


def test_refuses_foreign_folder_and_is_atomic(tmp_path, monkeypatch):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        synth.generate_corpus(busy, n_subjects=3, duration_s=(2, 3))
    assert (busy / "notes.txt").read_text() == "mine"

    calls = {"n": 0}
    real = synth.format_rows

    def dying(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed")
        return real(*a, **k)

    monkeypatch.setattr(synth, "format_rows", dying)
    target = tmp_path / "corpus"
    with pytest.raises(KeyboardInterrupt):
        synth.generate_corpus(target, n_subjects=3, duration_s=(2, 3))
    assert not target.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy"]     # no temp leftovers


def test_cli_small_force_and_rerun(tmp_path, capsys):
    out = tmp_path / "cli"
    assert synth.main(["--out", str(out), "--small", "--subjects", "4"]) == 0
    text = capsys.readouterr().out.strip().splitlines()
    assert text[-1].startswith("noise floor RMSE") and "mean-predictor RMSE" in text[-2]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["parameters"]["n_subjects"] == 4
    assert manifest["parameters"]["duration_s"] == list(synth.SMALL["duration_s"])
    before = _files(out)
    assert synth.main(["--out", str(out), "--small", "--subjects", "4"]) == 0   # same corpus
    assert _files(out) == before
    assert synth.main(["--out", str(out), "--small", "--subjects", "4", "--seed", "1"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert synth.main(["--out", str(out), "--small", "--subjects", "4", "--seed", "1",
                       "--force"]) == 0
    assert _files(out) != before


# ----------------------------------------------------------------------------- noise floor

def _expected_floor(true, sd, rng, draws=4000):
    """Monte-Carlo RMSE of round(clip(true + N(0, sd), 0, 63)) against true."""
    noisy = np.rint(np.clip(true[:, None] + rng.normal(0, sd, (len(true), draws)), 0, 63))
    return float(np.sqrt(np.mean((noisy - true[:, None]) ** 2)))


def test_manifest_noise_floor_is_rmse_of_true_vs_label(small):
    _, manifest = small
    recs = manifest["recordings"]
    for split in (*synth.SPLITS, "all"):
        rows = [r for r in recs if split == "all" or r["split"] == split]
        t = np.array([r["true_score"] for r in rows])
        y = np.array([r["label"] for r in rows])
        assert manifest["noise_floor"][split]["rmse"] == pytest.approx(
            np.sqrt(np.mean((t - y) ** 2)), abs=1e-4)
        train_mean = np.mean([r["label"] for r in recs if r["split"] == "train"])
        assert manifest["mean_predictor_rmse"][split]["rmse"] == pytest.approx(
            np.sqrt(np.mean((train_mean - y) ** 2)), abs=1e-4)
    assert manifest["parameters"]["label_noise_sd"] == 3.0
    assert "expressivity" in manifest["signal"]


def test_noise_floor_close_to_label_noise_sd(honesty_table):
    """RMSE(true, label) ~ label_noise_sd; clipping at 0 pulls it below for low scores."""
    true = np.array([m["true_score"] for m, _, _ in honesty_table])
    label = np.array([m["label"] for m, _, _ in honesty_table])
    floor = float(np.sqrt(np.mean((true - label) ** 2)))
    expected = _expected_floor(true, 3.0, np.random.default_rng(0))
    # sd of an RMSE estimate from n recordings is about sd / sqrt(2 n) ~ 0.15 here
    assert abs(floor - expected) < 4 * 3.0 / np.sqrt(2 * len(true))
    assert 0.7 * 3.0 < floor < 1.05 * 3.0
    hi = true > 10                                       # no clipping: sqrt(9 + 1/12)
    assert np.sqrt(np.mean((true[hi] - label[hi]) ** 2)) == pytest.approx(3.01, abs=0.45)


# ----------------------------------------------------------------------------- honesty

def test_static_statistics_do_not_know_the_label(honesty_table):
    label = np.array([m["label"] for m, _, _ in honesty_table], dtype=float)
    keys = list(honesty_table[0][1])
    assert len(keys) <= N_STATIC_TESTS
    worst = []
    for k in keys:
        v = _column(honesty_table, 1, k)
        worst.append((max(abs(pearsonr(v, label)[0]), abs(spearmanr(v, label)[0])), k))
    worst.sort(reverse=True)
    assert worst[0][0] < STATIC_MAX_R, worst[:5]
    assert 0.27 < STATIC_MAX_R < 0.33


def test_dynamic_statistics_carry_the_score(honesty_table):
    true = np.array([m["true_score"] for m, _, _ in honesty_table])
    # Over seeds 1-3, 7, 99, 123 (150 subjects) Pearson was -0.86..-0.89 (AU spread) and
    # -0.79..-0.84 (keypoints), Spearman -0.79..-0.85 and -0.73..-0.81.
    au_std = _column(honesty_table, 2, "au_std")
    assert pearsonr(au_std, true)[0] < -0.75 and spearmanr(au_std, true)[0] < -0.7
    kp_std = _column(honesty_table, 2, "keypoint_std")
    assert pearsonr(kp_std, true)[0] < -0.7 and spearmanr(kp_std, true)[0] < -0.65
    for key in ("au_speed", "keypoint_speed", "au_c_onsets_per_frame"):
        assert pearsonr(_column(honesty_table, 2, key), true)[0] < -0.3, key


def _ridge_rmse(rows, part):
    keys = [k for k in rows[0][part] if k != "subject_id"]
    x = np.array([[r[part][k] for k in keys] for r in rows], dtype=float)
    y = np.array([r[0]["label"] for r in rows], dtype=float)
    train = np.array([r[0]["split"] == "train" for r in rows])
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 25)))
    model.fit(x[train], y[train])
    held = ~train
    rmse = float(np.sqrt(np.mean((model.predict(x[held]) - y[held]) ** 2)))
    mean_rmse = float(np.sqrt(np.mean((y[train].mean() - y[held]) ** 2)))
    return rmse, mean_rmse


def test_ridge_finds_the_label_in_dynamics_not_in_statics(honesty_table):
    """Held-out (dev + test subjects) recording-level RMSE against the mean predictor.

    Over seeds 1-3, 7, 99, 123: static / mean 0.98..1.04, dynamic / mean 0.49..0.58;
    the largest |r| of a static statistic with the label was 0.20..0.23.
    """
    static_rmse, mean_rmse = _ridge_rmse(honesty_table, 1)
    dynamic_rmse, _ = _ridge_rmse(honesty_table, 2)
    assert static_rmse > 0.9 * mean_rmse, (static_rmse, mean_rmse)
    assert dynamic_rmse < 0.7 * mean_rmse, (dynamic_rmse, mean_rmse)


def test_demo_replaces_a_stale_synthetic_corpus_but_nothing_else(tmp_path, capsys):
    from depressionmlp.demo import ensure_synthetic
    small = dict(n_subjects=3, duration_s=(2, 3))
    first = ensure_synthetic(tmp_path, **small)
    assert first["parameters"]["generator_version"] == synth.GENERATOR_VERSION
    mpath = tmp_path / "synthetic" / "manifest.json"
    stale = json.loads(mpath.read_text())
    stale["parameters"]["generator_version"] = synth.GENERATOR_VERSION - 1
    mpath.write_text(json.dumps(stale))
    again = ensure_synthetic(tmp_path, **small)
    assert again["parameters"] == first["parameters"]
    assert "replacing the synthetic corpus" in capsys.readouterr().out
    foreign = tmp_path / "other"
    (foreign / "synthetic").mkdir(parents=True)
    (foreign / "synthetic" / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        ensure_synthetic(foreign, **small)
    assert (foreign / "synthetic" / "notes.txt").read_text() == "mine"
