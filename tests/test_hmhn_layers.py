"""HMHN layers: shapes, exact tiling, GWA / partition loss / fusion against NumPy readings."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from hmhn.layers import (BN_EPSILON, BN_MOMENTUM, AttentionFusion, BasicBlock,  # noqa: E402
                         ChannelAttention, CrossAttentionHead, DeepFeatureFusion,
                         FeatureTransform, GridWiseAttention, LocalGridFeatureExtractor,
                         PartitionLoss, RegressionHead, ResNetStem, SpatialAttention,
                         StandardizedMSE, fuse_heads, grid_tiles, parse_grid, parse_kernels,
                         partition_loss, ungrid_tiles)


def n_trainable(layer) -> int:
    return int(sum(np.prod(w.shape) for w in layer.trainable_weights))


# --------------------------------------------------------------------------- NumPy readings

def np_softmax(z, axis):
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def np_gwa(g, h, w, softmax_axis="tiles", lgfe=None):
    """Eq. 1-6 read literally with loops over tiles and channels (pad mode)."""
    B, H, W, C = g.shape
    Hf, Wf = -(-H // h) * h, -(-W // w) * w
    x = np.pad(g, ((0, 0), (0, Hf - H), (0, Wf - W), (0, 0)), mode="symmetric")
    th, tw = Hf // h, Wf // w
    tiles = np.stack([x[:, i * th:(i + 1) * th, j * tw:(j + 1) * tw, :]
                      for i in range(h) for j in range(w)], axis=1)      # Eq. 1
    if lgfe is not None:
        tiles = lgfe(tiles)                                              # Eq. 2-3
    T = h * w
    scores = np.zeros((B, T, C, th, th))
    for b in range(B):
        for t in range(T):
            for c in range(C):
                q = tiles[b, t, :, :, c]                                 # (th, tw)
                scores[b, t, c] = q @ q.T / tw                           # Eq. 4
    att = np_softmax(scores, axis=1 if softmax_axis == "tiles" else -1)
    weights = att.mean(axis=(3, 4))                                      # Eq. 5, (B, T, C)
    wmap = np.zeros((B, Hf, Wf, C))
    for i in range(h):
        for j in range(w):
            wmap[:, i * th:(i + 1) * th, j * tw:(j + 1) * tw, :] = \
                weights[:, i * w + j, None, None, :]                     # * Ones, Ungrid
    return wmap[:, :H, :W, :] * g                                        # Eq. 6


def np_lgfe(layer, x, slope=0.01):
    """Table 2 in NumPy with the layer's own weights (inference-mode BatchNorm)."""
    def bn(v, bnl):
        gamma, beta, mean, var = (np.asarray(w) for w in
                                  (bnl.gamma, bnl.beta, bnl.moving_mean, bnl.moving_variance))
        return gamma * (v - mean) / np.sqrt(var + bnl.epsilon) + beta

    def leaky(v):
        return np.where(v >= 0, v, slope * v)

    k1, b1 = (np.asarray(w) for w in (layer.expand.kernel, layer.expand.bias))
    k2, b2 = (np.asarray(w) for w in (layer.reduce.kernel, layer.reduce.bias))
    y = leaky(bn(x @ k1[0, 0] + b1, layer.bn1))
    return leaky(bn(y @ k2[0, 0] + b2, layer.bn2))


def np_partition_eq11(heads, eps=1e-6, ddof=1):
    k = heads.shape[1]
    if k == 1:
        return 0.0
    var = heads.var(axis=1, ddof=ddof)                                   # (N, C)
    return float(np.mean(np.log(1 + k / (var + eps))))


def np_partition_dan(heads, eps=1e-6, ddof=1):
    k = heads.shape[1]
    z = heads - heads.max(axis=1, keepdims=True)
    ls = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(np.log(1 + k / (ls.var(axis=1, ddof=ddof).mean() + eps)))


# --------------------------------------------------------------------------- tiling

@pytest.mark.parametrize("shape,grid", [((2, 12, 15, 3), (3, 5)), ((1, 8, 8, 2), (4, 2)),
                                        ((3, 9, 6, 1), (1, 1)), ((2, 225, 225, 3), (3, 3))])
def test_grid_tiles_and_ungrid_are_exact_inverses(shape, grid):
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape).astype(np.float32)
    h, w = grid
    t = np.asarray(grid_tiles(x, h, w))
    th, tw = shape[1] // h, shape[2] // w
    assert t.shape == (shape[0], h * w, th, tw, shape[3])
    for i in range(h):                                # row-major tile order
        for j in range(w):
            np.testing.assert_array_equal(t[:, i * w + j],
                                          x[:, i * th:(i + 1) * th, j * tw:(j + 1) * tw])
    np.testing.assert_array_equal(np.asarray(ungrid_tiles(t, h, w)), x)
    t2 = rng.normal(size=t.shape).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(grid_tiles(ungrid_tiles(t2, h, w), h, w)), t2)


