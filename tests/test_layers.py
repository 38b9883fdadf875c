"""DepressionMLP layers vs the NumPy reading of the equations, shapes, saving, gradients."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from depressionmlp.layers import (CrossAttentionFusion, CrossFrameGating,  # noqa: E402
                                  CrossLocationGating, DualGating, GatedMLPBlock,
                                  MutualGuidance, ScoreHead)

try:  # tests/ may or may not be a package
    from tests import numpy_reference as ref
except ImportError:  # pragma: no cover - depends on pytest's import mode
    import numpy_reference as ref

M, N = 6, 10          # small, even, M != N so that a swapped axis fails loudly
ATOL = 1e-5


def _randomize(layer, seed=0, scale=0.4):
    """Give every weight a random value (biases included) so no term hides."""
    rng = np.random.default_rng(seed)
    for w in layer.weights:
        w.assign(rng.normal(scale=scale, size=tuple(w.shape)).astype("float32"))


def _inputs(k, batch=3, m=M, n=N, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(batch, m, n)).astype("float32") for _ in range(k)]


def _call(layer, xs):
    out = layer(xs if len(xs) > 1 else xs[0])
    return [np.asarray(o) for o in out] if isinstance(out, (list, tuple)) else [np.asarray(out)]


# Each case: (id, layer factory, number of input streams, numpy reference on one batch)
CASES = [
    ("clg", lambda: CrossLocationGating(), 1,
     lambda xs, w: [ref.batched(ref.clg)(xs[0], w=w)]),
    ("clg_frames", lambda: CrossLocationGating(softmax_over="frames"), 1,
     lambda xs, w: [ref.batched(ref.clg)(xs[0], w=w, softmax_over="frames")]),
    ("cfg", lambda: CrossFrameGating(), 1,
     lambda xs, w: [ref.batched(ref.cfg)(xs[0], w=w)]),
    ("cfg_locations", lambda: CrossFrameGating(softmax_over="locations"), 1,
     lambda xs, w: [ref.batched(ref.cfg)(xs[0], w=w, softmax_over="locations")]),
    ("dg", lambda: DualGating(), 1,
     lambda xs, w: [ref.batched(ref.dual_gating)(xs[0], w=w)]),
    ("dg_swapped_softmax",
     lambda: DualGating(clg_softmax_over="frames", cfg_softmax_over="locations"), 1,
     lambda xs, w: [ref.batched(ref.dual_gating)(
         xs[0], w=w, clg_softmax_over="frames", cfg_softmax_over="locations")]),
    ("dg_clg", lambda: DualGating(branches="clg"), 1,
     lambda xs, w: [ref.batched(ref.dual_gating)(xs[0], w=w, branches="clg")]),
    ("dg_cfg", lambda: DualGating(branches="cfg"), 1,
     lambda xs, w: [ref.batched(ref.dual_gating)(xs[0], w=w, branches="cfg")]),
    ("dg_cfg_conv", lambda: DualGating(branches="cfg", single_branch_conv=True), 1,
     lambda xs, w: [ref.batched(ref.dual_gating)(xs[0], w=w, branches="cfg",
                                                 single_branch_conv=True)]),
    ("mg", lambda: MutualGuidance(), 3,
     lambda xs, w: ref.batched(ref.mutual_guidance)(*xs, w=w)),
    ("mg_gpu", lambda: MutualGuidance(guide_keypoints=False), 3,
     lambda xs, w: ref.batched(ref.mutual_guidance)(*xs, w=w, guide_keypoints=False)),
    ("mg_gup", lambda: MutualGuidance(guide_au=False), 3,
     lambda xs, w: ref.batched(ref.mutual_guidance)(*xs, w=w, guide_au=False)),
    ("head1", lambda: ScoreHead(1), 1,
     lambda xs, w: [ref.batched(ref.score_head)(*xs, w=w)]),
    ("head2_linear", lambda: ScoreHead(2, output_activation="linear"), 2,
     lambda xs, w: [ref.batched(ref.score_head)(*xs, w=w, output_activation="linear")]),
    ("head3", lambda: ScoreHead(3), 3,
     lambda xs, w: [ref.batched(ref.score_head)(*xs, w=w)]),
    ("head3_scaled", lambda: ScoreHead(3, score_scale=9.5), 3,
     lambda xs, w: [ref.batched(ref.score_head)(*xs, w=w, score_scale=9.5)]),
    ("head3_hidden", lambda: ScoreHead(3, hidden=5), 3,
     lambda xs, w: [ref.batched(ref.score_head)(*xs, w=w, hidden=True)]),
    ("head1_hidden_linear", lambda: ScoreHead(1, output_activation="linear", hidden=4), 1,
     lambda xs, w: [ref.batched(ref.score_head)(*xs, w=w, output_activation="linear",
                                                hidden=True)]),
    ("head3_hidden_k3", lambda: ScoreHead(3, hidden=5, column_outputs=3), 3,
     lambda xs, w: [ref.batched(ref.score_head)(*xs, w=w, hidden=True)]),
    ("head2_k2_linear", lambda: ScoreHead(2, output_activation="linear", column_outputs=2), 2,
     lambda xs, w: [ref.batched(ref.score_head)(*xs, w=w, output_activation="linear")]),
    ("gmlp", lambda: GatedMLPBlock(), 1,
     lambda xs, w: [ref.batched(ref.gmlp)(xs[0], w=w)]),
    ("gmlp_norm_w6", lambda: GatedMLPBlock(width=6, spatial_norm=True), 1,
     lambda xs, w: [ref.batched(ref.gmlp)(xs[0], w=w, spatial_norm=True)]),
    ("ca", lambda: CrossAttentionFusion(num_heads=2, key_dim=3), 3,
     lambda xs, w: ref.batched(ref.cross_attention_fusion)(*xs, w=w)),
    ("ca_no_residual", lambda: CrossAttentionFusion(residual=False), 3,
     lambda xs, w: ref.batched(ref.cross_attention_fusion)(*xs, w=w, residual=False)),
]
IDS = [c[0] for c in CASES]


def _layer(factory, k):
    layer = factory()
    shape = (None, M, N)
    layer.build([shape] * k if k > 1 else shape)
    _randomize(layer)
    return layer


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_matches_numpy_reference(case):
    _, factory, k, reference = case
    layer = _layer(factory, k)
    w = ref.weights_of(layer)
    for seed in (1, 2):
        xs = _inputs(k, seed=seed)
        got = _call(layer, xs)
        want = reference(xs, w)
        assert len(got) == len(want)
        for g, e in zip(got, want):
            assert g.shape == e.shape
            np.testing.assert_allclose(g, e, atol=ATOL, rtol=1e-5)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_shapes(case):
    _, factory, k, _ = case
    layer = _layer(factory, k)
    xs = _inputs(k, batch=2)
    got = _call(layer, xs)
    shape = (None, M, N)
    declared = layer.compute_output_shape([shape] * k if k > 1 else shape)
    if isinstance(layer, ScoreHead):
        assert [g.shape for g in got] == [(2, 1)]
        assert tuple(declared) == (None, 1)
    else:
        assert [g.shape for g in got] == [(2, M, N)] * len(got)
        declared = declared if isinstance(declared, list) else [declared]
        assert [tuple(d) for d in declared] == [shape] * len(got)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_keras_round_trip(case, tmp_path):
    name, factory, k, _ = case
    inputs = [keras.Input((M, N), name=f"in{i}") for i in range(k)]
    layer = factory()
    out = layer(inputs if k > 1 else inputs[0])
    model = keras.Model(inputs if k > 1 else inputs[0], out)
    _randomize(layer)
    xs = _inputs(k, batch=2)
    before = _call(model, xs)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    after = _call(loaded, xs)
    for b, a in zip(before, after):
        np.testing.assert_allclose(a, b, atol=1e-6)
    restored = [l for l in loaded.layers if type(l) is type(layer)][0]
    assert restored.get_config() == layer.get_config()


# Biases whose gradient is zero by construction: they add a constant along a
# softmax axis. An attention key bias adds q.b_k to every score of a query; with
# the swapped (non-default) softmax axes the last C1's bias is constant along
# the softmax axis too.
def _zero_grad_by_design(case_name):
    suffixes = ["/key/bias"]
    if case_name in ("clg_frames", "cfg_locations", "dg_swapped_softmax"):
        suffixes.append("embed_proj/bias")
    return tuple(suffixes)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_every_weight_gets_gradient(case):
    name, factory, k, _ = case
    layer = _layer(factory, k)
    if isinstance(layer, ScoreHead):
        layer.out_dense.bias.assign([5.0])   # keep Eq. 20's ReLU active
    xs = [tf.constant(x) for x in _inputs(k, batch=4)]
    rng = np.random.default_rng(3)
    with tf.GradientTape() as tape:
        out = layer(xs if k > 1 else xs[0])
        outs = out if isinstance(out, (list, tuple)) else [out]
        loss = sum(tf.reduce_sum(o * rng.normal(size=o.shape).astype("float32")) for o in outs)
    grads = tape.gradient(loss, layer.trainable_weights)
    assert layer.trainable_weights
    for w, g in zip(layer.trainable_weights, grads):
        assert g is not None, w.path
        assert np.all(np.isfinite(g)), w.path
        if w.path.endswith(_zero_grad_by_design(name)):
            np.testing.assert_allclose(g, 0.0, atol=1e-4, err_msg=w.path)
        else:
            assert np.max(np.abs(g)) > 0, w.path


def test_default_softmax_biases_get_gradient_but_swapped_do_not():
    """Documents why the design's softmax axes are the defaults."""
    layer = _layer(lambda: CrossLocationGating(softmax_over="frames"), 1)
    x = tf.constant(_inputs(1)[0])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x) * 0.7)
    g = tape.gradient(loss, layer.embed_proj.bias)
    np.testing.assert_allclose(g, 0.0, atol=1e-5)


