"""The eight models of Tables III-VI: build, sizes, FLOPs, training steps, saving."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from depressionmlp.models import (DEFAULT_OPTIONS, INPUT_SETS, MODEL_NAMES,  # noqa: E402
                                  allowed_input_sets, build_from_config, build_model,
                                  count, count_all)

M, N = 18, 68
FUSION_MODELS = ("DG+CA+Linear", "DG+GPU+Linear", "DG+GUP+Linear", "DG+MG+Linear")
COMBOS = [(name, key) for name in MODEL_NAMES for key in allowed_input_sets(name)]


def _data(streams, batch, seed=0, m=M, n=N):
    rng = np.random.default_rng(seed)
    x = {s: rng.uniform(0, 1, size=(batch, m, n)).astype("float32") for s in streams}
    y = rng.uniform(0, 63, size=(batch, 1)).astype("float32")
    return x, y


def test_registry():
    assert MODEL_NAMES == ("gMLP+Linear", "CLG+Linear", "CFG+Linear", "DG+Linear",
                           "DG+CA+Linear", "DG+GPU+Linear", "DG+GUP+Linear", "DG+MG+Linear")
    assert INPUT_SETS == {"xy": ("R_X", "R_Y"), "au": ("R_AU",),
                          "all": ("R_X", "R_Y", "R_AU")}
    assert len(COMBOS) == 4 * 3 + 4
    for name in FUSION_MODELS:
        assert allowed_input_sets(name) == ("all",)


@pytest.mark.parametrize("name,inputs", COMBOS, ids=[f"{n}-{k}" for n, k in COMBOS])
def test_builds_counts_and_trains(name, inputs):
    keras.utils.set_random_seed(0)
    model = build_model(name, inputs)
    streams = INPUT_SETS[inputs]
    assert model.name == name.replace("+", "_")
    assert sorted(model.input.keys()) == sorted(streams)
    for s in streams:
        assert tuple(model.input[s].shape) == (None, M, N)
        assert model.input[s].dtype == "float32"
    assert model.output_names == ["score"]
    assert tuple(model.output.shape) == (None, 1)
    sizes = count(model)
    assert sizes["params"] == model.count_params() > 0
    assert sizes["flops"] > 0

    # gradients reach the weights: 20 full-batch steps on one batch lower its loss
    # (measured at this seed: to 0.03-0.93 of the first step's)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse", jit_compile=False)
    rng = np.random.default_rng(0)
    x = {s: rng.normal(size=(16, M, N)).astype("float32") for s in streams}
    y = rng.uniform(0, 2, size=(16, 1)).astype("float32")
    losses = model.fit(x, y, batch_size=16, epochs=20, verbose=0, shuffle=False).history["loss"]
    assert losses[-1] < 0.97 * losses[0], losses
    assert model.predict(x, verbose=0).shape == (16, 1)


def test_design_param_count():
    assert count(build_model("DG+MG+Linear", "all"))["params"] == 42_192
    assert count(build_model("DG+Linear", "au"))["params"] == 12_631 + (M + 1) + (N + 1)
    # model.head_hidden = H: Eq. 19 gains C1_{M->H} (+ bias) per stream, its C1 reads H
    wide = count(build_model("DG+MG+Linear", "all", head_hidden=16))
    assert wide["params"] == 42_192 + 3 * (M * 16 + 16) + 3 * (16 - M) == 43_098
    # stream_blocks = false (the default protocol's column view): Eq. 19-20 alone on the
    # three inputs, here with a hidden layer of 16 and K = 4 values per column
    column = build_model("DG+MG+Linear", "all", stream_blocks=False, head_hidden=16,
                         head_outputs=4)
    assert count(column)["params"] == 3 * (M * 16 + 16 + 16 * 4 + 4) + 3 * N * 4 + 1 == 1_933
    assert [l.name for l in column.layers] == ["R_X", "R_Y", "R_AU", "score"]
    with pytest.raises(ValueError, match="stream_blocks"):
        build_model("DG+MG+Linear", stream_blocks="no")


def test_flops_analytical():
    m, n = M, N
    dg_macs = (m * n * n + n // 2 * m * m + m * n // 2 * n
               + n * m * m + m // 2 * n * n + n * m // 2 * m + 2 * m * n)
    head_macs = 3 * n * m + 3 * n
    mg_macs = (2 * n * m + 2 * n * m + m * n) + (n * m + n * m + m * n)
    assert count(build_model("DG+Linear"))["flops"] == 2 * (3 * dg_macs + head_macs)
    assert count(build_model("DG+MG+Linear"))["flops"] == 2 * (3 * dg_macs + mg_macs + head_macs)
    # A shared block is applied three times and counted three times.
    shared = build_model("DG+Linear", shared_stream_block=True)
    assert count(shared) == {"params": 12_631 + 3 * (m + 1) + 3 * n + 1,
                             "flops": 2 * (3 * dg_macs + head_macs)}


def test_count_all_table():
    table = count_all()
    assert tuple(table) == MODEL_NAMES
    assert table["DG+MG+Linear"]["params"] == 42_192
    assert all(set(v) == {"params", "flops"} for v in table.values())
    assert tuple(count_all(inputs="xy")) == MODEL_NAMES[:4]


@pytest.mark.parametrize("name", FUSION_MODELS)
@pytest.mark.parametrize("inputs", ["xy", "au"])
def test_fusion_models_need_all_streams(name, inputs):
    with pytest.raises(ValueError, match=r"allowed input sets: all") as err:
        build_model(name, inputs)
    assert "gMLP+Linear" in str(err.value) and "DG+Linear" in str(err.value)


@pytest.mark.parametrize("inputs, streams", [("xy", ("R_X", "R_Y")), ("au", ("R_AU",))])
def test_without_blocks_a_fusion_model_reads_any_input_set(inputs, streams):
    """stream_blocks = False: nothing is fused, so Eq. 19-20 read any set; an ensemble
    of such a view and a fused one takes the union of their streams, and one whose
    members read a stream outside ``streams`` is an error."""
    from depressionmlp.models import MEMBER_NAME, ensemble_model, input_streams
    view = build_model("DG+MG+Linear", inputs, 6, 4, stream_blocks=False,
                       model_name=MEMBER_NAME.format(1))
    assert input_streams(view) == streams and view.get_layer("score").num_streams == len(streams)
    fused = build_model("DG+MG+Linear", "all", 6, 4, model_name=MEMBER_NAME.format(0))
    x = {s: np.random.default_rng(0).normal(size=(3, 6, 4)).astype("float32")
         for s in ("R_X", "R_Y", "R_AU")}
    both = ensemble_model([fused, view])
    assert input_streams(both) == ("R_X", "R_Y", "R_AU")
    want = (np.asarray(fused(x)) + np.asarray(view({s: x[s] for s in streams}))) / 2
    np.testing.assert_allclose(np.asarray(both(x)), want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"members read \['R_X', 'R_Y'\], not among"):
        ensemble_model([fused, view], streams=("R_AU",))


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="Unknown model .*allowed: gMLP\\+Linear"):
        build_model("DG+MG")
    with pytest.raises(ValueError, match="Unknown input set .*'xy'"):
        build_model("DG+Linear", "keypoints")
    with pytest.raises(ValueError, match="Unknown model option"):
        build_model("DG+Linear", clg_softmax="frames")


@pytest.mark.parametrize("name", ["DG+MG+Linear", "CLG+Linear", "CFG+Linear"])
@pytest.mark.parametrize("m,n", [(17, 68), (18, 67)])
def test_odd_sizes_raise(name, m, n):
    with pytest.raises(ValueError, match="must be even"):
        build_model(name, "all", segment_length=m, n_points=n)


def test_gmlp_accepts_odd_sizes_and_width():
    model = build_model("gMLP+Linear", "au", segment_length=9, n_points=11, gmlp_width=8)
    x, _ = _data(("R_AU",), 2, m=9, n=11)
    assert model.predict(x, verbose=0).shape == (2, 1)


def test_options_pass_through():
    model = build_model("DG+CA+Linear", clg_softmax_over="frames", cfg_softmax_over="locations",
                        ca_num_heads=2, ca_key_dim=8, output_activation="linear")
    dg = model.get_layer("R_AU_dg")
    assert (dg.clg_softmax_over, dg.cfg_softmax_over) == ("frames", "locations")
    ca = model.get_layer("cross_attention")
    assert (ca.num_heads, ca.head_dim) == (2, 8)
    assert model.get_layer("score").output_activation == "linear"
    gmlp = build_model("gMLP+Linear", "xy", gmlp_depth=2, gmlp_spatial_norm=True)
    assert sorted(l.name for l in gmlp.layers if "gmlp" in l.name) == \
        ["R_X_gmlp_0", "R_X_gmlp_1", "R_Y_gmlp_0", "R_Y_gmlp_1"]
    assert gmlp.get_layer("R_X_gmlp_1").spatial_norm
    assert set(DEFAULT_OPTIONS) >= {"clg_softmax_over", "ca_num_heads", "output_activation"}


def test_build_from_config():
    model = build_from_config({"name": "DG+GUP+Linear", "inputs": "all",
                               "segment_length": 10, "n_points": 12,
                               "output_activation": "linear"})
    assert model.name == "DG_GUP_Linear"
    assert tuple(model.input["R_X"].shape) == (None, 10, 12)
    assert build_from_config({}).count_params() == 42_192


@pytest.mark.parametrize("name,inputs,options", [
    ("DG+MG+Linear", "all", {}),
    ("DG+CA+Linear", "all", {"ca_num_heads": 2}),
    ("gMLP+Linear", "xy", {"gmlp_spatial_norm": True}),
    ("DG+Linear", "au", {"shared_stream_block": True, "output_activation": "linear"}),
    ("DG+MG+Linear", "all", {"stream_blocks": False, "head_hidden": 4, "head_outputs": 3,
                             "au_levels": "interleave", "standardize": "split"}),
])
def test_model_keras_round_trip(name, inputs, options, tmp_path):
    model = build_model(name, inputs, segment_length=8, n_points=10, **options)
    rng = np.random.default_rng(5)
    for w in model.weights:   # non-trivial weights, so the check means something
        w.assign(w.numpy() + rng.normal(scale=0.1, size=w.shape).astype("float32"))
    x, _ = _data(INPUT_SETS[inputs], 4, m=8, n=10)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert loaded.name == model.name
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-6)
