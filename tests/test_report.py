"""`make report` (issue 10): the statistics against hand-computed cases and against
scipy / scikit-learn on fixed inputs, every figure a real PNG, the tables' structure,
and the report over run directories (reused, not retrained); the end-to-end report on
a tiny generated corpus is in the slow set.
"""

from __future__ import annotations

import copy
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from depressionmlp import report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path, min_bytes=2000, max_bytes=400_000):
    """A PNG file: magic bytes, an IHDR with a sensible size, a plausible file size."""
    data = Path(path).read_bytes()
    assert data[:8] == PNG_MAGIC, path
    assert data[12:16] == b"IHDR"
    w, h = struct.unpack(">II", data[16:24])
    assert 100 <= w <= 3000 and 100 <= h <= 3000, (path, w, h)
    assert min_bytes <= len(data) <= max_bytes, (path, len(data))
    return w, h


# --------------------------------------------------------------------------- bootstrap

def test_bootstrap_two_recordings_hand_computed():
    # absolute errors 1 and 3: resamples {1,1}, {1,3}, {3,1}, {3,3} -> MAE 1, 2, 2, 3
    y, p = [10.0, 20.0], [11.0, 23.0]
    reps = report.bootstrap_replicates(y, p, "mae", n_boot=4000, seed=1)
    values, counts = np.unique(np.round(reps, 9), return_counts=True)
    assert values.tolist() == [1.0, 2.0, 3.0]
    np.testing.assert_allclose(counts / 4000, [0.25, 0.5, 0.25], atol=0.03)
    assert report.bootstrap_ci(y, p, "mae", n_boot=4000, seed=1) == (1.0, 3.0)


def test_bootstrap_resamples_subjects_not_recordings():
    # subject A has two recordings (errors 1, 1), subject B one (error 4).
    # Subjects drawn: AA -> MAE 1 (p 1/4), AB/BA -> 6/3 = 2 (p 1/2), BB -> 4 (p 1/4).
    y, p = [0.0, 0.0, 0.0], [1.0, 1.0, 4.0]
    reps = report.bootstrap_replicates(y, p, "mae", groups=["A", "A", "B"], n_boot=4000,
                                       seed=0)
    values, counts = np.unique(np.round(reps, 9), return_counts=True)
    assert values.tolist() == [1.0, 2.0, 4.0]
    np.testing.assert_allclose(counts / 4000, [0.25, 0.5, 0.25], atol=0.03)
    # resampling recordings instead would give MAE 2 = (1+1+4)/3 with p 6/27 only and
    # also 1, 3 (= (1+4+4)/3) ...: the values differ
    flat = report.bootstrap_replicates(y, p, "mae", n_boot=2000, seed=0)
    assert 3.0 in np.unique(np.round(flat, 9))


def test_bootstrap_averages_the_metric_over_seeds():
    # two seeds, errors (1, 3) and (3, 5) on the same two recordings: for a resample the
    # value is the mean over seeds of each seed's MAE -> {2, 3, 4} for {11, 12|21, 22}
    y = [0.0, 0.0]
    preds = [[1.0, 3.0], [3.0, 5.0]]
    reps = report.bootstrap_replicates(y, preds, "mae", n_boot=1000, seed=3)
    assert sorted(np.unique(np.round(reps, 9)).tolist()) == [2.0, 3.0, 4.0]
    # RMSE: resample {1,1}/{3,3}: seeds' RMSE (1, 3) / (3, 5) -> 2 / 4
    reps = report.bootstrap_replicates(y, preds, "rmse", n_boot=1000, seed=3)
    mixed = (np.sqrt(5) + np.sqrt(17)) / 2           # resample {1,3}: sqrt((1+9)/2), sqrt((9+25)/2)
    np.testing.assert_allclose(sorted(np.unique(np.round(reps, 9))), [2.0, mixed, 4.0])


@pytest.mark.parametrize("metric", report.METRICS)
def test_weighted_bootstrap_equals_concatenated_resamples(metric):
    # the vectorised replicates equal the metric of each concatenated resample
    rng = np.random.default_rng(5)
    y = rng.uniform(0, 40, 11)
    preds = y + rng.normal(0, 6, (2, 11))
    groups = [0, 0, 1, 2, 2, 2, 3, 4, 5, 5, 6]
    fast = report.bootstrap_replicates(y, preds, metric, groups, n_boot=50, seed=9)
    slow = report.bootstrap_replicates(y, preds, report._metric_fn(metric), groups,
                                       n_boot=50, seed=9)
    np.testing.assert_allclose(fast, slow, rtol=1e-10)


