"""Bad input at both command lines (issue 11): one line naming the path and the problem,
exit 2, nothing written, output paths checked before any heavy work, no start-up
noise; plus --version, help defaults, progress and what `predict` reports.

Most cases call ``main([...])`` in-process (TensorFlow loads once); a few run the
commands in a subprocess to see their real stderr.
"""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from data_fixtures import make_avec2013, write_openface_csv
from depressionmlp import progress
from depressionmlp.cli import main as dmlp
from depressionmlp.runs import write_json_atomic
from hmhn.cli import main as hmhn

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- helpers

def run(main, argv, capsys):
    """``(rc, stdout, stderr)`` of an in-process CLI call; a traceback fails the test."""
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(rc, err, *needles):
    assert rc == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "error: " in lines[0] and "Traceback" not in err
    for n in needles:
        assert str(n) in lines[0], (n, lines[0])
    return lines[0]


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A DepressionMLP run directory (untrained model; what predict/export read)."""
    import keras
    from depressionmlp import train
    keras.utils.set_random_seed(0)
    cfg = train.resolve_config({"name": "edge-run", "data": {"corpus": "synthetic"}})
    train.resolve_score_affine(cfg["model"], [5.0, 15.0, 25.0], "fixture")
    settings = train.segment_settings(cfg)
    model = train.build_model_from_config(cfg, settings)
    cfg["resolved"] = {"segment": settings.to_dict(), "streams": list(train.model_streams(cfg)),
                       "scale": "bdi2", "params": int(model.count_params())}
    d = tmp_path_factory.mktemp("runs") / "edge-run-20260101-000000"
    d.mkdir()
    model.save(d / "best.keras")
    write_json_atomic(d / "config.json", cfg)
    write_json_atomic(d / "metrics.json", {"name": "edge-run", "best_epoch": 3, "splits": {
        "dev": {"rmse": 6.5, "mae": 5.25, "n": 20}, "test": {"rmse": 7.0, "mae": 6.0, "n": 20}}})
    return d


@pytest.fixture
def configs(tmp_path):
    d = tmp_path / "cfg"
    d.mkdir()
    (d / "dmlp.toml").write_text('name = "e"\n[data]\ncorpus = "synthetic"\n'
                                 '[train]\nepochs = 1\nverbose = 0\n')
    (d / "hmhn.toml").write_text('name = "e"\n[data]\ncorpus = "synthetic-faces"\n'
                                 '[train]\nepochs = 1\nverbose = 0\n')
    (d / "lr.toml").write_text('[data]\ncorpus = "synthetic"\n[train]\nlearning_rate = "fast"\n')
    (d / "hlr.toml").write_text('[train]\nlearning_rate = "fast"\n')
    return d


@pytest.fixture
def readonly(tmp_path, monkeypatch):
    """A folder nobody may write to; as root (which ignores modes) access() is patched."""
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.geteuid() == 0:
        real = os.access

        def access(path, mode, *a, **k):
            p = Path(path).absolute()
            if mode & os.W_OK and (p == ro or ro in p.parents):
                return False
            return real(path, mode, *a, **k)
        monkeypatch.setattr(os, "access", access)
    yield ro
    ro.chmod(0o755)


# --------------------------------------------------------------------------- table rows

def test_out_is_an_existing_file(tmp_path, run_dir, configs, capsys):
    f = tmp_path / "taken"
    f.write_text("mine")
    empty = tmp_path / "empty-root"
    empty.mkdir()
    for main, argv in [
            (dmlp, ["train", "--config", configs / "dmlp.toml", "--data-root", empty, "--out", f]),
            (dmlp, ["export", "--model", run_dir, "--out", f]),
            (hmhn, ["train", "--config", configs / "hmhn.toml", "--data-root", empty, "--out", f]),
            (hmhn, ["explain", "--model", run_dir, "--images", tmp_path, "--out", f])]:
        before = listing(tmp_path)
        rc, out, err = run(main, argv, capsys)
        one_line_error(rc, err, f, "is a file, not a folder")
        assert listing(tmp_path) == before and f.read_text() == "mine"


def test_read_only_output_folder(tmp_path, run_dir, configs, readonly, capsys):
    empty = tmp_path / "empty-root"
    empty.mkdir()
    runs = tmp_path / "runs"
    (runs / "r1").mkdir(parents=True)
    write_json_atomic(runs / "r1" / "metrics.json", {"name": "r1", "model": "m", "splits": {
        "dev": {"rmse": 1.0, "mae": 1.0, "r2": 0.0, "smape": 1.0}}})
    for main, argv, path in [
            (dmlp, ["train", "--config", configs / "dmlp.toml", "--data-root", empty,
                    "--out", readonly], readonly),
            (dmlp, ["export", "--model", run_dir, "--out", readonly / "x"], readonly / "x"),
            (dmlp, ["summarize", "--runs", runs, "--out", readonly / "s"], readonly),
            (hmhn, ["train", "--config", configs / "hmhn.toml", "--data-root", empty,
                    "--out", readonly / "h"], readonly / "h"),
            (hmhn, ["explain", "--model", run_dir, "--images", tmp_path,
                    "--out", readonly], readonly)]:
        before = listing(tmp_path)
        rc, out, err = run(main, argv, capsys)
        one_line_error(rc, err, path, "not writable")
        assert listing(tmp_path) == before


def test_oserror_naming_a_file_is_one_line(monkeypatch, tmp_path, capsys):
    from depressionmlp import cli

    def boom(args):
        raise PermissionError(13, "Permission denied", str(tmp_path / "x.json"))
    monkeypatch.setattr(cli, "cmd_count", boom)
    rc, _, err = run(dmlp, ["count"], capsys)
    one_line_error(rc, err, tmp_path / "x.json", "permission denied")


def test_learning_rate_not_a_number(tmp_path, configs, capsys):
    empty = tmp_path / "empty-root"
    empty.mkdir()
    out = tmp_path / "out"
    rc, _, err = run(dmlp, ["train", "--config", configs / "lr.toml", "--data-root", empty,
                            "--out", out], capsys)
    one_line_error(rc, err, "lr.toml", "train.learning_rate must be a positive number", "'fast'")
    rc, _, err = run(hmhn, ["train", "--config", configs / "hlr.toml", "--data-root", empty,
                            "--out", out], capsys)
    one_line_error(rc, err, "hlr.toml", "train.learning_rate must be a positive number")
    assert not out.exists()


@pytest.mark.parametrize("damage", ["empty", "truncated", "corrupt", "not_zip"])
def test_bad_best_keras(damage, tmp_path, run_dir, capsys):
    d = tmp_path / "run"
    d.mkdir()
    (d / "config.json").write_bytes((run_dir / "config.json").read_bytes())
    data = (run_dir / "best.keras").read_bytes()
    bad = {"empty": b"", "truncated": data[: len(data) // 2],
           "corrupt": data[:2000] + bytes(b ^ 0xFF for b in data[2000:2400]) + data[2400:],
           "not_zip": b"hello " * 100}[damage]
    (d / "best.keras").write_bytes(bad)
    rc, _, err = run(dmlp, ["predict", "--model", d, "--openface", "x.csv"], capsys)
    line = one_line_error(rc, err, d / "best.keras")
    assert "File not found" not in line
    assert "not a readable .keras model" in line
    assert {"empty": "empty (0 bytes)", "truncated": "not a zip archive",
            "corrupt": "corrupt", "not_zip": "not a zip archive"}[damage] in line
    rc, _, err = run(hmhn, ["evaluate", "--model", d], capsys)
    assert "File not found" not in one_line_error(rc, err, d / "best.keras")


def test_model_folder_missing_or_not_a_run(tmp_path, capsys):
    nope = tmp_path / "no-such-run"
    rc, _, err = run(dmlp, ["predict", "--model", nope, "--openface", "x.csv"], capsys)
    line = one_line_error(rc, err, nope, "no such run directory")
    assert "config.json" not in line
    rc, _, err = run(dmlp, ["evaluate", "--model", tmp_path], capsys)
    one_line_error(rc, err, tmp_path, "not a run directory")
    rc, _, err = run(hmhn, ["evaluate", "--model", nope], capsys)
    one_line_error(rc, err, nope, "no such run directory")


def test_binary_file_renamed_csv(tmp_path, capsys):
    p = tmp_path / "video.csv"
    p.write_bytes(bytes(range(256)) * 40)
    rc, _, err = run(dmlp, ["inspect", p], capsys)
    one_line_error(rc, err, p, "not a text file")
    p.write_bytes("frame, timestamp\n1, 0\n".encode("utf-16"))
    rc, _, err = run(dmlp, ["inspect", p], capsys)
    one_line_error(rc, err, p, "UTF-16")


def test_inspect_refuses_a_file_too_short_for_one_segment(tmp_path, capsys):
    p = write_openface_csv(tmp_path / "short.csv", 40)
    rc, out, err = run(dmlp, ["inspect", p], capsys)
    one_line_error(rc, err, p, "a segment needs 18")
    assert out == ""


def test_hmhn_missing_corpus_suggests_hmhn_synth(tmp_path, configs, capsys):
    rc, _, err = run(hmhn, ["train", "--config", configs / "hmhn.toml",
                            "--data-root", tmp_path, "--out", tmp_path / "o"], capsys)
    line = one_line_error(rc, err, "hmhn synth --out")
    assert "hmhn.data.synth" not in line
    assert not (tmp_path / "o").exists()


def test_no_startup_noise_on_stderr(tmp_path, configs):
    """Real processes: TensorFlow's absl/oneDNN lines must not reach stderr."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("TF_ENABLE_ONEDNN_OPTS", None)          # hmhn turns oneDNN on: its note must go
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    for argv in (["hmhn", "train", "--config", configs / "hlr.toml"],
                 ["depressionmlp", "predict", "--model", tmp_path / "x", "--openface", "y.csv"]):
        proc = subprocess.run([sys.executable, "-m", *map(str, argv)], capture_output=True,
                              text=True, env=env, cwd=tmp_path, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


# --------------------------------------------------------------------------- conventions

def test_version_and_help_defaults(capsys):
    for main, prog in ((dmlp, "depressionmlp"), (hmhn, "hmhn")):
        with pytest.raises(SystemExit) as e:
            main(["--version"])
        assert e.value.code == 0
        assert capsys.readouterr().out.startswith(f"{prog} ")
    with pytest.raises(SystemExit):
        dmlp(["train", "--help"])
    text = capsys.readouterr().out
    assert "(default: outputs/runs)" in text and "--quiet" in text
    with pytest.raises(SystemExit):
        hmhn(["bench", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 224)" in text and "(default: 8)" in text


def test_every_option_has_help():
    from depressionmlp.cli import build_parser as dp
    from hmhn.cli import build_parser as hp
    for build in (dp, hp):
        sub = next(a for a in build()._actions if a.__class__.__name__ == "_SubParsersAction")
        for name, parser in sub.choices.items():
            for a in parser._actions:
                assert a.help, (build.__module__, name, a.dest)


def test_progress_lines_and_summary(tmp_path):
    buf = io.StringIO()
    bar = progress.Progress(3, "reading", stream=buf, enabled=True, every_s=0.0,
                            min_total_s=0.0)
    for _ in range(3):
        bar.update()
    bar.done("3 recordings")
    lines = buf.getvalue().splitlines()
    assert lines[0].startswith("reading: 1/3") and "left" in lines[0]
    assert lines[-1].startswith("3 recordings in ")
    quiet = io.StringIO()
    bar = progress.Progress(2, "x", stream=quiet, enabled=False)
    bar.update(), bar.done("s")
    assert quiet.getvalue() == ""


def test_corpus_summary_line(tmp_path, capsys):
    from depressionmlp.data.corpora import load_corpus
    make_avec2013(tmp_path, {"train": {"1_1": 3, "2_1": 20}, "dev": {"3_1": 9},
                             "test": {"4_1": 30}}, n_frames=120)
    progress.set_enabled(True)
    try:
        load_corpus("avec2013", tmp_path, cache_dir=tmp_path / "cache")
        load_corpus("avec2013", tmp_path, cache_dir=tmp_path / "cache")
    finally:
        progress.set_enabled(False)
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("avec2013: 4 recordings (train 2, dev 1, test 1), ")
    assert "0 from the cache" in err[0] and "4 from the cache" in err[1]
    assert "frames dropped" in err[0]


# --------------------------------------------------------------------------- predict

def test_predict_reports_spread_interval_model_band_and_warnings(tmp_path, run_dir, capsys):
    long_ = write_openface_csv(tmp_path / "long.csv", 600, seed=3)
    short = write_openface_csv(tmp_path / "short.csv", 100, seed=4)
    rc, out, err = run(dmlp, ["predict", "--model", run_dir, "--openface", long_, short,
                              "--json"], capsys)
    assert rc == 0, err
    a, b = json.loads(out)
    for r in (a, b):
        assert r["model"]["run"] == run_dir.name and r["model"]["name"] == "edge-run"
        assert r["model"]["error"]["test"]["rmse"] == 7.0
        top = 63
        inside = 0 <= r["score"] <= top
        assert r["band"]["low"] <= min(max(r["score"], 0), top) <= r["band"]["high"] + 1
        assert inside != any("lies outside the BDI-II range 0-63" in w for w in r["warnings"])
        assert {"sd", "min", "max", "median"} <= set(r["spread"])
    assert a["segments"] > 5 and a["interval"]["low"] <= a["score"] <= a["interval"]["high"]
    # 20 frames at 6 fps: one segment at phase 0, so the default's "auto" rule cuts all
    # five phases (windows 1/30 s apart: about 1.4 independent segments' worth)
    assert b["segments"] == 5 and b["phases"] == 5 and a["phases"] == 5
    assert b["interval"]["effective_segments"] == 1.4
    assert b["usable_seconds"] == pytest.approx(4.2)
    assert any("thin evidence" in w for w in b["warnings"])
    assert "thin evidence" in err and str(short) in err
    rc, out, err = run(dmlp, ["predict", "--model", run_dir, "--openface", short], capsys)
    assert rc == 0 and "BDI-II" in out and "run edge-run-" in out and "test RMSE 7.00" in out


def test_describe_warns_on_a_score_outside_the_scale():
    from depressionmlp import prediction
    cfg = {"name": "x", "resolved": {"segment": {"segment_length": 100, "stride": 50,
                                                 "fps": 30.0}}}
    base = {"file": "a.csv", "segments": 8, "frames": 500, "frames_dropped": 0}
    for score, seg, warned, band in ((-30.8, [-31.0, -30.6] * 4, True, "minimal"),
                                     (70.2, [70.0, 70.4] * 4, True, "severe"),
                                     (21.0, [20.8, 21.2] * 4, False, "moderate")):
        r = prediction.describe(dict(base, score=score, segment_scores=seg, scale="bdi2"),
                                cfg, "/nowhere/best.keras")
        assert r["band"]["name"] == band and r["score"] == score
        hits = [w for w in r["warnings"] if "outside the BDI-II range 0-63" in w]
        assert bool(hits) == warned, r["warnings"]
        if warned:
            assert f"{score:.2f}" in hits[0]
    r = prediction.describe(dict(base, score=25.5, segment_scores=[25.0, 26.0] * 4,
                                 scale="phq8"), cfg, "/nowhere/best.keras")
    assert any("outside the PHQ-8 range 0-24" in w for w in r["warnings"])


def test_predict_warns_on_many_dropped_frames(tmp_path, run_dir, capsys):
    succ = np.ones(600)
    succ[:260] = 0                                  # 43 % of the frames failed tracking
    p = write_openface_csv(tmp_path / "gappy.csv", 600, success=succ)
    rc, out, err = run(dmlp, ["predict", "--model", run_dir, "--openface", p, "--json"],
                       capsys)
    assert rc == 0, err
    assert any("260 of 600 frames (43 %) were dropped" in w
               for w in json.loads(out)["warnings"])


# --------------------------------------------------------------------------- fuzz

def _fuzz_files(folder: Path) -> list[Path]:
    """Malformed OpenFace files: hand-made cases plus seeded byte-level mutations."""
    base = write_openface_csv(folder / "base.csv", 120, seed=1)
    text = base.read_text()
    lines = text.splitlines(keepends=True)
    header = lines[0]
    cases = {
        "empty": "", "header_only": header, "blank_lines": "\n\n\n",
        "one_row": header + lines[1], "commas": ",,,,\n" * 20,
        "truncated_last": text[: len(text) - 200],
        "ragged": header + lines[1] + lines[2].rstrip("\n") + ", 7\n" + "".join(lines[3:]),
        "word_cell": header + lines[1].replace(", ", ", abc, ", 1).replace(", ", ",", 1)
        + "".join(lines[2:]),
        "nan_cells": text.replace(", 1, ", ", nan, "),
        "inf_cells": text.replace("0.98", "inf"),
        "neg_cells": text.replace("0.98", "-5"),
        "huge_cells": text.replace("0.98", "1e308"),
        "no_success": text.replace(header, header.replace("success", "sucess")),
        "no_aus": "\n".join(", ".join(c for i, c in enumerate(ln.split(", "))
                                      if not header.split(", ")[i].strip().startswith("AU"))
                            for ln in text.splitlines()) + "\n",
        "semicolons": text.replace(", ", ";"), "tabs": text.replace(", ", "\t"),
        "crlf": text.replace("\n", "\r\n"), "bom": "\ufeff" + text,
        "all_failed": "".join([header] + [ln.replace(", 1, ", ", 0, ", 1) for ln in lines[1:]]),
        "dup_header": header + text, "latin1": None, "binary": None, "utf16": None,
        "zero_timestamps": None, "shuffled_rows": header + "".join(
            random.Random(0).sample(lines[1:], len(lines) - 1)),
        "only_header_twice": header + header, "very_long_line": header + "1," * 100000 + "\n",
        "quoted": text.replace(", ", '", "'),
    }
    out = []
    for name, body in cases.items():
        p = folder / f"{name}.csv"
        if name == "latin1":
            p.write_bytes(text.replace("0.98", "0,98\xe9").encode("latin-1"))
        elif name == "binary":
            p.write_bytes(os.urandom(4096))
        elif name == "utf16":
            p.write_bytes(text.encode("utf-16"))
        elif name == "zero_timestamps":
            m = [ln.split(", ") for ln in lines[1:]]
            for row in m:
                row[2] = "0"
            p.write_text(header + "".join(", ".join(r) for r in m))
        else:
            p.write_text(body)
        out.append(p)
    rng = random.Random(11)
    raw = text.encode()
    for k in range(30):                               # byte-level mutations
        b = bytearray(raw)
        for _ in range(rng.randint(1, 4)):
            op, i = rng.randrange(4), rng.randrange(len(b))
            if op == 0:
                del b[i: i + rng.randint(1, 400)]
            elif op == 1:
                b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 20)))
            elif op == 2:
                b[i] = rng.choice(b",\n x-.e")
            else:
                b = b[: rng.randrange(len(b))]
        p = folder / f"mut{k:02d}.csv"
        p.write_bytes(bytes(b))
        out.append(p)
    return out


