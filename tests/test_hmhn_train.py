"""HMHN training, evaluation and CLI on tiny face corpora (real files, real numbers)."""

import json
import os

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from depressionmlp.errors import DataError  # noqa: E402
from hmhn import train as T  # noqa: E402
from hmhn.cli import main  # noqa: E402

SIZE = 32


def write_tiny_corpus(root, name="tiny-faces", per_split=(6, 3, 3), frames=3, size=SIZE,
                      seed=0):
    """A faces-layout corpus: the mouth-region brightness carries the BDI-II label."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    labels = {}
    subj = 100
    for split, n in zip(("train", "dev", "test"), per_split):
        (root / name / "labels" / split).mkdir(parents=True)
        for _ in range(n):
            rec = f"{subj}_1"
            subj += 1
            label = float(rng.integers(0, 45))
            labels[rec] = label
            (root / name / "labels" / split / f"{rec}_Depression.csv").write_text(f"{label}\n")
            folder = root / name / "faces" / split / rec
            folder.mkdir(parents=True)
            for f in range(frames):
                img = rng.integers(60, 120, (size, size, 3)).astype(np.uint8)
                img[size // 2:, size // 4:3 * size // 4] = int(40 + 4 * label)
                Image.fromarray(img).save(folder / f"{f:03d}.png")
    return labels


TINY_MODEL = {"row": "E", "input_size": SIZE, "width": 8, "heads": 2, "grid": "2x2"}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("hmhn_train")
    write_tiny_corpus(root)
    cfg = {"name": "tiny", "model": TINY_MODEL,
           "data": {"corpus": "tiny-faces", "data_root": str(root), "frames_per_video": 3},
           "train": {"epochs": 2, "batch_size": 8, "verbose": 0}}
    run_dir, result = T.train(cfg, out_base=root / "runs")
    return root, run_dir, result


def test_training_run_writes_a_run_dir_with_metrics(trained_run):
    root, run_dir, result = trained_run
    for f in ("config.json", "best.keras", "history.json", "metrics.json",
              "predictions_dev.csv", "predictions_test.csv"):
        assert (run_dir / f).is_file(), f
    assert (run_dir / "tb").is_dir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(result))
    assert set(metrics["splits"]) == {"dev", "test"}
    for split in ("dev", "test"):
        r = metrics["splits"][split]
        assert r["n"] == 3 and r["frames"] == 9
        assert np.isfinite(r["rmse"]) and np.isfinite(r["mae"])
        assert np.isfinite(r["mean_predictor"]["rmse"])
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["data"]["select_split"] == "dev" and cfg["resolved"]["jit_compile"] in (True, False)
    assert cfg["train"]["learning_rate"] == 1e-3 and cfg["train"]["plateau_factor"] == 0.1
    hist = json.loads((run_dir / "history.json").read_text())
    assert len(hist) == metrics["epochs_run"] == 2 and "dev_rmse" in hist[0] and "lr" in hist[0]
    lr = 1e-3 * (cfg["train"]["batch_size"] / 64) ** 0.5     # the square-root rule
    assert metrics["learning_rate"] == cfg["resolved"]["learning_rate"] == pytest.approx(lr)
    assert hist[0]["lr"] == pytest.approx(lr, rel=1e-6)
    lines = (run_dir / "predictions_test.csv").read_text().splitlines()
    assert lines[0] == "recording_id,subject_id,true,predicted" and len(lines) == 4


class _Killed(BaseException):
    """Stands for SIGKILL: nothing after the raise point runs."""


def _resume_config(root):
    return {"name": "tiny", "model": TINY_MODEL,
            "data": {"corpus": "tiny-faces", "data_root": str(root), "frames_per_video": 3},
            # eager: the resume logic lives in the callbacks, not the traced step, and a
            # tiny run starts 3x sooner without a graph to trace (three runs here)
            "train": {"epochs": 4, "batch_size": 8, "verbose": 0, "plateau_patience": 1,
                      "run_eagerly": True}}


@pytest.fixture(scope="module")
def eager_whole(trained_run, tmp_path_factory):
    """``(root, run_dir, metrics)`` of an uninterrupted 4-epoch eager run."""
    root = trained_run[0]
    return (root,) + tuple(T.train(_resume_config(root),
                                   out_base=tmp_path_factory.mktemp("whole")))


@pytest.mark.parametrize("kill", [pytest.param("evaluating_3", marks=pytest.mark.slow),
                                  "backup_written_3"])
def test_killed_run_resumes_exactly(kill, eager_whole, tmp_path, monkeypatch):
    """A kill while epoch 3 is evaluated, or between epoch 3's backup and its commit:
    the resumed run's history (dev RMSE, learning rate: the plateau halves it at
    patience 1) and metrics equal an uninterrupted run's; time covers both parts."""
    root, whole_dir, whole = eager_whole
    calls = {"n": 0}
    with monkeypatch.context() as m:
        if kill == "evaluating_3":
            real = T.evaluate_frames

            def evaluate(*a, **k):
                calls["n"] += 1
                if calls["n"] == 3:
                    raise _Killed()
                return real(*a, **k)
            m.setattr(T, "evaluate_frames", evaluate)
        else:
            real = T.write_json_atomic

            def write(path, obj):
                if str(path).endswith("selection.json"):
                    calls["n"] += 1
                    if calls["n"] == 3:
                        raise _Killed()
                return real(path, obj)
            m.setattr(T, "write_json_atomic", write)
        with pytest.raises(_Killed):
            T.train(_resume_config(root), out_base=tmp_path / "killed")
    (run_dir,) = list((tmp_path / "killed").iterdir())
    assert len(json.loads((run_dir / "selection.json").read_text())["history"]) == 2
    run_dir2, result = T.train(_resume_config(root), resume_dir=run_dir)
    got = json.loads((run_dir / "history.json").read_text())
    want = json.loads((whole_dir / "history.json").read_text())
    assert [h["epoch"] for h in got] == [1, 2, 3, 4]
    np.testing.assert_allclose([h["dev_rmse"] for h in got], [h["dev_rmse"] for h in want],
                               rtol=1e-5)
    assert [h["lr"] for h in got] == [h["lr"] for h in want]
    for split in ("dev", "test"):
        assert result["splits"][split]["rmse"] == pytest.approx(
            whole["splits"][split]["rmse"], rel=1e-5)
    assert not (run_dir / "backup").exists()


