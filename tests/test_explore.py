"""depressionmlp.explore and the notebook functions of hmhn.explain, on real numbers."""

import json

import numpy as np
import pytest

from depressionmlp import explore
from depressionmlp.errors import DataError

ROWS = [  # (true, predicted): two minimal, one mild, one moderate, two severe, no gaps
    ("a_1", 5.0, 9.0), ("b_1", 12.0, 13.0), ("c_1", 16.0, 15.0), ("d_1", 25.0, 19.0),
    ("e_1", 30.0, 24.0), ("f_1", 40.0, 31.0)]


def _rows(scale="bdi2"):
    from depressionmlp import metrics
    return [{"recording_id": r, "subject_id": r[0], "true": t, "predicted": p, "error": p - t,
             "severity_true": metrics.severity_name(t, scale),
             "severity_predicted": metrics.severity_name(p, scale)} for r, t, p in ROWS]


def test_notebook_outputs_go_to_the_ignored_outputs_folder():
    out = explore.default_out_dir("explore_run")
    assert out.parts[-3:] == ("outputs", "notebooks", "explore_run")
    assert "notebooks" not in out.relative_to(explore.REPO_ROOT).parts[:1]


def test_severity_bands_are_the_bdi2_classes():
    assert [(b["name"], b["low"], b["high"]) for b in explore.severity_bands("bdi2")] == [
        ("minimal", 0, 13), ("mild", 14, 19), ("moderate", 20, 28), ("severe", 29, 63)]
    assert explore.severity_bands("phq8")[-1] == {"name": "severe", "low": 20, "high": 24}


def test_error_by_severity_numbers():
    table = {b["name"]: b for b in explore.error_by_severity(_rows())}
    assert table["minimal"]["n"] == 2 and table["minimal"]["mae"] == pytest.approx(2.5)
    assert table["minimal"]["bias"] == pytest.approx(2.5)
    assert table["minimal"]["accuracy"] == 1.0
    assert table["moderate"]["bias"] == pytest.approx(-6.0)
    assert table["moderate"]["accuracy"] == 0.0                    # 19 is mild
    assert table["severe"]["rmse"] == pytest.approx(np.sqrt((36 + 81) / 2))
    assert table["severe"]["accuracy"] == 0.5                      # 24 moderate, 31 severe
    empty = explore.error_by_severity(_rows()[:1])
    assert empty[1]["n"] == 0 and np.isnan(empty[1]["mae"])


def test_largest_errors_and_picks():
    worst = explore.largest_errors(_rows(), 3)
    assert [r["recording_id"] for r in worst] == ["f_1", "d_1", "e_1"]
    assert explore.pick_recordings(_rows(), 2) == ["a_1", "f_1"]
    assert explore.pick_recordings(_rows(), 3) == ["a_1", "c_1", "f_1"] or \
        explore.pick_recordings(_rows(), 3) == ["a_1", "d_1", "f_1"]


def test_read_run_of_either_model(tmp_path):
    from depressionmlp.train import write_predictions_csv
    from hmhn.train import write_predictions_csv as hmhn_csv
    d = tmp_path / "dmlp"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"name": "x", "model": {"name": "DG+MG+Linear"},
                                               "data": {"corpus": "synthetic"},
                                               "resolved": {"scale": "bdi2"}}))
    (d / "metrics.json").write_text(json.dumps({"model": "DG+MG+Linear"}))
    (d / "history.json").write_text(json.dumps(
        [{"epoch": 1, "step": 50, "loss": 9.0, "dev_rmse": 8.0, "dev_mae": 7.0, "best": True},
         {"epoch": 2, "step": 100, "loss": 7.0, "dev_rmse": 8.5, "dev_mae": 7.5, "best": False}]))
    write_predictions_csv(d / "predictions_dev.csv",
                          [dict(r, severity_true="", severity_predicted="") for r in _rows()])
    run = explore.read_run(d)
    assert run["kind"] == "depressionmlp" and run["scale"] == "bdi2"
    dev = run["predictions"]["dev"]
    assert [r["true"] for r in dev] == [t for _, t, _ in ROWS]
    assert dev[3]["error"] == pytest.approx(-6.0) and dev[3]["severity_predicted"] == "mild"
    c = explore.training_curves(run["history"])
    assert c["x_label"] == "optimiser step" and list(c["x"]) == [50, 100] and c["best"] == 0

    h = tmp_path / "hmhn"
    h.mkdir()
    (h / "config.json").write_text(json.dumps({"name": "hm", "model": {"row": "E"},
                                               "data": {"corpus": "synthetic-faces"},
                                               "quick_mode": True}))
    (h / "metrics.json").write_text("{}")
    hmhn_csv(h / "predictions_test.csv", _rows())
    run = explore.read_run(h)
    assert run["kind"] == "hmhn" and run["history"] == [] and run["scale"] == "bdi2"
    assert run["predictions"]["test"][0]["severity_true"] == "minimal"
    c = explore.training_curves([{"epoch": 1, "loss": 3.0, "lr": 1e-3, "best": True}])
    assert c["x_label"] == "epoch" and np.isnan(c["dev_rmse"][0])
    with pytest.raises(DataError, match="missing"):
        explore.read_run(tmp_path)


