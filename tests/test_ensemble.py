"""Ensembles whose members read the input in several ways (``train.member_model``
views) with their weights fitted out of fold (``train.member_weights = "fit"``)."""

import json

import numpy as np
import pytest

from depressionmlp import metrics, synth, train
from depressionmlp.cli import main
from depressionmlp.data.corpora import discover
from depressionmlp.errors import DataError


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    synth.generate_corpus(root / "synthetic", n_subjects=30, seed=5, duration_s=(20, 25),
                          cue="static")
    return root


def _config(root, **train_over):
    t = {"steps": 20, "eval_every": 10, "seed": 0, "verbose": 0}
    t.update(train_over)
    return {"name": "t", "model": {"name": "DG+MG+Linear", "inputs": "all"},
            "data": {"corpus": "synthetic", "data_root": str(root)}, "train": t}


def test_fitted_view_weights_train_every_view_on_every_fold_and_weigh_them_out_of_fold(
        corpus, tmp_path, capsys):
    """train.member_weights = "fit" with two views and 2 folds: 4 members (view j // 2
    on fold j % 2); the view weights are the convex least-squares fit to the pooled
    out-of-fold scores, read here from the members' own dev CSVs and fitted by a grid;
    the saved model (loaded safely) scores sum_j w_j member_j per segment. With
    train.recording_link = "quadratic" a recording's score is the link (fitted to the
    same pooled out-of-fold scores) of that sum's mean: on test, on the out-of-fold
    dev, in `evaluate` and in `predict`; the exported SavedModel reproduces the
    segment scores."""
    root = corpus
    interleave = {"au_levels": "interleave"}
    cfg = _config(root, ensemble=2, member_split="cross",
                  member_model=[{}, interleave], member_weights="fit",
                  recording_link="quadratic")
    run_dir, result = train.train(cfg, out_base=tmp_path)
    assert [(m["fold"], m["view"]) for m in result["members"]] == [(0, 0), (1, 0), (0, 1),
                                                                   (1, 1)]
    assert [m["model_overrides"] for m in result["members"]] == [{}, {}, interleave, interleave]
    assert [m["seed"] for m in result["members"]] == [0, 100, 200, 300]
    assert result["ensemble"] == 4 and result["params_total"] == 4 * result["params"]

    def csv_scores(path):
        rows = [line.split(",") for line in path.read_text().splitlines()[1:]]
        return {r[0]: (float(r[2]), float(r[3])) for r in rows}

    dev = [csv_scores(run_dir / f"members/{j}/predictions_dev.csv") for j in range(4)]
    assert set(dev[0]) == set(dev[2]) and set(dev[1]) == set(dev[3])   # a fold per view
    pool = {**dev[0], **dev[1]}
    ids = sorted(pool)
    y = np.array([pool[r][0] for r in ids])
    views = np.array([[(dev[0] if r in dev[0] else dev[1])[r][1] for r in ids],
                      [(dev[2] if r in dev[2] else dev[3])[r][1] for r in ids]]).T
    grid = np.linspace(0, 1, 10001)
    loss = [np.mean((w * views[:, 0] + (1 - w) * views[:, 1] - y) ** 2) for w in grid]
    w0 = grid[int(np.argmin(loss))]
    assert result["view_weights"] == pytest.approx([w0, 1 - w0], abs=2e-3)
    assert [m["weight"] for m in result["members"]] == pytest.approx(
        [w0 / 2, w0 / 2, (1 - w0) / 2, (1 - w0) / 2], abs=1e-3)
    assert np.abs(views[:, 0] - views[:, 1]).max() > 1e-2                # two readings
    model, _ = train.load_run(run_dir)                                  # safe_mode=True
    assert type(model.get_layer("score")).__name__ == "WeightedMean"
    w = result["view_weights"]
    link = result["recording_link"]
    want_link = train.fit_recording_link(views @ np.array(w), y)
    assert link["fitted_on"] == len(ids) and link["kind"] == "quadratic"
    np.testing.assert_allclose(link["coef"], want_link["coef"], rtol=1e-3, atol=1e-3)
    test = csv_scores(run_dir / "predictions_test.csv")
    each = [csv_scores(run_dir / f"members/{j}/predictions_test.csv") for j in range(4)]
    rids = sorted(test)
    mean = np.array([sum(m["weight"] * e[rid][1] for m, e in zip(result["members"], each))
                     for rid in rids])
    linked = metrics.apply_recording_link(link, mean)
    np.testing.assert_allclose([test[r][1] for r in rids], linked, atol=3e-3)
    assert np.abs(linked - mean).max() > 1e-2                   # the link moved the scores
    oof = csv_scores(run_dir / "predictions_dev.csv")
    rcfg = train.resolve_config(cfg)
    dev_ids = train.load_tables(rcfg, train.segment_settings(rcfg), ["dev"])["dev"].recording_ids
    assert set(oof) == set(dev_ids)
    for rid, (_, pred) in oof.items():
        z = w[0] * views[ids.index(rid), 0] + w[1] * views[ids.index(rid), 1]
        assert pred == pytest.approx(float(metrics.apply_recording_link(link, [z])[0]),
                                     abs=2e-4)
    capsys.readouterr()
    assert main(["evaluate", "--model", str(run_dir), "--split", "test", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["metrics"]["rmse"] == pytest.approx(result["splits"]["test"]["rmse"], rel=1e-4)
    src = next(s for s in discover("synthetic", root) if s.split == "test")
    assert main(["predict", "--model", str(run_dir), "--openface", src.path, "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["score"] == pytest.approx(test[src.recording_id][1], abs=3e-3)
    assert got["interval"]["low"] <= got["score"] <= got["interval"]["high"]
    import tensorflow as tf
    from depressionmlp.export import export_run
    tables = train.load_tables(rcfg, train.segment_settings(rcfg), ["test"])
    x = {s: tables["test"].arrays[s][:5] for s in ("R_X", "R_Y", "R_AU")}
    paths = export_run(run_dir, tmp_path / "export")
    info = json.loads(paths["info"].read_text())
    assert info["recording_link"] == link and "then recording_link" in info["aggregation"]
    loaded = tf.saved_model.load(str(paths["saved_model"]))
    got = loaded.serve(x)
    got = got if not isinstance(got, dict) else next(iter(got.values()))
    np.testing.assert_allclose(np.asarray(got), model.predict(x, verbose=0), rtol=1e-4,
                               atol=1e-3)


def test_a_view_on_the_aus_alone_joins_the_fused_models_ensemble(corpus, tmp_path, capsys):
    """A view with its own input streams (``inputs = "au"``, no blocks): its members
    read R_AU alone; the saved ensemble (loaded safely) takes the run's three streams
    and scores sum_j w_j member_j, each member on its own streams; `predict` and the
    exported SavedModel agree with it."""
    au = {"inputs": "au", "stream_blocks": False, "head_hidden": 4}
    cfg = _config(corpus, ensemble=2, member_split="cross", member_model=[{}, au],
                  member_weights="fit")
    run_dir, result = train.train(cfg, out_base=tmp_path)
    members = [train.load_model_file(run_dir / f"members/{j}/best.keras") for j in range(4)]
    from depressionmlp.models import ensemble_members, input_streams
    assert [input_streams(m) for m in members] == [("R_X", "R_Y", "R_AU")] * 2 + [("R_AU",)] * 2
    model, rcfg = train.load_run(run_dir)
    assert input_streams(model) == ("R_X", "R_Y", "R_AU")
    assert rcfg["resolved"]["streams"] == ["R_X", "R_Y", "R_AU"]
    assert [input_streams(m) for m in ensemble_members(model)] == [
        input_streams(m) for m in members]
    tables = train.load_tables(rcfg, train.segment_settings(rcfg), ["test"])
    x = {s: tables["test"].arrays[s][:7] for s in ("R_X", "R_Y", "R_AU")}
    each = [np.asarray(m({s: x[s] for s in input_streams(m)}, training=False)).reshape(-1)
            for m in members]
    want = sum(r["weight"] * e for r, e in zip(result["members"], each))
    got = model.predict(x, verbose=0).reshape(-1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    assert np.abs(each[2] - each[0]).max() > 1e-3                # two readings
    import warnings
    with warnings.catch_warnings():                  # given every stream, a view reads its own
        warnings.simplefilter("error")
        seg = train.predict_segments(members[2], tables["test"], ("R_X", "R_Y", "R_AU"))
    np.testing.assert_allclose(seg[:7], each[2], rtol=1e-5, atol=1e-4)
    assert min(result["view_weights"]) < 1.0 and len(result["view_weights"]) == 2
    src = next(s for s in discover("synthetic", corpus) if s.split == "test")
    capsys.readouterr()
    assert main(["predict", "--model", str(run_dir), "--openface", src.path, "--json"]) == 0
    test = {line.split(",")[0]: float(line.split(",")[3])
            for line in (run_dir / "predictions_test.csv").read_text().splitlines()[1:]}
    assert json.loads(capsys.readouterr().out)["score"] == pytest.approx(
        test[src.recording_id], abs=3e-3)
    import tensorflow as tf
    from depressionmlp.export import export_run
    paths = export_run(run_dir, tmp_path / "export")
    loaded = tf.saved_model.load(str(paths["saved_model"]))    # kept: serve reads its variables
    served = loaded.serve(x)
    served = served if not isinstance(served, dict) else next(iter(served.values()))
    np.testing.assert_allclose(np.asarray(served).reshape(-1), got, rtol=1e-4, atol=1e-3)


def test_fit_view_weights_is_the_convex_least_squares_fit():
    """Three views against a brute-force simplex grid; a view far off the labels gets 0; a view
    equal to the labels gets all the weight."""
    rng = np.random.default_rng(3)
    y = rng.normal(20, 8, 40)
    P = np.stack([y + rng.normal(0, 3, 40), y + rng.normal(0, 5, 40), rng.normal(60, 8, 40)], 1)
    w = train.fit_view_weights(P, y)
    grid = [(a, b, 1 - a - b) for a in np.linspace(0, 1, 201) for b in np.linspace(0, 1, 201)
            if a + b <= 1 + 1e-12]
    best = min(grid, key=lambda g: np.sum((P @ np.array(g) - y) ** 2))
    np.testing.assert_allclose(w, best, atol=6e-3)
    assert w.sum() == pytest.approx(1.0) and w.min() >= 0 and w[2] < 0.02
    np.testing.assert_allclose(train.fit_view_weights(np.stack([P[:, 0], y], 1), y), [0, 1],
                               atol=1e-6)


@pytest.mark.parametrize("train_over, message", [
    ({"ensemble": 3, "member_weights": "mean"}, "must be one of \\['equal', 'fit'\\]"),
    ({"ensemble": 3, "member_weights": "fit", "member_split": "fixed",
      "member_model": [{}, {"au_levels": "interleave"}]}, "needs train.member_split = 'cross'"),
    ({"ensemble": 3, "member_weights": "fit", "member_split": "cross", "member_model": []},
     "a train.member_model of at least two views"),
])
def test_member_weights_is_checked(train_over, message):
    with pytest.raises(DataError, match=message):
        train.resolve_config({"train": train_over}, "x.toml")
    single = train.resolve_config({"train": {"member_weights": "fit", "ensemble": 1}}, "x.toml")
    assert single["train"]["member_weights"] == "equal"       # one model: nothing to weigh
    # the default protocol's "fit" gives way where a config asks for a fixed split or
    # no views (an explicit "fit" there is the error above)
    for over in ({"member_split": "fixed"}, {"member_model": []}):
        t = train.resolve_config({"train": over}, "x.toml")["train"]
        assert (t["member_weights"], t["member_split"]) == (
            "equal", over.get("member_split", "cross")), (over, t)
    assert train.resolve_config({}, "x.toml")["train"]["member_weights"] == "fit"


def test_a_single_model_of_a_views_config_is_its_first_view():
    """A QUICK run (ensemble = 1) of a config with views (experiments/
    dg_mg_fitted_views.toml) trains one model: view 0 over [model], the rest dropped."""
    views = [{"au_levels": "interleave", "column_jitter": {"R_X": 0.5}}, {}]
    single = train.resolve_config({"train": {"ensemble": 1, "member_weights": "fit",
                                             "member_split": "cross", "member_model": views},
                                   "model": {"column_jitter": {"R_AU": 0.7}}}, "x.toml")
    assert single["train"]["member_model"] == []
    assert single["train"]["member_weights"] == "equal"
    assert single["train"]["member_split"] == "fixed"
    assert single["model"]["au_levels"] == "interleave"
    assert single["model"]["column_jitter"] == {"R_X": 0.5, "R_AU": 0.7}
    ens = train.resolve_config({"train": {"ensemble": 3, "member_model": views}}, "x.toml")
    assert ens["train"]["member_model"] == views and "au_levels" not in ens["model"]


def test_weighted_mean_layer_is_a_checked_convex_combination():
    from depressionmlp.layers import WeightedMean
    layer = WeightedMean([0.2, 0.3, 0.5], name="score")
    x = [np.full((4, 1), v, dtype="float32") for v in (1.0, 10.0, 100.0)]
    np.testing.assert_allclose(np.asarray(layer(x)), np.full((4, 1), 53.2), rtol=1e-6)
    again = WeightedMean.from_config(layer.get_config())
    assert again.member_weights == [0.2, 0.3, 0.5] and again.name == "score"
    for bad in ([1.0], [0.5, 0.6], [1.5, -0.5]):
        with pytest.raises(ValueError, match="must be >= 2 numbers >= 0 summing to 1"):
            WeightedMean(bad)
    with pytest.raises(ValueError, match="3 weights for 2 inputs"):
        WeightedMean([0.2, 0.3, 0.5])(x[:2])


def test_the_fitted_views_experiment_config_resolves_to_six_models_of_two_views():
    from pathlib import Path

    from depressionmlp.demo import settings_line
    from depressionmlp.runs import load_config
    path = Path(__file__).resolve().parent.parent / "experiments" / "dg_mg_fitted_views.toml"
    cfg = train.resolve_config(load_config(path), str(path))
    assert (cfg["protocol"], cfg["train"]["member_weights"]) == ("default", "fit")
    assert train.member_layout(cfg) == [(j % 3, j // 3) for j in range(6)]
    assert [train.member_config(cfg, j)["model"].get("au_levels", "keep") for j in range(6)] == \
        ["keep"] * 3 + ["interleave"] * 3
    assert train.member_config(cfg, 4)["model"]["column_jitter"] == {
        "R_X": 0.5, "R_Y": 0.5, "R_AU": 1.0}
    assert "6 such models (2 views x 3 folds)" in settings_line(cfg)


def test_the_default_adds_a_column_view_per_stream_and_the_three_view_config_drops_them():
    """The default protocol's views 3 and 4: the column view on the AUs alone and on
    the keypoints alone (15 models), each at 3.75 x the steps and given only its
    stream. experiments/dg_mg_three_views.toml is the previous default (views 0-2, nine
    models, the same members and seeds); under the paper protocol it is one model."""
    from pathlib import Path

    from depressionmlp.runs import load_config
    cfg = train.resolve_config({}, "x.toml")
    assert train.member_layout(cfg) == [(j % 3, j // 3) for j in range(15)]
    members = [train.member_config(cfg, j) for j in range(15)]
    assert [train.model_streams(m) for m in members[::3]] == [
        ("R_X", "R_Y", "R_AU")] * 3 + [("R_AU",), ("R_X", "R_Y")]
    assert [m["train"]["steps"] for m in members[::3]] == [1600, 1600, 6000, 6000, 6000]
    assert all(m["model"]["stream_blocks"] is False for m in members[6:])
    path = Path(__file__).resolve().parent.parent / "experiments" / "dg_mg_three_views.toml"
    three = train.resolve_config(load_config(path), str(path))
    assert three["train"]["member_model"] == cfg["train"]["member_model"][:3]
    assert three["train"]["member_step_scale"] == [1, 1, 3.75]
    for j in range(9):                        # the default's first nine members
        m = train.member_config(three, j)
        assert (m["model"], m["train"]) == (members[j]["model"], members[j]["train"]), j
    paper = train.resolve_config(load_config(path), str(path), protocol="paper")
    assert len(train.member_layout(paper)) == 1


def test_the_fast_config_is_the_default_with_its_block_views_at_half_the_steps():
    """experiments/dg_mg_fast.toml: the default's fifteen members (views, folds, seeds)
    with views 0-1 at 800 steps and views 2-4 at 6,000; on a run of the keypoints alone
    its views 3-4 drop out with their budgets, as the default's do."""
    from pathlib import Path

    from depressionmlp.runs import load_config, deep_update
    path = Path(__file__).resolve().parent.parent / "experiments" / "dg_mg_fast.toml"
    fast = train.resolve_config(load_config(path), str(path))
    default = train.resolve_config(deep_update(load_config(path), {"train": {
        "member_step_scale": [1, 1, 3.75, 3.75, 3.75]}}), str(path))
    assert len(train.member_layout(fast)) == 15
    for j in range(15):
        m, d = train.member_config(fast, j), train.member_config(default, j)
        assert m["model"] == d["model"] and m["train"]["seed"] == d["train"]["seed"], j
        assert m["train"]["steps"] == (800 if j < 6 else 6000), j
        assert d["train"]["steps"] == (1600 if j < 6 else 6000), j
    xy = train.resolve_config(deep_update(load_config(path), {"model": {"inputs": "xy"}}),
                              str(path))
    assert xy["train"]["member_step_scale"] == [0.5, 0.5, 3.75]


def test_a_run_of_one_stream_keeps_the_protocol_views_that_apply_to_it():
    """On a run of the AUs (or the keypoints) alone the default's AU view would repeat
    view 2 and its keypoint view would have nothing to read: the protocol's views 0-2
    remain, with their step budgets; a config's own view that cannot read its run's
    streams is still an error."""
    for inputs, streams in (("au", ("R_AU",)), ("xy", ("R_X", "R_Y"))):
        cfg = train.resolve_config({"model": {"name": "DG+Linear", "inputs": inputs}}, "x.toml")
        assert len(cfg["train"]["member_model"]) == 3, inputs
        assert cfg["train"]["member_step_scale"] == [1, 1, 3.75]
        assert {train.model_streams(train.member_config(cfg, j)) for j in range(9)} == {streams}
    table3 = train.resolve_config({"model": {"name": "DG+Linear", "inputs": "xy"},
                                   "train": {"member_views": [0, 1]}}, "x.toml")
    assert len(train.member_layout(table3)) == 6
    assert train.protocol_views([{}, {"inputs": "au"}], [1, 2], ("R_X", "R_Y", "R_AU")) == (
        [{}, {"inputs": "au"}], [1, 2])
    with pytest.raises(DataError, match="view 1: inputs must be one of \\['xy'\\]"):
        train.resolve_config({"model": {"name": "DG+Linear", "inputs": "xy"},
                              "train": {"member_model": [{}, {"inputs": "au"}]}}, "x.toml")


def test_the_default_protocols_third_view_reads_every_column_without_blocks():
    """The default protocol's view 2 skips the blocks and the fusion (Eq. 19 with a
    hidden layer of 16, then Eq. 20): view 2 on folds 0-2 as members 6-8."""
    from depressionmlp.demo import settings_line
    cfg = train.resolve_config({}, "x.toml")
    assert train.member_layout(cfg)[:9] == [(j % 3, j // 3) for j in range(9)]
    column = train.member_config(cfg, 6)
    assert (column["model"]["stream_blocks"], column["model"]["head_hidden"],
            column["model"]["au_levels"]) == (False, 16, "interleave")
    assert train.member_config(cfg, 5)["model"].get("stream_blocks", True) is True
    train.resolve_score_affine(column["model"], np.array([5.0, 20.0]), "t")
    model = train.build_model_from_config(column, train.segment_settings(column))
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 3 * (18 * 16 + 16 + 16 + 1) + 3 * 68 + 1 == 1_168   # the head alone
    assert not any(l.name.endswith(("_dg", "mutual_guidance")) for l in model.layers)
    assert "15 such models (5 views x 3 folds)" in settings_line(cfg)


def test_the_ablation_configs_keep_the_views_with_blocks():
    """Every Table III-IV and Fig. 4 config keeps views 0-1 (train.member_views = [0,
    1]): the blockless view would be the same model in every row. Under the paper
    protocol (no views) the key selects nothing; the headline configs keep all three."""
    from pathlib import Path

    from depressionmlp.runs import load_config
    default = train.resolve_config({}, "x.toml")["train"]["member_model"]
    experiments = Path(__file__).resolve().parent.parent / "experiments"
    paths = sorted([*experiments.glob("table[34]_*.toml"), *experiments.glob("fig4_*.toml")])
    assert len(paths) == 21
    for path in paths:
        cfg = train.resolve_config(load_config(path), str(path))
        assert cfg["train"]["member_model"] == default[:2], path.name
        assert len(train.member_layout(cfg)) == 6 and cfg["train"]["member_views"] is None
        paper = train.resolve_config(load_config(path), str(path), protocol="paper")
        assert (paper["train"]["member_model"], len(train.member_layout(paper))) == ([], 1)
    for name in ("demo", "test_avec2013", "test_avec2014", "test_daic"):
        cfg = train.resolve_config(load_config(experiments / f"{name}.toml"), name)
        assert cfg["train"]["member_model"] == default, name
    picked = train.resolve_config({"train": {"member_views": [2, 0]}}, "x.toml")["train"]
    assert picked["member_model"] == [default[2], default[0]]


@pytest.mark.parametrize("keep", [[], [0, 0], [5], [-1], [True], "0", [0.0]])
def test_member_views_are_checked(keep):
    with pytest.raises(DataError, match="train.member_views must be a non-empty list of "
                                        "distinct indices into train.member_model \\(which "
                                        "has 5 entries\\)"):
        train.resolve_config({"train": {"member_views": keep}}, "x.toml")


def test_member_step_scale_gives_each_view_its_own_step_budget():
    """train.member_step_scale: view v trains round(steps x scale_v) steps (max_minutes
    still shared equally); member_views selects it with the views; one model
    (ensemble = 1) is view 0 with view 0's budget; a config's own views without it
    train train.steps each."""
    views = [{}, {"au_levels": "interleave"}]
    t = {"member_model": views, "member_step_scale": [1, 2.5], "steps": 100,
         "max_minutes": 6.0}
    cfg = train.resolve_config({"train": t}, "x.toml")
    members = [train.member_config(cfg, j)["train"] for j in range(6)]
    assert [m["steps"] for m in members] == [100] * 3 + [250] * 3
    np.testing.assert_allclose([m["max_minutes"] for m in members], [1.0] * 6)
    assert all(m["member_step_scale"] is None for m in members)
    picked = train.resolve_config({"train": {**t, "member_views": [1]}}, "x.toml")
    assert picked["train"]["member_step_scale"] == [2.5]
    assert train.member_config(picked, 0)["train"]["steps"] == 250
    single = train.resolve_config({"train": {**t, "ensemble": 1,
                                             "member_step_scale": [1.5, 2.5]}}, "x.toml")
    assert (single["train"]["steps"], single["train"]["member_step_scale"]) == (150, None)
    default = train.resolve_config({}, "x.toml")
    assert [train.member_config(default, j)["train"]["steps"] for j in range(9)] == \
        [1600] * 6 + [6000] * 3
    own = train.resolve_config({"train": {"member_model": views}}, "x.toml")
    assert own["train"]["member_step_scale"] is None
    assert {train.member_config(own, j)["train"]["steps"] for j in range(6)} == {1600}


@pytest.mark.parametrize("scale", [[1], [1, 0], [1, -2], [1, True], "1", [1, float("nan")]])
def test_member_step_scale_is_checked(scale):
    with pytest.raises(DataError, match="train.member_step_scale must be one positive "
                                        "number per entry of train.member_model \\(2 views\\)"):
        train.resolve_config({"train": {"member_model": [{}, {"au_levels": "interleave"}],
                                        "member_step_scale": scale, "steps": 10}}, "x.toml")


def test_member_step_scale_needs_a_step_budget():
    with pytest.raises(DataError, match="train.member_step_scale scales train.steps"):
        train.resolve_config({"train": {"member_model": [{}, {"au_levels": "interleave"}],
                                        "member_step_scale": [1, 2], "steps": None,
                                        "epochs": 5}}, "x.toml")