def test_mean_sd_sample_sd():
    mu, sd = report.mean_sd([1.0, 2.0, 3.0])
    assert mu == 2.0 and sd == 1.0
    mu, sd = report.mean_sd([4.0])
    assert mu == 4.0 and np.isnan(sd)


# --------------------------------------------------------------------------- QQ / ROC

@pytest.mark.parametrize("r", [[0.3, -1.2, 2.5, 0.0, -0.7, 1.1, 4.0],
                               [2.0, -1.0], np.linspace(-3, 5, 25) ** 3])
def test_qq_data_matches_scipy_probplot(r):
    (osm, osr), (slope, intercept, rr) = stats.probplot(r, dist="norm")
    q = report.qq_data(r)
    np.testing.assert_allclose(q["theoretical"], osm, rtol=1e-12)
    np.testing.assert_allclose(q["ordered"], osr)
    np.testing.assert_allclose([q["slope"], q["intercept"]], [slope, intercept], rtol=1e-9)
    np.testing.assert_allclose(q["r"], rr, rtol=1e-9)


def test_roc_points_match_sklearn_with_ties():
    pos = np.array([0, 1, 1, 0, 1, 0, 0, 1, 1, 0], bool)
    score = np.array([3.0, 9.0, 5.0, 5.0, 7.0, 1.0, 5.0, 2.0, 9.0, 4.0])
    fpr, tpr, thr = skm.roc_curve(pos, score, drop_intermediate=False)
    r = report.roc_points(pos, score)
    np.testing.assert_allclose(r["fpr"], fpr)
    np.testing.assert_allclose(r["tpr"], tpr)
    np.testing.assert_allclose(r["thresholds"][1:], thr[1:])
    assert r["auc"] == pytest.approx(skm.roc_auc_score(pos, score), abs=1e-12)
    assert r["auc"] == pytest.approx(0.8)        # 19 of 25 pairs ordered + 2 ties x 1/2


def test_two_class_roc_cut_at_14():
    y_true = np.array([3.0, 13.0, 14.0, 20.0, 35.0, 10.0])
    y_pred = np.array([5.0, 16.0, 12.0, 22.0, 30.0, 9.0])
    r = report.roc_two_class(y_true, y_pred)
    pos = y_true >= 14                   # "None" (0-13) vs Mild + Moderate + Severe
    assert r["auc"] == pytest.approx(skm.roc_auc_score(pos, y_pred))
    acc = report.class_accuracies(y_true, y_pred)
    # 2 classes: 13->16 and 14->12 are wrong; 4 classes: also 20->22? no (both moderate),
    # 35->30 severe ok, 3->5 ok, 10->9 ok: 2 wrong of 6
    assert acc["acc_2class"] == pytest.approx(4 / 6)
    assert acc["acc_nclass"] == pytest.approx(4 / 6)
    acc = report.class_accuracies([19.0, 28.0, 29.0], [14.0, 21.0, 28.0])
    assert acc == {"acc_2class": 1.0, "acc_nclass": pytest.approx(2 / 3)}


def test_one_vs_rest_roc_matches_sklearn():
    y_true = np.array([2.0, 8.0, 15.0, 17.0, 22.0, 27.0, 31.0, 40.0, 12.0, 19.0])
    y_pred = np.array([6.0, 12.0, 14.0, 21.0, 18.0, 25.0, 26.0, 33.0, 16.0, 17.0])
    d = report.class_decision_scores(y_pred)
    np.testing.assert_allclose(d[:, 0], -y_pred)
    np.testing.assert_allclose(d[:, 3], y_pred)
    np.testing.assert_allclose(d[:, 1], -np.abs(y_pred - 16.5))      # centre of 14-19
    np.testing.assert_allclose(d[:, 2], -np.abs(y_pred - 24.0))      # centre of 20-28
    classes = np.searchsorted([14, 20, 29], y_true, side="right")
    curves = report.roc_one_vs_rest(y_true, y_pred)
    assert len(curves) == 4
    for k, c in enumerate(curves):
        assert c["auc"] == pytest.approx(skm.roc_auc_score(classes == k, d[:, k]))
        fpr, tpr, _ = skm.roc_curve(classes == k, d[:, k], drop_intermediate=False)
        np.testing.assert_allclose(c["fpr"], fpr)
        np.testing.assert_allclose(c["tpr"], tpr)
    # PHQ-8 (DAIC-WOZ): five classes
    assert len(report.roc_one_vs_rest([1, 6, 11, 16, 21], [2, 7, 12, 17, 22], "phq8")) == 5


# --------------------------------------------------------------------------- figures