def test_resume_refuses_finished_runs(trained_run, capsys):
    root, run_dir, result = trained_run
    code = main(["train", "--config", "experiments/hmhn_default.toml",
                 "--resume", str(run_dir)])
    assert code == 2 and "finished" in capsys.readouterr().err


def test_evaluate_cli_matches_training_metrics(trained_run, capsys):
    root, run_dir, result = trained_run
    assert main(["evaluate", "--model", str(run_dir), "--split", "test", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    np.testing.assert_allclose(out["metrics"]["rmse"], result["splits"]["test"]["rmse"],
                               rtol=1e-5)
    assert len(out["videos"]) == 3


def test_cli_train_quick_and_errors(tmp_path, capsys):
    write_tiny_corpus(tmp_path, per_split=(4, 2, 2), frames=2)
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        'name = "cli"\n[model]\nrow = "A"\nwidth = 8\n[data]\ncorpus = "tiny-faces"\n'
        'frames_per_video = 2\n[train]\nepochs = 5\nverbose = 0\n'
        '[quick]\nmodel = {input_size = 32}\ntrain = {epochs = 1, batch_size = 4}\n')
    rc = main(["train", "--config", str(cfg), "--data-root", str(tmp_path), "--out",
               str(tmp_path / "out"), "--quick"])
    assert rc == 0
    runs = list((tmp_path / "out").glob("cli-*"))
    assert len(runs) == 1
    resolved = json.loads((runs[0] / "config.json").read_text())
    assert resolved["quick_mode"] and resolved["model"]["input_size"] == 32
    assert json.loads((runs[0] / "metrics.json").read_text())["epochs_run"] == 1
    capsys.readouterr()
    bad = tmp_path / "bad.toml"
    bad.write_text('[model]\nrwo = "E"\n')
    assert main(["train", "--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "rwo" in err
    assert main(["train", "--config", str(cfg), "--data-root", str(tmp_path / "none"),
                 "--quick"]) == 2


def test_command_line_epochs_win_over_the_quick_table():
    from hmhn.cli import _load_config, build_parser
    cfg_path = os.path.join(os.path.dirname(__file__), "..", "experiments", "hmhn_default.toml")
    args = build_parser().parse_args(["train", "--config", cfg_path, "--quick", "--epochs", "7",
                                      "--max-minutes", "9"])
    cfg = T.resolve_config(_load_config(args), quick=True)
    assert cfg["train"]["epochs"] == 7 and cfg["train"]["max_minutes"] == 9
    assert cfg["model"]["input_size"] == 64                  # the rest of [quick] still applies
    args = build_parser().parse_args(["train", "--config", cfg_path, "--quick"])
    assert T.resolve_config(_load_config(args), quick=True)["train"]["epochs"] == 16


def test_resolve_config_defaults_and_protocols():
    cfg = T.resolve_config({})
    assert cfg["model"]["row"] == "E" and cfg["model"]["heads"] == 4
    assert cfg["model"]["grid"] == [3, 3] and cfg["model"]["input_size"] == 224
    assert cfg["train"]["batch_size"] == 64 and cfg["model"]["dropout"] == 0.2
    assert cfg["data"]["select_split"] == "dev" and cfg["data"]["eval_splits"] == ["dev", "test"]
    c14 = T.resolve_config({"data": {"corpus": "avec2014"}})
    assert c14["data"]["select_split"] == "" and c14["data"]["eval_splits"] == ["test"]
    q = T.resolve_config({}, quick=True)
    assert q["model"]["input_size"] == 64 and q["quick_mode"]
    with pytest.raises(DataError, match="model.row"):
        T.resolve_config({"model": {"row": "Z"}})
    with pytest.raises(DataError, match="unknown config key"):
        T.resolve_config({"train": {"lr": 1}})


def test_experiment_configs_resolve():
    from depressionmlp.runs import load_config
    exp = os.path.join(os.path.dirname(__file__), "..", "experiments")
    names = sorted(f for f in os.listdir(exp) if f.startswith("hmhn_") and f.endswith(".toml"))
    assert {"hmhn_default.toml", "hmhn_demo.toml", "hmhn_ablation_A.toml",
            "hmhn_test_avec2014.toml"} <= set(names)
    for n in names:
        raw = load_config(os.path.join(exp, n))
        raw.pop("synth", None)                  # the demo's corpus arguments (hmhn demo)
        cfg = T.resolve_config(raw, n)
        assert cfg["train"]["learning_rate"] == 1e-3


def _frame_set(x, labels, per_video=2):
    from types import SimpleNamespace
    vids = [SimpleNamespace(frames=x[i:i + per_video], label=float(labels[i // per_video]),
                            video_id=f"{100 + i}_1", subject_id=str(100 + i))
            for i in range(0, len(x), per_video)]
    return T.FrameSet(vids)


def test_recalibrate_batchnorm_sets_equal_weight_statistics_without_dropout():
    """Precise BN: moving stats = the mean of the batch statistics (dropout off), through a
    copy built from the config; the model's config and trainable weights are unchanged."""
    keras.utils.set_random_seed(0)
    from hmhn.models import build_from_config
    mcfg = {"row": "A", "input_size": SIZE, "width": 8, "dropout": 0.5, "bn_momentum": 0.9,
            "head_norm": "batch", "target_mean": 20.0, "target_std": 8.0}
    model = build_from_config(mcfg)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (24, SIZE, SIZE, 3)).astype(np.uint8)
    fs = _frame_set(x, rng.uniform(0, 40, 12))
    before = [w.numpy().copy() for w in model.trainable_weights]
    config = json.dumps(model.get_config(), sort_keys=True)
    assert T.recalibrate_batchnorm(model, mcfg, fs, n_batches=3, batch_size=8, seed=5) == 24
    order = np.random.default_rng(5).permutation(24)
    gap = keras.Model(model.inputs[0], model.get_layer("gap").output)
    feats = [np.asarray(gap(x[order[i * 8:(i + 1) * 8]].astype(np.float32), training=True),
                        np.float64) for i in range(3)]
    bn = model.get_layer("head").norm                      # the head's BN sees GAP features
    np.testing.assert_allclose(bn.moving_mean.numpy(), np.mean([f.mean(0) for f in feats], 0),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(),
                               np.mean([f.var(0) for f in feats], 0), rtol=1e-3, atol=1e-6)
    assert json.dumps(model.get_config(), sort_keys=True) == config   # momenta, rates as built
    for a, b in zip(before, model.trainable_weights):
        np.testing.assert_array_equal(a, b.numpy())
    assert T.recalibrate_batchnorm(model, mcfg, fs, n_batches=0) == 0


def test_training_and_inference_predictions_agree_after_training(tmp_path):
    """After training (row E, 80 steps), inference-mode predictions (BN moving statistics)
    match training-mode ones (batch statistics; dropout off) on training batches of 16:
    same location (mean difference < 0.15 label SD), same spread (ratio of SDs within
    0.75..1.33) and correlation > 0.85. The former head (dropout -> Dense -> BN(1)) gave
    inference spreads 2.4-3.4 against 8.2 in training mode (ratio ~3)."""
    write_tiny_corpus(tmp_path, per_split=(16, 3, 3), frames=4)
    cfg = {"name": "agree", "model": TINY_MODEL,
           "data": {"corpus": "tiny-faces", "data_root": str(tmp_path), "frames_per_video": 4},
           "train": {"epochs": 8, "steps_per_epoch": 10, "batch_size": 16, "verbose": 0,
                     "augment_flip": False,
                     # 1e-3 unscaled: 80 steps must spread the predictions well beyond
                     # the batch-statistics noise for the correlation to mean anything
                     "lr_reference_batch": 0}}
    run_dir, _ = T.train(cfg, out_base=tmp_path / "runs")
    model, rcfg = T.load_run(run_dir)
    from hmhn.models import build_from_config
    nodrop = build_from_config({**rcfg["model"], "dropout": 0.0})
    nodrop.set_weights(model.get_weights())
    fs = T.load_splits(rcfg, ["train"])["train"]
    sd = float(np.std(fs.video_labels))
    order = np.random.default_rng(0).permutation(len(fs))
    p_train, p_inf = [], []
    for i in range(len(fs) // 16):
        xb = fs.x[order[i * 16:(i + 1) * 16]].astype(np.float32)
        p_train.append(np.asarray(nodrop(xb, training=True)).ravel())
        p_inf.append(np.asarray(model(xb, training=False)).ravel())
    p_train, p_inf = np.concatenate(p_train), np.concatenate(p_inf)
    assert abs(float(np.mean(p_train - p_inf))) < 0.15 * sd
    assert 0.75 < float(np.std(p_train) / np.std(p_inf)) < 1.33
    assert float(np.corrcoef(p_train, p_inf)[0, 1]) > 0.85


def test_training_is_deterministic_for_a_seed(eager_whole, tmp_path):
    """Same config and seed -> the same metrics and history (op determinism, stateless
    augmentation), with flips and colour jitter on (the defaults). Eager (the same
    kernels, no graph to trace); the slow CLI test below repeats it with the CLI's traced
    defaults."""
    root = eager_whole[0]
    run_dir, again = T.train(_resume_config(root), out_base=tmp_path / "again")
    whole_dir, whole = eager_whole[1:]
    for split in ("dev", "test"):
        assert again["splits"][split]["rmse"] == whole["splits"][split]["rmse"]
        assert again["splits"][split]["mae"] == whole["splits"][split]["mae"]
    def history(d):
        return [{k: v for k, v in h.items() if k != "seconds"}
                for h in json.loads((d / "history.json").read_text())]
    assert history(run_dir) == history(whole_dir) and len(history(run_dir)) == 4


@pytest.mark.slow
def test_cli_training_is_deterministic_with_its_defaults(tmp_path):
    """``python -m hmhn train`` twice, in fresh processes with the CLI's own TensorFlow
    settings (oneDNN on): identical metrics."""
    import subprocess
    import sys
    write_tiny_corpus(tmp_path, per_split=(6, 3, 3), frames=3)
    cfg = tmp_path / "det.toml"
    cfg.write_text('name = "det"\n[model]\nrow = "E"\ninput_size = 32\nwidth = 8\nheads = 2\n'
                   'grid = "2x2"\n[data]\ncorpus = "tiny-faces"\nframes_per_video = 3\n'
                   '[train]\nepochs = 2\nbatch_size = 4\naugment_color = true\n')
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    metrics = []
    for i in range(2):
        proc = subprocess.run([sys.executable, "-m", "hmhn", "train", "--config", str(cfg),
                               "--data-root", str(tmp_path), "--out", str(tmp_path / f"o{i}"),
                               "--quiet"], capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        (run,) = (tmp_path / f"o{i}").glob("det-*")
        m = json.loads((run / "metrics.json").read_text())
        metrics.append({s: (r["rmse"], r["mae"]) for s, r in m["splits"].items()})
    assert metrics[0] == metrics[1]


def test_steps_per_epoch_colour_jitter_and_recalibration_in_a_training_run(tmp_path):
    write_tiny_corpus(tmp_path, per_split=(4, 2, 2), frames=2)
    cfg = {"name": "spe", "model": TINY_MODEL,
           "data": {"corpus": "tiny-faces", "data_root": str(tmp_path), "frames_per_video": 2},
           "train": {"epochs": 2, "steps_per_epoch": 3, "batch_size": 4, "verbose": 0,
                     "augment_color": True, "bn_recalibration_batches": 1,
                     "run_eagerly": True}}
    run_dir, result = T.train(cfg, out_base=tmp_path / "runs")
    assert result["epochs_run"] == 2 and np.isfinite(result["splits"]["test"]["rmse"])
    assert json.loads((run_dir / "config.json").read_text())["resolved"]["jit_compile"] is False
    with pytest.raises(DataError, match="steps_per_epoch"):
        T.resolve_config({"train": {"steps_per_epoch": -1}})
    with pytest.raises(DataError, match="bn_recalibration_batches"):
        T.resolve_config({"train": {"bn_recalibration_batches": 1.5}})
    with pytest.raises(DataError, match="run_eagerly"):
        T.resolve_config({"train": {"run_eagerly": "yes"}})


def test_learning_rate_follows_the_batch_by_the_square_root_rule():
    """1e-3 at the paper's batch 64; the --quick batch of 16 runs at 5e-4 (2.5e-4 by the
    linear rule); 0 = no scaling. The paper's plateau at full size, cosine in --quick."""
    paper = T.resolve_config({})
    quick = T.resolve_config({}, quick=True)
    assert paper["train"]["batch_size"] == 64 and quick["train"]["batch_size"] == 16
    assert paper["train"]["lr_schedule"] == "plateau" and quick["train"]["lr_schedule"] == "cosine"
    assert T.effective_learning_rate(paper["train"]) == pytest.approx(1e-3, rel=1e-12)
    assert T.effective_learning_rate(quick["train"]) == pytest.approx(5e-4, rel=1e-12)
    linear = T.resolve_config({"train": {"lr_scaling": "linear"}}, quick=True)
    assert T.effective_learning_rate(linear["train"]) == pytest.approx(2.5e-4, rel=1e-12)
    fixed = T.resolve_config({"train": {"lr_reference_batch": 0}}, quick=True)
    assert T.effective_learning_rate(fixed["train"]) == pytest.approx(1e-3, rel=1e-12)
    opt = T.make_optimizer({**paper["train"], "batch_size": 4})
    assert float(keras.ops.convert_to_numpy(opt.learning_rate)) == pytest.approx(2.5e-4)
    for bad in (-1, 1.5, True, "64"):
        with pytest.raises(DataError, match="lr_reference_batch"):
            T.resolve_config({"train": {"lr_reference_batch": bad}})
    with pytest.raises(DataError, match="lr_scaling"):
        T.resolve_config({"train": {"lr_scaling": "cubic"}})


def test_demo_config_synth_arguments_are_generator_arguments():
    import inspect
    from depressionmlp.runs import load_config
    from hmhn.data.synth import generate_faces
    raw = load_config(os.path.join(os.path.dirname(__file__), "..", "experiments",
                                   "hmhn_demo.toml"))
    assert set(raw["synth"]) <= set(inspect.signature(generate_faces).parameters)
    assert raw["model"]["row"] == "E" and "width" not in raw["model"]
    # the default protocol, differing only in size and budget: default cue sizes, and no
    # colour jitter / precise BN / other training or model settings
    assert not {"droop_max", "open_drop", "brow_max_deg"} & set(raw["synth"])
    # lr_schedule: --quick's cosine, which anneals over the budget (asserted equal below)
    budget = {"epochs", "steps_per_epoch", "batch_size", "max_minutes", "verbose", "seed",
              "learning_rate", "lr_schedule"}
    assert set(raw["train"]) <= budget and raw["train"]["learning_rate"] == 1e-3
    assert set(raw["model"]) <= {"row", "input_size"}
    assert "lr_reference_batch" not in raw["train"]
    demo = T.resolve_config({k: v for k, v in raw.items() if k != "synth"})
    default = T.resolve_config(load_config(os.path.join(
        os.path.dirname(__file__), "..", "experiments", "hmhn_default.toml")), quick=True)
    for key in set(T.DEFAULT_CONFIG["train"]) - budget | {"lr_schedule"}:
        assert demo["train"][key] == default["train"][key], key
    from hmhn.layers import parse_grid, parse_kernels
    norm = {"grid": parse_grid, "kernels": parse_kernels}
    for key in set(T.DEFAULT_CONFIG["model"]) - {"input_size"}:
        f = norm.get(key, lambda v: v)
        assert f(demo["model"][key]) == f(default["model"][key]), key
    assert demo["model"]["input_size"] == default["model"]["input_size"] == 64


#: make demo-hmhn (the default protocol at --quick size) must reach this fraction of the
#: mean predictor (video-level RMSE): the default protocol's line of issue 9.
DEMO_MARGIN = 0.7


@pytest.mark.slow
def test_demo_learns_beyond_the_mean_predictor(tmp_path):
    """make demo-hmhn's own command (``python -m hmhn demo``, experiments/hmhn_demo.toml):
    synthetic faces at the generator's default cue sizes (seed 0), HMHN row E at 64 px under
    the default protocol (its colour jitter and learning-rate scaling; no precise BN, no
    enlarged cues), 16 epochs of 60 steps. Video-level RMSE on dev and test below DEMO_MARGIN
    x the mean predictor's and not below 0.8 x the corpus's noise floor (which the report
    prints beside it). The same training through ``hmhn train --quick`` measured dev 8.02
    / test 6.54 against 12.72 / 12.20 (0.63 / 0.54 x). Run as a subprocess so it gets the
    CLI's TensorFlow settings; the config's wall-clock safety net is lifted
    (--max-minutes 0) because the training amount is fixed in steps and a slow CI machine
    must not cut it."""
    import json
    import subprocess
    import sys
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "hmhn", "demo", "--data-root", str(tmp_path / "data"),
         "--out", str(out), "--max-minutes", "0",
         "--config", os.path.join(os.path.dirname(__file__), "..", "experiments",
                                  "hmhn_demo.toml")],
        capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "metrics.json").read_text())
    assert result["params"] == 19_720_932 and result["epochs_run"] == 16
    assert result["learning_rate"] == pytest.approx(5e-4)
    report = (out / "report.md").read_text()
    assert "noise floor" in report and "mean-predictor" in report
    for split in ("dev", "test"):
        r = result["splits"][split]
        floor = result["noise_floor"][split]["rmse"]
        assert r["rmse"] > 0.8 * floor, (split, r, floor)     # nothing beats the label noise
        assert r["rmse"] < DEMO_MARGIN * r["mean_predictor"]["rmse"], (split, r)


#: issue 9: the default protocol (--quick) must reach this fraction of the mean predictor.
DEFAULT_PROTOCOL_MARGIN = 0.7


@pytest.mark.slow
def test_default_protocol_learns_on_another_seed(tmp_path):
    """``python -m hmhn synth --seed 12`` (default cue sizes), then ``python -m hmhn train
    --config experiments/hmhn_default.toml --quick``: video-level RMSE on dev and test at
    most 0.7 x the mean predictor's, and above 0.8 x the noise floor (measured with the
    16-epoch [quick] table, 5e-4 at batch 16 on a cosine schedule: dev 6.79 / test 8.31
    against 13.56 / 13.20, 0.50 / 0.63 x; README "HMHN under its default protocol")."""
    import subprocess
    import sys
    data = tmp_path / "data"
    run = lambda *a: subprocess.run([sys.executable, "-m", "hmhn", *a],  # noqa: E731
                                    capture_output=True, text=True)
    proc = run("synth", "--n-subjects", "300", "--frames-per-video", "4", "--size", "64",
               "--seed", "12", "--data-root", str(data))
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = run("train", "--config", os.path.join(os.path.dirname(__file__), "..",
                                                 "experiments", "hmhn_default.toml"),
               "--quick", "--corpus", "synthetic-faces", "--data-root", str(data),
               "--out", str(tmp_path / "out"), "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run_dir,) = (tmp_path / "out").glob("hmhn_default-*")
    result = json.loads((run_dir / "metrics.json").read_text())
    floor = json.loads((data / "synthetic-faces" / "manifest.json").read_text())["noise_floor"]
    for split in ("dev", "test"):
        r = result["splits"][split]
        assert r["rmse"] > 0.8 * floor[split]["rmse"], (split, r, floor)
        assert r["rmse"] <= DEFAULT_PROTOCOL_MARGIN * r["mean_predictor"]["rmse"], (split, r)


def test_color_jitter_keeps_shapes_range_and_spatial_pattern():
    import tensorflow as tf
    from hmhn.train import color_jitter
    x = np.random.default_rng(0).uniform(0, 255, (4, 8, 8, 3)).astype("float32")
    y = color_jitter(tf.constant(x), seed=3).numpy()
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 255
    assert not np.allclose(y, x)
    for b in range(4):          # each output channel is an affine map of some input channel
        for c in range(3):
            best = max(abs(np.corrcoef(y[b, ..., c].ravel(), x[b, ..., k].ravel())[0, 1])
                       for k in range(3))
            assert best > 0.9


def test_random_affine_without_rotation_is_an_integer_shift_within_the_padding():
    """DAN's RandomCrop(S, padding=S/7): a whole-pixel shift of at most round(S/7), black
    where the image moved away; p = 0 is the identity."""
    import tensorflow as tf
    from hmhn.train import random_affine
    x = np.random.default_rng(0).uniform(1, 255, (6, 64, 64, 3)).astype("float32")
    np.testing.assert_array_equal(random_affine(tf.constant(x), 3, 0.0).numpy(), x)
    y = random_affine(tf.constant(x), 3, 1.0, degrees=0.0).numpy()
    inner = (slice(10, 54), slice(10, 54))
    shifts = []
    for b in range(6):
        hits = [(dy, dx) for dy in range(-9, 10) for dx in range(-9, 10)
                if np.allclose(np.roll(x[b], (dy, dx), (0, 1))[inner], y[b][inner], atol=1e-3)]
        assert len(hits) == 1, hits
        dy, dx = hits[0]
        black = (y[b] == 0).all(-1)
        assert black.mean() == pytest.approx(1 - (64 - abs(dy)) * (64 - abs(dx)) / 64 ** 2)
        shifts.append(hits[0])
    assert len(set(shifts)) > 1


def test_random_affine_rotates_about_the_centre():
    import tensorflow as tf
    from hmhn.train import random_affine
    x = np.zeros((1, 33, 33, 3), "float32")
    x[0, 16, 4:29] = 255.0                          # a horizontal bar through the centre
    y = random_affine(tf.constant(x), 7, 1.0, degrees=90.0, pad_frac=0.0).numpy()[0, ..., 0]
    rows, cols = np.nonzero(y > 127)
    assert abs(rows.mean() - 16) < 0.5 and abs(cols.mean() - 16) < 0.5   # centre kept
    # the bar is turned: it is no longer confined to row 16
    assert rows.max() - rows.min() > 4


def test_random_erasing_fills_one_rectangle_of_the_stated_area_with_the_mean_pixel():
    import tensorflow as tf
    from hmhn.models import IMAGENET_MEAN
    from hmhn.train import random_erasing
    x = np.random.default_rng(1).uniform(0, 255, (16, 40, 40, 3)).astype("float32")
    np.testing.assert_array_equal(random_erasing(tf.constant(x), 2, 0.0).numpy(), x)
    y = random_erasing(tf.constant(x), 2, 1.0).numpy()
    erased = 0
    for b in range(16):
        changed = (y[b] != x[b]).any(-1)
        if not changed.any():
            continue
        erased += 1
        r, c = np.nonzero(changed)
        box = np.zeros_like(changed)
        box[r.min():r.max() + 1, c.min():c.max() + 1] = True
        np.testing.assert_array_equal(changed, box)                 # one rectangle
        assert 0.015 <= changed.mean() <= 0.26                       # area in scale
        np.testing.assert_allclose(y[b][changed], np.broadcast_to(
            255.0 * np.array(IMAGENET_MEAN, "float32"), (changed.sum(), 3)), rtol=1e-6)
    assert erased >= 12        # p = 1: only rectangles that do not fit are skipped


def test_training_batches_with_dan_augmentation_repeat_for_a_seed():
    """The augmented stream is a function of the seed (stateless draws): the same seed
    gives the same batches, the options change them, and p = 0 adds nothing."""
    x = np.random.default_rng(2).integers(0, 256, (16, 32, 32, 3)).astype("uint8")
    fs = _frame_set(x, np.arange(8.0))

    def batches(**kw):
        ds = T.train_dataset(fs, 4, seed=5, flip=False, **kw).take(3)
        return np.concatenate([b[0].numpy() for b in ds])

    plain = batches()
    np.testing.assert_array_equal(batches(affine=0.0, erase=0.0), plain)
    aug = batches(affine=1.0, erase=1.0)
    np.testing.assert_array_equal(batches(affine=1.0, erase=1.0), aug)
    assert (aug != plain).any(axis=(1, 2, 3)).all()        # every image was transformed


def test_augmentation_probabilities_are_checked():
    with pytest.raises(DataError, match="augment_erase must be a probability"):
        T.resolve_config({"train": {"augment_erase": 1.5}})
    with pytest.raises(DataError, match="augment_affine must be a probability"):
        T.resolve_config({"train": {"augment_affine": "yes"}})


def test_moving_average_weights_are_saved_while_training_goes_on_from_the_raw_ones(tmp_path):
    """``train.ema_momentum``: each epoch's evaluation and saved model use the moving
    average of the weights, and the next step starts from the raw weights."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=T.make_optimizer({"learning_rate": 0.1, "batch_size": 4,
                                              "lr_reference_batch": 0, "weight_decay": 0.0,
                                              "ema_momentum": 0.5}), loss="mse")
    x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5]])).astype("float32")
    raw_after, raw_before = [], []
    track = keras.callbacks.LambdaCallback(
        on_train_batch_begin=lambda b, logs: raw_before.append(model.get_weights()[0].copy()),
        on_train_batch_end=lambda b, logs: raw_after.append(model.get_weights()[0].copy()))
    sel = T.VideoLevelSelection(None, tmp_path, batch_size=4)
    model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0,      # 2 steps each
              callbacks=[track, sel])
    w1, w2, w3, w4 = raw_after
    np.testing.assert_allclose(raw_before[2], w2, atol=1e-7)     # not the average
    ema = 0.5 * (0.5 * (0.5 * w1 + 0.5 * w2) + 0.5 * w3) + 0.5 * w4
    saved = keras.saving.load_model(tmp_path / "best.keras").get_weights()[0]
    np.testing.assert_allclose(saved, ema, rtol=1e-5, atol=1e-6)
    assert np.abs(saved - w4).max() > 1e-3                        # the average, not raw
    for bad in (1.0, -0.1, True, "0.9"):
        with pytest.raises(DataError, match="ema_momentum"):
            T.resolve_config({"train": {"ema_momentum": bad}})


def test_cosine_schedule_decays_to_zero_over_the_budget(tmp_path):
    """``train.lr_schedule = "cosine"``: half the rate after half the steps, 0 at the end."""
    write_tiny_corpus(tmp_path, per_split=(4, 2, 2), frames=2)
    cfg = {"name": "cos", "model": TINY_MODEL,
           "data": {"corpus": "tiny-faces", "data_root": str(tmp_path), "frames_per_video": 2},
           "train": {"epochs": 2, "steps_per_epoch": 2, "batch_size": 4, "verbose": 0,
                     "lr_schedule": "cosine", "learning_rate": 1e-3, "lr_reference_batch": 0,
                     "run_eagerly": True}}
    run_dir, _ = T.train(cfg, out_base=tmp_path / "runs")
    lrs = [h["lr"] for h in json.loads((run_dir / "history.json").read_text())]
    np.testing.assert_allclose(lrs, [5e-4, 0.0], atol=1e-9)
    with pytest.raises(DataError, match="lr_schedule"):
        T.resolve_config({"train": {"lr_schedule": "step"}})


def test_warmup_rises_linearly_then_the_cosine_runs_over_the_rest():
    """``train.lr_warmup_steps``: 0 -> the rate over the warm-up, then half the rate
    half-way through the remaining steps, 0 at the end; only with the cosine schedule."""
    t = {"learning_rate": 1e-3, "lr_reference_batch": 0, "batch_size": 16,
         "lr_schedule": "cosine", "lr_warmup_steps": 10, "ema_momentum": 0.0,
         "weight_decay": 0.01}
    sched = T.learning_rate_schedule(t, total_steps=110)
    lr = [float(sched(s)) for s in (0, 5, 10, 60, 110)]
    np.testing.assert_allclose(lr, [0.0, 5e-4, 1e-3, 5e-4, 0.0], atol=1e-9)
    plain = T.learning_rate_schedule({**t, "lr_warmup_steps": 0}, total_steps=110)
    np.testing.assert_allclose([float(plain(0)), float(plain(55))], [1e-3, 5e-4], atol=1e-9)
    for bad in (-1, 1.5, True):
        with pytest.raises(DataError, match="lr_warmup_steps"):
            T.resolve_config({"train": {"lr_warmup_steps": bad}})
    with pytest.raises(DataError, match="lr_warmup_steps needs"):
        T.resolve_config({"train": {"lr_warmup_steps": 5}})      # the plateau schedule