def test_grid_tiles_rejects_non_multiples_and_parse_grid():
    with pytest.raises(ValueError):
        grid_tiles(np.zeros((1, 10, 10, 3), np.float32), 3, 3)
    assert parse_grid("none") == (1, 1) and parse_grid(None) == (1, 1)
    assert parse_grid("3x3") == (3, 3) and parse_grid([2, 4]) == (2, 4) and parse_grid(5) == (5, 5)
    with pytest.raises(ValueError):
        parse_grid("3y3")


# --------------------------------------------------------------------------- GWA

@pytest.mark.parametrize("size,grid,axis", [(12, (3, 3), "tiles"), (13, (3, 3), "tiles"),
                                            (14, (2, 4), "tiles"), (12, (3, 3), "keys"),
                                            (10, "none", "tiles")])
def test_gwa_matches_numpy_reading_with_identity_lgfe(size, grid, axis):
    rng = np.random.default_rng(1)
    g = rng.normal(size=(2, size, size, 3)).astype(np.float32)
    layer = GridWiseAttention(grid, use_lgfe=False, softmax_axis=axis)
    got = np.asarray(layer(g))
    h, w = parse_grid(grid)
    np.testing.assert_allclose(got, np_gwa(g.astype(np.float64), h, w, axis), rtol=1e-5,
                               atol=1e-6)
    assert got.shape == g.shape


def test_gwa_matches_numpy_reading_with_the_same_lgfe_weights():
    rng = np.random.default_rng(2)
    g = rng.normal(size=(2, 13, 11, 3)).astype(np.float32)
    layer = GridWiseAttention((3, 2), lgfe_width=3)
    layer(g)                                            # build
    for bn in (layer.lgfe.bn1, layer.lgfe.bn2):         # non-trivial BN statistics
        n = bn.gamma.shape[0]
        bn.gamma.assign(rng.uniform(0.5, 1.5, n))
        bn.beta.assign(rng.normal(size=n) * 0.1)
        bn.moving_mean.assign(rng.normal(size=n) * 0.1)
        bn.moving_variance.assign(rng.uniform(0.5, 2.0, n))
    got = np.asarray(layer(g, training=False))
    lgfe = lambda t: np_lgfe(layer.lgfe, t.astype(np.float64))  # noqa: E731
    np.testing.assert_allclose(got, np_gwa(g.astype(np.float64), 3, 2, "tiles", lgfe),
                               rtol=1e-4, atol=1e-5)


def test_gwa_keys_softmax_is_degenerate_and_tiles_softmax_is_not():
    """Documented trap: a row softmax makes every Eq. 5 weight exactly 1/th."""
    keras.utils.set_random_seed(0)          # LGFE init: independent of the test order
    rng = np.random.default_rng(3)
    g = rng.normal(size=(1, 12, 12, 3)).astype(np.float32)
    keys = GridWiseAttention((3, 3), softmax_axis="keys")
    keys(g)
    np.testing.assert_allclose(np.asarray(keys.tile_weights(g)), 1 / 4, rtol=1e-6)
    keras.utils.set_random_seed(0)
    tiles = GridWiseAttention((3, 3), softmax_axis="tiles")
    tiles(g)
    wt = np.asarray(tiles.tile_weights(g))               # (1, 9, 3)
    np.testing.assert_allclose(wt.sum(axis=1), 1.0, rtol=1e-5)
    assert wt.std() > 1e-4                 # input-dependent (the keys reading: exactly 0)


def test_gwa_resize_fit_and_lgfe_params():
    g = np.random.default_rng(4).uniform(size=(1, 224, 224, 3)).astype(np.float32)
    layer = GridWiseAttention((3, 3), fit="resize")
    assert np.asarray(layer(g)).shape == (1, 224, 224, 3)
    lg = LocalGridFeatureExtractor(width=4)
    lg.build((None, 75, 75, 3))
    # conv 3->12 (+bias) 48, BN 24, conv 12->3 (+bias) 39, BN 6
    assert n_trainable(lg) == 117
    assert lg.bn1.momentum == BN_MOMENTUM == 0.9 and lg.bn1.epsilon == BN_EPSILON == 1e-5


def test_gwa_builds_no_lgfe_where_its_weights_are_constant():
    g = np.random.default_rng(5).normal(size=(2, 12, 12, 3)).astype(np.float32)
    for grid, axis, built in [("none", "tiles", False), ((3, 3), "keys", False),
                              ((3, 3), "tiles", True), ((1, 2), "tiles", True)]:
        layer = GridWiseAttention(grid, softmax_axis=axis)
        out = np.asarray(layer(g))
        assert (layer.lgfe is not None) == built, (grid, axis)
        assert len(layer.trainable_weights) == (4 * 2 if built else 0), (grid, axis)
        if grid == "none":                     # one tile: every weight is exactly 1
            np.testing.assert_allclose(out, g, rtol=0, atol=0)