def test_param_counts_design():
    dg = DualGating()
    dg.build((None, 18, 68))
    assert dg.count_params() == 12_631
    assert dg.clg.count_params() == 7_414
    assert dg.cfg.count_params() == 5_214
    mg, head = MutualGuidance(), ScoreHead(3)
    mg.build([(None, 18, 68)] * 3)
    head.build([(None, 18, 68)] * 3)
    assert mg.count_params() + head.count_params() == 4_299
    wide = ScoreHead(3, hidden=16)                  # Eq. 19 with a hidden layer of 16
    wide.build([(None, 18, 68)] * 3)
    assert wide.count_params() == 3 * (18 * 16 + 16 + 16 + 1) + 3 * 68 + 1 == 1_168
    assert wide.count_flops() == 2 * (3 * 68 * (18 * 16 + 16) + 3 * 68)
    # K = 4 values per column: C1_{H->4} per stream, Eq. 20's Dense reads 3 * 68 * 4
    four = ScoreHead(3, hidden=16, column_outputs=4)
    four.build([(None, 18, 68)] * 3)
    assert four.count_params() == 3 * (18 * 16 + 16 + 16 * 4 + 4) + 3 * 68 * 4 + 1 == 1_933
    assert four.count_flops() == 2 * (3 * 68 * (18 * 16 + 16 * 4) + 3 * 68 * 4)