def test_figures_are_pngs(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.uniform(0, 45, 30)
    p = y + rng.normal(0, 6, 30)
    files = [
        report.plot_segment_length({6: [9.0, 9.4], 12: [8.1, 8.3], 18: [7.9, 8.2]},
                                   tmp_path / "f4.png"),
        report.plot_qq({"a": p - y, "b": (p - y) ** 2}, tmp_path / "f8.png"),
        report.plot_roc_two_class({"a": report.roc_two_class(y, p)}, tmp_path / "f9.png"),
        report.plot_roc_classes({"a": report.roc_one_vs_rest(y, p)},
                                ["minimal", "mild", "moderate", "severe"],
                                tmp_path / "f10.png"),
        report.plot_predicted_vs_true(y, p, tmp_path / "f11.png", "t"),
        report.plot_heatmaps([("low", {"x": rng.normal(size=(18, 68))}),
                              ("high", {"x": rng.normal(size=(18, 68))})],
                             tmp_path / "f6.png"),
    ]
    for f in files:
        assert_png(f)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f.name for f in files)


# --------------------------------------------------------------------------- report over runs

def _fake_run(runs_dir: Path, spec: report.RunSpec, rng, n_rec=24, bias=0.0):
    """A finished run directory (metrics.json, predictions, the report's request)."""
    d = runs_dir / f"{spec.stem}-s{spec.seed}"
    d.mkdir(parents=True)
    meta = {"name": spec.resolved["name"], "model": spec.resolved["model"]["name"],
            "inputs": spec.resolved["model"].get("inputs", "all"), "splits": {}}
    for split in spec.resolved["data"]["eval_splits"]:
        ids = [f"{split}{i:02d}_{j}" for i in range(n_rec // 2) for j in (1, 2)]
        true = np.repeat(np.linspace(0, 44, n_rec // 2), 2)
        pred = true + bias + rng.normal(0, 5, n_rec)
        lines = ["recording_id,subject_id,true,predicted,severity_true,severity_predicted"]
        lines += [f"{r},{r.split('_')[0]},{t:.4f},{q:.4f},x,x" for r, t, q in zip(ids, true, pred)]
        (d / f"predictions_{split}.csv").write_text("\n".join(lines) + "\n")
        meta["splits"][split] = {"rmse": float(np.sqrt(np.mean((true - pred) ** 2)))}
    (d / "metrics.json").write_text(json.dumps(meta))
    (d / report.REQUEST_FILE).write_text(json.dumps({"fingerprint": spec.fingerprint,
                                                     "seconds": 2.5}))
    return d


COMPLEXITY_NAMES = ("gMLP+Linear", "CLG+Linear", "CFG+Linear", "DG+Linear", "DG+CA+Linear",
                    "DG+GPU+Linear", "DG+GUP+Linear", "DG+MG+Linear")


@pytest.fixture(scope="module")
def fake_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    specs = report.plan_runs("synthetic", out / "no-corpus", seeds=(0, 1))
    rng = np.random.default_rng(0)
    for s in specs:
        _fake_run(out / "runs", s, rng, bias=8.0 if "gmlp" in s.stem else 0.0)
    logs = []
    # Table VI: counted for real in test_models.py / the slow end-to-end test
    complexity = {n: {"params": 1000 * (i + 1), "flops": 20000 * (i + 1)}
                  for i, n in enumerate(COMPLEXITY_NAMES)}
    r = report.build_report("synthetic", data_root=out / "no-corpus", out=out, seeds=(0, 1),
                            n_boot=200, log=logs.append, complexity=complexity)
    return out, specs, r, logs


def test_plan_runs_configs_and_seeds(fake_report):
    _, specs, _, _ = fake_report
    stems = {s.stem for s in specs}
    assert {"baseline_ridge", "table3_dg_all", "table3_gmlp_xy", "table4_dg_mg",
            "fig4_m6", "fig4_m30"} <= stems
    assert len(stems) == 1 + 12 + 4 + 5
    assert len(specs) == 1 + 2 * (12 + 4 + 5)           # StatsRidge once, the rest x 2 seeds
    # the fingerprint follows the resolved config: another seed or step budget differs
    a = report.plan_runs("synthetic", "d", seeds=(0,), only={"table4_dg_mg"})[0]
    b = report.plan_runs("synthetic", "d", seeds=(1,), only={"table4_dg_mg"})[0]
    c = report.plan_runs("synthetic", "d", seeds=(0,), only={"table4_dg_mg"}, quick=True)[0]
    assert len({a.fingerprint, b.fingerprint, c.fingerprint}) == 3
    assert c.resolved["train"]["steps"] == report.QUICK_TRAIN["steps"]
    assert a.fingerprint == report.plan_runs("synthetic", "d", seeds=(0,),
                                             only={"table4_dg_mg"})[0].fingerprint


def test_report_reuses_runs_and_writes_every_file(fake_report):
    out, specs, r, logs = fake_report
    assert r.runs_trained == 0 and r.runs_reused == len(specs)
    assert r.run_seconds == pytest.approx(2.5 * len(specs))
    names = {p.name for p in out.iterdir() if p.is_file()}
    assert names == {"report.md", "report.json", "fig4_segment_length.png", "fig8_qq.png",
                     "fig9_roc_2class.png", "fig10_roc_4class.png",
                     "fig11_predicted_vs_true.png"}     # no models: no heat maps
    for f in names:
        if f.endswith(".png"):
            assert_png(out / f)
    assert any("reusing" in m for m in logs)


def test_report_tables(fake_report):
    out, specs, _, _ = fake_report
    md = (out / "report.md").read_text()
    data = json.loads((out / "report.json").read_text())
    for title in ("## Table III", "## Table IV", "## Table V", "## Table VI", "## Table VII"):
        assert title in md
    t3 = md.split("## Table III")[1].split("## Table IV")[0]
    rows = [ln for ln in t3.splitlines() if ln.startswith("| ") and "---" not in ln]
    assert len(rows) == 1 + 12 + 1                        # header, 12 model x input, ridge
    assert all(ln.count("|") == 8 for ln in rows)
    assert "| StatsRidge | all |" in t3 and "not in the text" in t3
    # every cell: mean ± sd [lo, hi]; the ridge (one seed): mean [lo, hi]
    dg = next(ln for ln in rows if ln.startswith("| DG+Linear | all |"))
    assert dg.count("±") == 4 and dg.count("[") == 4
    ridge = next(ln for ln in rows if ln.startswith("| StatsRidge"))
    assert "±" not in ridge and ridge.count("[") == 4
    # the numbers: per-seed RMSE recomputed from the predictions; the CI brackets the mean
    row = data["rows"]["table3_dg_all"]["dev"]
    assert row["seeds"] == 2 and row["n"] == 24
    for m in report.METRICS:
        lo, hi = row[m]["ci"]
        assert lo < row[m]["mean"] < hi
    runs = sorted((out / "runs").glob("table3_dg_all-s*"))
    st = report.stacked_predictions(runs, "dev")
    per = [float(np.sqrt(np.mean((p - st[2]) ** 2))) for p in st[3]]
    np.testing.assert_allclose(row["rmse"]["per_seed"], per)
    # gMLP rows carry a +8 bias: larger MAE than DG on the same recordings
    assert data["rows"]["table3_gmlp_all"]["dev"]["mae"]["mean"] > row["mae"]["mean"]
    # Table V: one Friedman line per seed over the eight models
    assert [f["seed"] for f in data["friedman"]] == [0, 1]
    assert all(len(f["mean_rank"]) == 8 for f in data["friedman"])
    # Table VI: the eight models; Table VII: 2-class / 4-class cells
    assert len(data["complexity"]) == 8
    t6 = md.split("## Table VI")[1].split("##")[0]
    assert "| DG+MG+Linear | 8,000 | 160,000 |" in t6
    t7 = md.split("## Table VII")[1].split("##")[0]
    assert "14-19" in t7 and len([ln for ln in t7.splitlines() if ln.startswith("| ")]) == 1 + 9
    assert set(data["fig4"]) == {"6", "12", "18", "24", "30"}


def test_resume_skips_finished_runs(tmp_path):
    specs = report.plan_runs("synthetic", tmp_path / "d", seeds=(0,),
                             only={"baseline_ridge", "table4_dg_mg"})
    rng = np.random.default_rng(1)
    done = _fake_run(tmp_path / "runs", specs[0], rng)
    half = tmp_path / "runs" / "killed"                 # a killed run: no metrics.json
    half.mkdir()
    (half / report.REQUEST_FILE).write_text(json.dumps({"fingerprint": specs[1].fingerprint}))
    assert report.find_finished(tmp_path / "runs", specs[0]) == done
    assert report.find_finished(tmp_path / "runs", specs[1]) is None
    assert report.find_started(tmp_path / "runs", specs[1]) == half
    assert report.find_started(tmp_path / "runs", specs[0]) is None
    # the next report continues the killed run in its own directory
    calls = []

    def fake_train(spec, runs_dir, resume_dir=None):
        calls.append((spec.stem, resume_dir))
        (resume_dir / "metrics.json").write_text(json.dumps({"name": spec.stem,
                                                             "splits": {"dev": {"rmse": 1.0}}}))
        return resume_dir, {"name": spec.stem, "splits": {"dev": {"rmse": 1.0}}}

    logs = []
    got = report.ensure_runs(specs, tmp_path / "runs", logs.append, train_fn=fake_train)
    assert calls == [("table4_dg_mg", half)]
    assert got == {("baseline_ridge", 0): done, ("table4_dg_mg", 0): half}
    req = json.loads((half / report.REQUEST_FILE).read_text())
    assert req["status"] == "finished" and req["fingerprint"] == specs[1].fingerprint
    assert any("continuing" in m for m in logs) and any("[1/1]" in m for m in logs)


def test_fig4_m18_shares_table4s_run(tmp_path):
    """Fig. 4's M = 18 config trains what Table IV's DG+MG row trains (M named or
    taken by default; it scores dev only): one run serves both, in either order,
    scored on the splits both need; a run scored on dev only does not serve Table IV."""
    both = report.plan_runs("synthetic", tmp_path / "d", seeds=(0,),
                            only={"table4_dg_mg", "fig4_m18", "fig4_m12"})
    fp = {s.stem: s.fingerprint for s in both}
    assert fp["table4_dg_mg"] == fp["fig4_m18"] != fp["fig4_m12"]
    dev_only = next(s for s in both if s.stem == "fig4_m18")
    assert report._eval_splits(dev_only) == {"dev"}
    rng = np.random.default_rng(2)
    _fake_run(tmp_path / "old", dev_only, rng)
    table4 = next(s for s in both if s.stem == "table4_dg_mg")
    assert report.find_finished(tmp_path / "old", dev_only) is not None
    assert report.find_finished(tmp_path / "old", table4) is None
    for order in (both, both[::-1]):
        specs = [copy.deepcopy(s) for s in order]
        trained = []

        def fake_train(spec, runs_dir, resume_dir=None):
            splits = sorted(report._eval_splits(spec))      # as resolved, and as trained:
            assert spec.config["data"].get("eval_splits", ["dev", "test"]) == splits
            trained.append((spec.stem, splits))
            return resume_dir, {"name": spec.stem, "splits": {"dev": {"rmse": 1.0}}}

        runs = tmp_path / f"runs{len(trained)}{order[0].stem}"
        got = report.ensure_runs(specs, runs, lambda m: None, train_fn=fake_train)
        assert len(trained) == 2                              # M = 12, and one for M = 18
        assert sorted(t[1] for t in trained if t[0] != "fig4_m12") == [["dev", "test"]]
        assert got[("table4_dg_mg", 0)] == got[("fig4_m18", 0)] != got[("fig4_m12", 0)]


# --------------------------------------------------------------------------- end to end

@pytest.mark.slow
def test_report_end_to_end_tiny_corpus(tmp_path):
    """The CLI on a tiny generated corpus: trains a reduced list, then reuses it all."""
    from depressionmlp import synth
    synth.generate_corpus(tmp_path / "data" / "synthetic", n_subjects=16, seed=2,
                          duration_s=(10, 12))
    only = {"baseline_ridge", "table3_gmlp_all", "table4_dg_mg", "fig4_m12"}
    kw = dict(data_root=tmp_path / "data", out=tmp_path / "rep", seeds=(0, 1),
              train_overrides={"steps": 4, "eval_every": 2}, only=only, n_boot=100)
    r = report.build_report("synthetic", **kw)
    assert r.runs_trained == 7 and r.runs_reused == 0
    names = {p.name for p in (tmp_path / "rep").iterdir() if p.is_file()}
    assert {"fig6_heatmaps.png", "fig7_heatmaps.png", "fig11_predicted_vs_true.png",
            "report.md"} <= names
    for f in names:
        if f.endswith(".png"):
            assert_png(tmp_path / "rep" / f)
    data = json.loads((tmp_path / "rep" / "report.json").read_text())
    from depressionmlp.models import build_model, count
    assert data["complexity"]["DG+MG+Linear"] == count(build_model("DG+MG+Linear", "all", 18, 68))
    r2 = report.build_report("synthetic", **kw)
    assert r2.runs_trained == 0 and r2.runs_reused == 7


def test_report_missing_corpus_one_line(tmp_path, capsys):
    """A missing corpus: the loaders' one-line message, exit 2, nothing written."""
    from depressionmlp.cli import main
    capsys.readouterr()
    rc = main(["report", "--corpus", "avec2013", "--data-root", str(tmp_path / "none"),
               "--out", str(tmp_path / "r2"), "--quick"])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1, err
    assert lines[0].startswith("depressionmlp: error: ") and "avec2013" in lines[0]
    assert not (tmp_path / "r2").exists()