# --------------------------------------------------------------------------- ResNet-18

def test_resnet18_shapes_and_parameter_count():
    x = np.zeros((1, 224, 224, 3), np.float32)
    stem, stages = ResNetStem(64), DeepFeatureFusion(64)
    f = stem(x)
    assert tuple(f.shape) == (1, 56, 56, 64)
    out = stages(f)
    assert tuple(out.shape) == (1, 7, 7, 512)
    # torchvision resnet18 without avgpool/fc: 11,689,512 - 513,000
    assert n_trainable(stem) + n_trainable(stages) == 11_176_512


def test_stride2_conv_pads_symmetrically_like_pytorch():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(1, 8, 8, 2)).astype(np.float32)
    blk = BasicBlock(3, strides=2, downsample=True)
    blk(x)
    k = np.asarray(blk.conv1.kernel)                     # (3, 3, 2, 3)
    y = np.asarray(blk.conv1(blk.pad1(x)))
    xp = np.pad(x[0], ((1, 1), (1, 1), (0, 0)))           # PyTorch padding=1 on both sides
    ref = np.zeros((4, 4, 3))
    for i in range(4):
        for j in range(4):
            ref[i, j] = np.einsum("abc,abcd->d", xp[2 * i:2 * i + 3, 2 * j:2 * j + 3], k)
    np.testing.assert_allclose(y[0], ref, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- MAB / AFB

def test_attention_heads_match_dan_parameter_counts_and_shapes():
    x = np.random.default_rng(6).uniform(size=(2, 7, 7, 512)).astype(np.float32)
    sa, ca = SpatialAttention(512), ChannelAttention(512)
    s = sa(x)
    c = ca(s)
    assert tuple(s.shape) == (2, 7, 7, 512) and tuple(c.shape) == (2, 512)
    assert n_trainable(sa) == 2_102_528 and n_trainable(ca) == 33_376
    head = CrossAttentionHead(512)
    assert tuple(head(x).shape) == (2, 512) and n_trainable(head) == 2_135_904
    m = np.asarray(head.spatial.attention_map(x))
    assert m.shape == (2, 7, 7, 1) and (m >= 0).all()
    np.testing.assert_allclose(np.asarray(head.spatial(x)), x * m, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernels", ["standard", "1x7,7x7,7x1", "1x5,5x5,5x1", "3x1,1x3",
                                     "3x3,1x3,3x1"])
def test_table5_kernel_sets_build(kernels):
    ks = parse_kernels(kernels)
    sa = SpatialAttention(32, kernels)
    assert tuple(sa(np.ones((1, 5, 5, 32), np.float32)).shape) == (1, 5, 5, 32)
    convs = 32 * 16 + 16 + 2 * 16 + sum(kh * kw * 16 * 32 + 32 + 2 * 32 for kh, kw in ks)
    assert n_trainable(sa) == convs
    with pytest.raises(ValueError):
        parse_kernels("2x2")


@pytest.mark.parametrize("k", [1, 2, 4, 7])
def test_partition_loss_matches_numpy(k):
    heads = np.random.default_rng(k).normal(size=(5, k, 16)).astype(np.float32)
    np.testing.assert_allclose(float(partition_loss(heads)), np_partition_eq11(heads),
                               rtol=1e-5)
    np.testing.assert_allclose(float(partition_loss(heads, "dan")),
                               np_partition_dan(heads) if k > 1 else 0.0, rtol=1e-5)
    np.testing.assert_allclose(float(partition_loss(heads, ddof=0)),
                               np_partition_eq11(heads, ddof=0), rtol=1e-5)


def test_partition_loss_layer_adds_weighted_loss_and_passes_heads_through():
    heads = np.random.default_rng(8).normal(size=(3, 4, 8)).astype(np.float32)
    layer = PartitionLoss(weight=2.0)
    out = layer(heads)
    np.testing.assert_array_equal(np.asarray(out), heads)
    assert len(layer.losses) == 1
    np.testing.assert_allclose(float(layer.losses[0]), 2 * np_partition_eq11(heads), rtol=1e-5)
    single = PartitionLoss()
    single(heads[:, :1])
    assert single.losses == []