def test_figures_draw_the_numbers(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = _rows()
    fig = explore.plot_predicted_vs_true(rows)
    pts = fig.axes[0].collections[-1].get_offsets()
    assert np.allclose(pts, [(t, p) for _, t, p in ROWS])
    assert "RMSE" in fig.axes[0].get_title()
    fig2 = explore.plot_error_by_severity(rows)
    fig3 = explore.plot_largest_errors(rows, 2)
    assert [t.get_text() for t in fig3.axes[0].get_yticklabels()] == ["f_1 (-9.0)", "d_1 (-6.0)"]
    series = [{"recording_id": "a_1", "true": 5.0, "scores": np.array([4.0, 6.0, 8.0]),
               "time": np.array([0.0, 1.5, 3.0]), "time_label": "segment start (s)",
               "score": 6.0}]
    fig4 = explore.plot_segment_scores(series)
    assert np.allclose(fig4.axes[0].lines[0].get_ydata(), [4, 6, 8])
    fig5 = explore.plot_training_curves(explore.training_curves(
        [{"epoch": 1, "step": 5, "loss": 2.0, "dev_rmse": 3.0, "dev_mae": 2.5, "best": True}]))
    for i, f in enumerate((fig, fig2, fig3, fig4, fig5)):
        explore.save_png(f, tmp_path / "f" / f"{i}.png")
        assert (tmp_path / "f" / f"{i}.png").read_bytes()[:4] == b"\x89PNG"
    plt.close("all")


def test_segment_scores_average_to_the_recording_prediction(tmp_path):
    # an ensemble of 2 members (not the protocol's 3 folds x 3 views, to keep the test
    # short): each segment score is the members' mean, so their recording mean is the
    # saved prediction (on test: cross-fitted members saved out-of-fold dev predictions)
    run_dir = explore.quick_run(tmp_path, steps=2, n_subjects=8, duration_s=(8, 9), ensemble=2,
                                train_options={"member_weights": "equal"})
    assert len(explore.read_run(run_dir)["metrics"]["members"]) == 2
    rows = explore.read_run(run_dir)["predictions"]["test"]
    series = explore.segment_scores(run_dir, "test", cache_dir=tmp_path / "cache")
    assert [s["recording_id"] for s in series] == [r["recording_id"] for r in rows]
    for s, r in zip(series, rows):
        assert s["score"] == pytest.approx(r["predicted"], abs=1e-3)   # CSV keeps 4 decimals
        # stride 9 at 6 fps, over the 5 phases "auto" cuts these 8-9 s recordings at
        assert np.allclose(np.diff(s["time"]), 1.5 / 5)
    one = explore.segment_scores(run_dir, "test", [rows[0]["recording_id"]],
                                 cache_dir=tmp_path / "cache")
    assert len(one) == 1 and np.allclose(one[0]["scores"], series[0]["scores"])


def test_hmhn_tile_weights_head_shares_and_fused_map():
    from hmhn import explain
    from hmhn.models import build_hmhn
    model = build_hmhn(input_size=64, width=8, heads=3, grid="2x2")
    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    tiles, wmap = explain.gwa_tile_weights(model, x)
    assert tiles.shape == (2, 2, 2) and wmap.shape == (2, 64, 64)
    assert np.allclose(tiles.sum(axis=(1, 2)), 1.0, atol=1e-5)     # softmax over the tiles
    assert np.allclose(wmap[:, :32, :32], tiles[:, :1, :1], atol=1e-6)   # tile (0, 0)
    shares = explain.head_fusion_weights(model, x)
    assert shares.shape == (2, 3) and np.allclose(shares.sum(axis=1), 1.0)
    s = explain.attention_summary(model, x)
    assert s["heads"].shape == (2, 3, 64, 64) and s["fused"].shape == (2, 64, 64)
    assert s["map_size"] == (2, 2) and s["grid"] == (2, 2) and s["scores"].shape == (2,)
    assert 0.0 <= s["fused"].min() and s["fused"].max() <= 1.0
    with pytest.raises(ValueError, match="Grid-Wise"):
        explain.gwa_tile_weights(build_hmhn(row="D", input_size=64, width=8, heads=2), x)