def test_flops_dg_formula():
    m, n = 18, 68
    dg = DualGating()
    dg.build((None, m, n))
    macs = (m * n * n + n // 2 * m * m + m * n // 2 * n          # CLG
            + n * m * m + m // 2 * n * n + n * m // 2 * m        # CFG
            + 2 * m * n)                                         # C2
    assert dg.count_flops() == 2 * macs == 425_952


@pytest.mark.parametrize("shape", [(7, 10), (6, 9)])
@pytest.mark.parametrize("factory", [CrossLocationGating, CrossFrameGating, DualGating])
def test_odd_sizes_raise(factory, shape):
    with pytest.raises(ValueError, match="must be even"):
        factory().build((None,) + shape)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="softmax_over"):
        CrossLocationGating(softmax_over="rows")
    with pytest.raises(ValueError, match="branches"):
        DualGating(branches="clg+cfg")
    with pytest.raises(ValueError, match="at least one"):
        MutualGuidance(guide_au=False, guide_keypoints=False)
    with pytest.raises(ValueError, match="output_activation"):
        ScoreHead(3, output_activation="sigmoid")
    with pytest.raises(ValueError, match="score_scale"):
        ScoreHead(3, score_scale=0.0)
    with pytest.raises(ValueError, match="hidden"):
        ScoreHead(3, hidden=-1)
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="column_outputs"):
            ScoreHead(3, column_outputs=bad)
    with pytest.raises(ValueError, match="list of 3"):
        MutualGuidance().build((None, M, N))
    with pytest.raises(ValueError, match="share"):
        MutualGuidance().build([(None, M, N), (None, M, N), (None, M, N + 2)])


def test_gmlp_starts_near_identity_gate():
    layer = GatedMLPBlock()
    layer.build((None, 18, 68))
    k = np.asarray(layer.spatial_proj.kernel)
    assert np.max(np.abs(k)) <= 1e-3
    np.testing.assert_array_equal(np.asarray(layer.spatial_proj.bias), 1.0)
    assert layer.channel_proj.kernel.shape == (68, 136)       # D = 2N
    zeros = GatedMLPBlock(spatial_init="zeros")
    zeros.build((None, 18, 68))
    assert not np.any(np.asarray(zeros.spatial_proj.kernel))