def test_attention_fusion_matches_numpy():
    heads = np.random.default_rng(9).normal(size=(3, 4, 8)).astype(np.float32)
    afb = AttentionFusion()
    y = np.asarray(afb(heads))
    z = heads - heads.max(axis=1, keepdims=True)
    ls = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(y, ls.sum(axis=1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(fuse_heads(heads[:, :1])), heads[:, 0], rtol=1e-6)
    assert n_trainable(afb) == 0


def test_regression_head_standardizes_features_and_maps_back_to_bdi():
    """Norm (no affine) -> Dropout -> Dense -> mean + std * z."""
    x = np.random.default_rng(3).normal(5.0, 30.0, size=(6, 16)).astype(np.float32)
    head = RegressionHead(dropout=0.5, target_mean=15.0, target_std=8.0)
    y = np.asarray(head(x, training=False))               # per-sample standardisation
    w, b = np.asarray(head.fc.kernel), np.asarray(head.fc.bias)
    xs = (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + BN_EPSILON)
    np.testing.assert_allclose(y, 15.0 + 8.0 * (xs @ w + b), rtol=1e-4, atol=1e-4)
    assert n_trainable(head) == 17 and head.norm.center is False
    assert isinstance(head.norm, keras.layers.LayerNormalization)
    # training mode = inference mode but for dropout (no batch statistics anywhere)
    h0 = RegressionHead(dropout=0.0)
    np.testing.assert_allclose(np.asarray(h0(x, training=True)),
                               np.asarray(h0(x, training=False)), rtol=1e-6, atol=1e-6)
    hb = RegressionHead(feature_norm="batch", target_mean=15.0, target_std=8.0)
    yb = np.asarray(hb(x, training=False))               # fresh BN: (x - 0) / sqrt(1 + eps)
    np.testing.assert_allclose(yb, 15.0 + 8.0 * ((x / np.sqrt(1 + BN_EPSILON))
                                                 @ np.asarray(hb.fc.kernel)), rtol=1e-4,
                               atol=1e-4)
    assert isinstance(hb.norm, keras.layers.BatchNormalization) and n_trainable(hb) == 17
    # starts at the mean with a small spread (init_scale 0.1 standard deviations)
    big = np.random.default_rng(4).normal(size=(256, 512)).astype(np.float32)
    h2 = RegressionHead(target_mean=20.0, target_std=10.0)
    p = np.asarray(h2(big, training=True))
    assert abs(p.mean() - 20.0) < 0.5 and 0.3 < p.std() < 2.0
    dan = RegressionHead("dan", dropout=0.0, target_mean=20.0, target_std=10.0)
    pd = np.asarray(dan(x, training=True))           # DAN's output BN: spread fixed to std
    assert n_trainable(dan) == 16 + 1 + 2
    np.testing.assert_allclose(pd.std(), 10.0, rtol=1e-2)
    lin = RegressionHead("linear")
    lin(x)
    assert n_trainable(lin) == 17 and lin.norm is None and lin.output_bn is None
    with pytest.raises(ValueError):
        RegressionHead("nope")
    with pytest.raises(ValueError):
        RegressionHead(target_std=0.0)


def test_standardized_mse_is_mse_over_std_squared():
    loss = StandardizedMSE(4.0)
    yt, yp = np.array([[1.0], [5.0]], np.float32), np.array([[3.0], [1.0]], np.float32)
    np.testing.assert_allclose(float(loss(yt, yp)), (4 + 16) / 2 / 16, rtol=1e-6)
    assert StandardizedMSE.from_config(loss.get_config()).target_std == 4.0


def test_feature_transform_keeps_shape_and_counts_87():
    ft = FeatureTransform(3)
    assert tuple(ft(np.ones((2, 9, 9, 3), np.float32)).shape) == (2, 9, 9, 3)
    assert n_trainable(ft) == 3 * 3 * 3 * 3 + 6 == 87
    ft1 = FeatureTransform(1)
    ft1(np.ones((1, 4, 4, 3), np.float32))
    assert n_trainable(ft1) == 15


@pytest.mark.parametrize("layer", [
    GridWiseAttention((2, 3), lgfe_width=2, softmax_axis="keys", fit="resize"),
    LocalGridFeatureExtractor(3), ResNetStem(16), BasicBlock(8, 2, True),
    DeepFeatureFusion(8, (1, 1, 1, 1)), SpatialAttention(64, "1x5,5x5,5x1"),
    ChannelAttention(64, 8), CrossAttentionHead(64, "standard"),
    AttentionFusion("mean"), PartitionLoss("dan", 0.5, 1e-4, 0),
    RegressionHead("dan", 0.1, "batch", 0.8, 0.2, 14.5, 9.25), RegressionHead(),
    FeatureTransform(1, 0.5),
    ResNetStem(8, bn_momentum=0.0)])
def test_layer_configs_round_trip(layer):
    cfg = layer.get_config()
    clone = type(layer).from_config(cfg)
    assert clone.get_config() == cfg
