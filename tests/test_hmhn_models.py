"""HMHN models: ablation rows, parameter counts, Eq. 10 loss, serialisation, explain, CLI."""

import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from depressionmlp.errors import DataError  # noqa: E402
from hmhn.models import (ROWS, attention_maps, build_hmhn, config_name,  # noqa: E402
                         count_params, head_feature_model, paper_params)

SIZE = 64


def images(n=4, size=SIZE, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype(np.float32)


@pytest.mark.parametrize("row", sorted(ROWS))
def test_each_ablation_row_builds_and_takes_a_training_step(row):
    keras.utils.set_random_seed(0)
    model = build_hmhn(row=row, input_size=SIZE)
    names = {l.name for l in model.layers}
    assert ("gwa" in names) == ROWS[row]["gwa"]
    assert ("dff" in names and "ft2" in names) == ROWS[row]["dff"]
    assert ("afb" in names and "head4" in names) == ROWS[row]["mab"]
    x, y = images(), np.array([[3.0], [10.0], [20.0], [35.0]], np.float32)
    assert tuple(model(x).shape) == (4, 1)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss="mse", run_eagerly=True)
    before = [np.array(w) for w in model.trainable_weights]
    loss = float(model.train_on_batch(x, y))
    assert np.isfinite(loss)
    changed = sum(not np.array_equal(b, np.asarray(w))
                  for b, w in zip(before, model.trainable_weights))
    assert changed > 0.9 * len(before)


def test_default_parameter_count_matches_table5():
    model = build_hmhn()                                  # row E, k=4, 3x3, (3x3,1x3,3x1)
    n = count_params(model)
    assert round(n / 1e6, 2) == 19.72 == paper_params("default"), n      # Table 5
    assert n == 19_720_932
    assert config_name() == "hmhn-E-k4-g3x3-3x3,1x3,3x1"
    assert model.name == "hmhn-E-k4-g3x3-3x3_1x3_3x1"
    # DAN's structure (row D: ResNet-18 + MAB + AFB with its output BN): 19,720,643
    assert count_params(build_hmhn(row="D", input_size=SIZE, head="dan")) == 19_720_643
    assert count_params(build_hmhn(row="D", input_size=SIZE)) == 19_720_641
    # GWA + DFF add FT1 + FT2 (a 3x3 conv 3->3 + BN each, 87) and the LGFE (117)
    assert n - 19_720_641 == 2 * 87 + 117
    # the former reading (FT_i = ResNet stems) adds a second stem: 19.73 M
    stem = count_params(build_hmhn(input_size=SIZE, ft="stem"))
    assert stem - 19_720_641 == 9_536 + 117 and round(stem / 1e6, 2) == 19.73
    with pytest.raises(ValueError):
        build_hmhn(ft="nope")


def test_rows_share_the_regression_head():
    """Rows A-E end in the same head (same class, config and parameter count) after a
    vector of the same width: they differ only by their named modules."""
    from hmhn.layers import RegressionHead
    configs = set()
    for row in sorted(ROWS):
        m = build_hmhn(row=row, input_size=SIZE, width=8, heads=2)
        head = m.get_layer("head")
        assert isinstance(head, RegressionHead)
        assert m.get_layer("score").input is head.output
        cfg = head.get_config()
        cfg.pop("name")
        configs.add((json.dumps(cfg, sort_keys=True), tuple(head.input.shape),
                     int(sum(np.prod(w.shape) for w in head.trainable_weights))))
        assert ("gap" in {l.name for l in m.layers}) != ROWS[row]["mab"]
    assert len(configs) == 1, configs


def test_model_loss_is_mse_plus_partition_loss():
    keras.utils.set_random_seed(1)
    model = build_hmhn(input_size=SIZE, dropout=0.0, width=16, heads=3)
    x, y = images(), np.full((4, 1), 12.0, np.float32)
    out = np.asarray(model(x, training=True))
    mse = float(np.mean((out - y) ** 2))
    (l_att,) = [float(v) for v in model.losses]
    assert l_att > 0
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse", jit_compile=False)
    hist = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    np.testing.assert_allclose(hist.history["loss"][0], mse + l_att, rtol=1e-4)