BAD_CONFIGS = [
    "this is = not [ toml", "[train]\nepochs = \"ten\"", "[train]\nepochs = 0",
    "[train]\nepochs = 2.5", "[train]\nlearning_rate = \"fast\"", "[train]\nlearning_rate = -1",
    "[train]\nlearning_rate = [1, 2]", "[train]\nbatch_size = true", "[train]\nbeta_1 = \"x\"",
    "[train]\nweight_decay = {a = 1}", "[train]\nseed = \"s\"", "[train]\nmax_minutes = -3",
    "[train]\npatience = \"p\"", "[train]\nweight_decay_mode = \"keras4\"",
    "[train]\nscore_scale = \"big\"", "[train]\nepoch = 3", "[trian]\nepochs = 3",
    "[data]\ncorpus = \"avec2015\"", "[data]\ncorpus = 3", "[data.segment]\ncenter = \"middle\"",
    "[data.segment]\nsegment_length = \"x\"", "[data.segment]\nstride = 0",
    "[model]\nname = \"NoSuchModel\"", "[model]\ninputs = \"nose\"", "name = 5",
    "[data]\ntrain_splits = \"train\"", "[data]\nsegment = 3", "train = 3", "",
    "[train]\nper_recording = -2",
]


def test_fuzz_inspect_train_predict_never_traceback(tmp_path, run_dir, capsys):
    files = _fuzz_files(tmp_path / "files")
    assert len(files) >= 50
    refused, accepted = [], []
    for p in files:
        rc, out, err = run(dmlp, ["inspect", p], capsys)   # an exception fails the test
        assert rc in (0, 2), (p.name, rc, err)
        if rc == 2:
            one_line_error(rc, err, p)
        (refused if rc == 2 else accepted).append(p)
    assert len(refused) >= 45
    # predict loads the model per call: every file inspect accepted, a sample of the rest
    for p in accepted + refused[::4]:
        rc, out, err = run(dmlp, ["predict", "--model", run_dir, "--openface", p], capsys)
        assert rc == (0 if p in accepted else 2), (p.name, rc, err)
        if rc == 2:
            one_line_error(rc, err, p)
        else:
            assert "score" in out and "nan" not in out.lower()
    empty = tmp_path / "no-data"
    empty.mkdir()
    for k, body in enumerate(BAD_CONFIGS):
        cfg = tmp_path / f"cfg{k:02d}.toml"
        cfg.write_text(body + "\n")
        rc, out, err = run(dmlp, ["train", "--config", cfg, "--data-root", empty,
                                  "--out", tmp_path / "runs", "--quiet"], capsys)
        one_line_error(rc, err)
        assert not (tmp_path / "runs").exists(), body


def test_summary_table_prints_each_runs_view_weights(tmp_path):
    """`summarize` (every make target's table): a run with fitted views shows their
    weights, a single model or a classical baseline shows "-"."""
    import json

    from depressionmlp import summary
    split = {"test": {"rmse": 7.5, "mae": 6.0, "r2": 0.25, "smape": 30.0,
                      "mean_predictor": {"rmse": 11.0}}}
    for name, extra in (("views", {"view_weights": [0.125, 0.5, 0.375]}), ("single", {})):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps(
            {"name": name, "model": "DG+MG+Linear", "inputs": "all", "params": 42192,
             "splits": split, **extra}))
    table = summary.to_markdown(summary.summarize(tmp_path)).splitlines()
    assert table[0].endswith("| view weights |")
    assert table[2].startswith("| single |") and table[2].endswith("| 11.00 | - |")
    assert table[3].startswith("| views |") and table[3].endswith("| 0.12 / 0.50 / 0.38 |")
