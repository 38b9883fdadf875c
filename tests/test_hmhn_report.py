"""`make hmhn-report` (issue 10): planning (configs that train the same thing share a
run), tables and figures over run directories, the paper's numbers kept apart; the
end-to-end report on tiny synthetic faces is in the slow set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from depressionmlp import report as R
from hmhn import report as H
from test_report import assert_png


def _fake_run(runs_dir: Path, spec, rng, n_vid=20, bias=0.0):
    d = runs_dir / f"{spec.stem}-s{spec.seed}"
    d.mkdir(parents=True)
    meta = {"name": spec.resolved["name"], "model": "hmhn", "row": spec.resolved["model"]["row"],
            "params": 1_000_000 + 1000 * spec.resolved["model"]["heads"], "splits": {}}
    for split in spec.resolved["data"]["eval_splits"]:
        ids = [f"{split}{i:02d}" for i in range(n_vid)]
        true = np.linspace(0, 45, n_vid)
        pred = true + bias + rng.normal(0, 4, n_vid)
        lines = ["recording_id,subject_id,true,predicted"]
        lines += [f"{r},s{r},{t:.4f},{q:.4f}" for r, t, q in zip(ids, true, pred)]
        (d / f"predictions_{split}.csv").write_text("\n".join(lines) + "\n")
        meta["splits"][split] = {"rmse": float(np.sqrt(np.mean((true - pred) ** 2))),
                                 "mae": float(np.mean(np.abs(true - pred)))}
    (d / "metrics.json").write_text(json.dumps(meta))
    (d / R.REQUEST_FILE).write_text(json.dumps({"fingerprint": spec.fingerprint,
                                                "seconds": 10.0}))
    return d


@pytest.fixture(scope="module")
def fake_hmhn(tmp_path_factory):
    out = tmp_path_factory.mktemp("hmhn-report")
    specs = H.plan_runs("synthetic-faces", out / "none", seeds=(0, 1),
                        train_overrides=H.QUICK_TRAIN)
    rng = np.random.default_rng(0)
    made = {}
    for s in specs:                                   # one run per distinct training
        if s.fingerprint not in made:
            made[s.fingerprint] = _fake_run(out / "runs", s, rng,
                                            bias=6.0 if s.stem.endswith("_A") else 0.0)
    return out, specs, made


def test_plan_shares_identical_trainings(fake_hmhn):
    _, specs, made = fake_hmhn
    stems = {s.stem for s in specs}
    assert len(stems) == 5 + 8 + 5 + 5
    assert len(specs) == 2 * len(stems)
    fp = {(s.stem, s.seed): s.fingerprint for s in specs}
    # ablation E = 4 heads = grid 3x3 = kernels (3x3, 1x3, 3x1): one training per seed
    same = {fp[(k, 0)] for k in ("hmhn_ablation_E", "hmhn_heads_4", "hmhn_grid_3x3",
                                 "hmhn_kernels_3x3")}
    assert len(same) == 1
    assert fp[("hmhn_ablation_E", 0)] != fp[("hmhn_ablation_E", 1)]
    assert len(made) == 2 * (len(stems) - 3)
    # QUICK: the [quick] table (64 px) and the smoke-test budget
    quick = H.plan_runs("synthetic-faces", "none", seeds=(0,), quick=True,
                        train_overrides=H.QUICK_TRAIN, only={"hmhn_ablation_E"})
    e = quick[0]
    assert e.fingerprint != fp[("hmhn_ablation_E", 0)]
    assert e.resolved["model"]["input_size"] == 64
    assert e.resolved["train"]["epochs"] == H.QUICK_TRAIN["epochs"]
    assert e.resolved["train"]["steps_per_epoch"] == H.QUICK_TRAIN["steps_per_epoch"]


def test_report_states_the_budget_its_runs_trained():
    """The report's first line names the budget; only QUICK_TRAIN's is a smoke test."""
    smoke, table = (H.plan_runs("synthetic-faces", "none", quick=True, train_overrides=over,
                                only={"hmhn_ablation_E"})[0].resolved
                    for over in (H.QUICK_TRAIN, None))
    line = H._budget_line({"quick": True, "budget": H.run_budget(smoke)})
    assert line == ("; QUICK, the configs' [quick] tables: 64 px, 2 epochs of 10 steps: "
                    "a smoke test, not a result")
    line = H._budget_line({"quick": True, "budget": H.run_budget(table)})
    assert line == ("; QUICK, the configs' [quick] tables: 64 px, 16 epochs of one pass "
                    "over the training frames")


def test_hmhn_report_tables_and_figures(fake_hmhn):
    out, specs, made = fake_hmhn
    r = H.build_report("synthetic-faces", data_root=out / "none", out=out, seeds=(0, 1),
                       train_overrides=H.QUICK_TRAIN, n_boot=100,
                       log=lambda m: None)
    assert r.runs_trained == 0 and r.runs_reused == len(made)
    names = {p.name for p in out.iterdir() if p.is_file()}
    assert {"report.md", "report.json", "fig6_heads.png", "fig7_grid.png"} <= names
    for f in ("fig6_heads.png", "fig7_grid.png"):
        assert_png(out / f)
    md = (out / "report.md").read_text()
    t34 = md.split("## Tables 3 / 4")[1].split("## Table 5")[0]
    rows = [ln for ln in t34.splitlines() if ln.startswith("| ") and "---" not in ln]
    assert len(rows) == 1 + 5 and all(ln.count("|") == 7 for ln in rows)
    # the paper's numbers, in their own columns: row A 8.47 / 9.32 (2013), 8.38 / 9.13 (2014)
    a = next(ln for ln in rows if ln.startswith("| A:"))
    assert "| 8.47 / 9.32 | 8.38 / 9.13 |" in a
    e = next(ln for ln in rows if ln.startswith("| E:"))
    assert "| 6.05 / 7.38 | 6.01 / 7.60 |" in e
    t5 = md.split("## Table 5")[1].split("##")[0]
    assert "29.33 M" in t5 and "19.72 M" in t5 and t5.count("\n| ") == 1 + 5
    data = json.loads((out / "report.json").read_text())
    # our numbers: recomputed from the fake predictions, paper numbers not among them
    row_a = data["rows"]["hmhn_ablation_A"]["test"]
    assert row_a["seeds"] == 2 and row_a["n"] == 20
    assert row_a["mae"]["mean"] > data["rows"]["hmhn_ablation_E"]["test"]["mae"]["mean"]
    assert sorted(data["heads"], key=int) == [str(k) for k in range(1, 9)]
    assert set(data["grid"]) == set(H.GRID_ORDER)
    assert data["heads"]["4"] == data["grid"]["3x3"]      # the same runs


def test_report_cli_budget_chooses_smoke_or_the_quick_table(tmp_path, monkeypatch, capsys):
    """--quick trains QUICK_TRAIN's smoke budget; --budget config the [quick] table's own
    (no override); --budget without --quick is refused in one line."""
    from hmhn.cli import main
    seen = []

    def fake_build(corpus, **kw):
        seen.append(kw["train_overrides"])
        return R.ReportResult(Path(kw["out"]), [], 0.0, 0.0, 0, 0)

    monkeypatch.setattr(H, "build_report", fake_build)
    base = ["report", "--corpus", "synthetic-faces", "--data-root", str(tmp_path),
            "--out", str(tmp_path / "rep"), "--quiet"]
    assert main(base + ["--quick"]) == 0
    assert main(base + ["--quick", "--budget", "config"]) == 0
    assert main(base) == 0
    assert seen == [H.QUICK_TRAIN, None, None]
    from depressionmlp.clikit import guarded
    assert guarded(main)(base + ["--budget", "config"]) == 2
    assert "--budget chooses the --quick budget; add --quick" in capsys.readouterr().err


def test_plot_label_distribution_png(tmp_path):
    p = H.plot_label_distribution({"train": [1, 5, 20, 33, 40], "dev": [3, 18], "test": [9]},
                                  tmp_path / "f5.png")
    assert_png(p)


@pytest.mark.slow
def test_hmhn_report_end_to_end_tiny_faces(tmp_path):
    from hmhn.data.synth import generate_faces
    generate_faces(tmp_path / "data" / "synthetic-faces", n_subjects=10, frames_per_video=2,
                   size=64, seed=4)
    kw = dict(data_root=tmp_path / "data", out=tmp_path / "rep", seeds=(0,), quick=True,
              train_overrides={"epochs": 1, "steps_per_epoch": 2},
              only={"hmhn_ablation_A", "hmhn_ablation_E", "hmhn_heads_4", "hmhn_heads_2"},
              n_boot=50)
    r = H.build_report("synthetic-faces", **kw)
    assert r.runs_trained == 3                  # E and 4 heads share one run
    names = {p.name for p in (tmp_path / "rep").iterdir() if p.is_file()}
    assert {"fig5_label_distribution.png", "fig6_heads.png", "attention_low.png",
            "attention_high.png", "report.md"} <= names
    for f in names:
        if f.endswith(".png"):
            assert_png(tmp_path / "rep" / f, max_bytes=600_000)
    assert H.build_report("synthetic-faces", **kw).runs_trained == 0