def test_heads_features_and_attention_maps():
    model = build_hmhn(input_size=SIZE, width=16, heads=3)
    feats = np.asarray(head_feature_model(model)(images(2)))
    assert feats.shape == (2, 3, 128)
    maps = attention_maps(model, images(2))
    assert maps.shape == (2, 3, 2, 2) and (maps >= 0).all()
    with pytest.raises(ValueError):
        attention_maps(build_hmhn(row="A", input_size=SIZE, width=8), images(1))


def test_grids_and_kernel_sets_build():
    for grid in ("none", "2x2", (4, 4), "5x5"):
        m = build_hmhn(input_size=SIZE, width=8, heads=1, grid=grid)
        assert tuple(m(images(1)).shape) == (1, 1)
    for k in ("standard", "1x7,7x7,7x1", "3x1,1x3"):
        m = build_hmhn(input_size=SIZE, width=8, heads=2, kernels=k)
        assert tuple(m(images(1)).shape) == (1, 1)
    with pytest.raises(ValueError):
        build_hmhn(row="F")


def test_serialisation_round_trip_safe_mode(tmp_path):
    keras.utils.set_random_seed(2)
    model = build_hmhn(input_size=SIZE, width=16, heads=2, grid="2x2", kernels="1x5,5x5,5x1",
                       partition_variant="dan")
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss="mse", run_eagerly=True)
    x = images()
    model.train_on_batch(x, np.ones((4, 1), np.float32))   # non-trivial BN statistics
    path = tmp_path / "m.keras"
    model.save(path)
    from hmhn.train import load_model_file
    loaded = load_model_file(path)
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), rtol=1e-5,
                               atol=1e-5)
    assert loaded.get_layer("partition_loss").variant == "dan"
    assert count_params(loaded) == count_params(model)


def test_corrupt_model_file_is_a_data_error(tmp_path, capsys):
    from hmhn.cli import main
    from hmhn.train import load_model_file
    bad = tmp_path / "run"
    bad.mkdir()
    (bad / "best.keras").write_bytes(b"not a zip file at all")
    (bad / "config.json").write_text(json.dumps({"name": "x"}))
    with pytest.raises(DataError, match="not a readable .keras model"):
        load_model_file(bad / "best.keras")
    rc = main(["evaluate", "--model", str(bad), "--split", "test"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "best.keras" in err[0] and "Traceback" not in err[0]
    assert main(["evaluate", "--model", str(tmp_path / "missing")]) == 2


def test_explain_writes_per_head_pngs(tmp_path):
    from PIL import Image

    from hmhn.cli import main
    run = tmp_path / "run"
    run.mkdir()
    model = build_hmhn(input_size=SIZE, width=8, heads=3)
    model.save(run / "best.keras")
    (run / "config.json").write_text(json.dumps({"name": "tiny"}))
    faces = tmp_path / "faces"
    faces.mkdir()
    for i in range(2):
        Image.fromarray(images(1, 80, seed=i)[0].astype(np.uint8)).save(faces / f"f{i}.png")
    out = tmp_path / "maps"
    assert main(["explain", "--model", str(run), "--images", str(faces), "--out",
                 str(out)]) == 0
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["f0_heads.png", "f1_heads.png"]
    with Image.open(out / "f0_heads.png") as im:
        assert im.size[0] > 3 * im.size[1]                # input + 3 heads side by side
    summary = json.loads((out / "explain.json").read_text())
    assert summary["heads"] == 3 and len(summary["images"]) == 2
    (faces / "broken.png").write_bytes(b"nope")
    assert main(["explain", "--model", str(run), "--images", str(faces), "--out",
                 str(out)]) == 2


@pytest.mark.slow
def test_count_command_json(capsys):
    from hmhn.cli import main
    assert main(["count", "--json", "--input-size", "64"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert isinstance(counts["default"], int) and round(counts["default"] / 1e6, 2) == 19.72
    assert counts["row=D"] == 19_720_641
    assert counts["heads=1"] < counts["heads=8"]
    assert all(isinstance(v, int) for v in counts.values())
