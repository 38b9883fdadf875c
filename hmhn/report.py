"""`make hmhn-report`: every table and figure of the HMHN paper from one command.

``build_report(corpus, ...)`` trains what is missing (one run directory per config x
seed under ``<out>/runs``, reused while its resolved config is unchanged, so a killed
report continues; configs that resolve to the same training, e.g. ablation row E and
4 heads, share one run) and writes ``<out>/report.md``, ``report.json`` and:

- Tables 3 / 4: ablation rows A-E (``experiments/hmhn_ablation_*.toml``), test MAE /
  RMSE as mean +- sd over seeds [95 % bootstrap interval over videos, resampling
  subjects], beside the paper's AVEC 2013 and AVEC 2014 numbers;
- ``fig5_label_distribution.png``: BDI-II labels per split (videos);
- ``fig6_heads.png`` / ``fig7_grid.png``: test RMSE and MAE against the number of
  cross-attention heads / the GWA grid;
- Table 5: kernel settings with their parameter counts;
- the per-head attention maps (:mod:`hmhn.explain`) of one frame of the lowest- and
  of the highest-scored test video.

The statistics come from :mod:`depressionmlp.report` (one home per concept).
"""

from __future__ import annotations

import copy
import json
import sys
import time
from pathlib import Path

import numpy as np

from depressionmlp import report as R
from depressionmlp.errors import DataError
from depressionmlp.runs import deep_update, load_config, write_json_atomic, write_text_atomic

GROUPS = {"ablation": "hmhn_ablation_*.toml", "heads": "hmhn_heads_*.toml",
          "grid": "hmhn_grid_*.toml", "kernels": "hmhn_kernels_*.toml"}
GRID_ORDER = ("none", "2x2", "3x3", "4x4", "5x5")
SPLIT = "test"                        # the paper's tables are on the test sets
#: QUICK=1 (with the configs' [quick] tables: 64 px, 4 frames per video): a smoke-test
#: budget per run, 2 epochs of 10 steps.
QUICK_TRAIN = {"epochs": 2, "steps_per_epoch": 10}


def config_paths(experiments=R.EXPERIMENTS, groups=None) -> dict:
    e = Path(experiments)
    return {g: sorted(e.glob(pat)) for g, pat in GROUPS.items()
            if groups is None or g in groups}


def plan_runs(corpus: str, data_root, seeds=(0,), quick=False, train_overrides=None,
              experiments=R.EXPERIMENTS, only=None, groups=None) -> list[R.RunSpec]:
    """One RunSpec per config x seed, with the corpus, data root and seed set."""
    from hmhn.train import resolve_config
    specs = []
    for group, paths in config_paths(experiments, groups).items():
        for path in paths:
            if only is not None and path.stem not in only:
                continue
            base = load_config(path)
            for seed in seeds:
                over = {"data": {"corpus": corpus, "data_root": str(data_root)},
                        "train": {"seed": int(seed), "verbose": 0}}
                if train_overrides:
                    over["train"].update(train_overrides)
                    over["quick"] = {"train": dict(train_overrides)}    # win over [quick] too
                cfg = deep_update(copy.deepcopy(base), over)
                resolved = resolve_config(copy.deepcopy(cfg), str(path), quick=quick)
                specs.append(R.RunSpec(path.stem, int(seed), cfg, str(path), None,
                                       R.fingerprint(_canonical(resolved)), resolved))
    for s in specs:
        s.protocol = "quick" if quick else None
    return specs


def _canonical(resolved: dict) -> dict:
    """The resolved config with grid / kernels in one spelling ("3x3" = [3, 3])."""
    from hmhn.layers import parse_grid, parse_kernels
    c = copy.deepcopy(resolved)
    c["model"]["grid"] = list(parse_grid(c["model"]["grid"]))
    c["model"]["kernels"] = [list(k) for k in parse_kernels(c["model"]["kernels"])]
    return c


def _train_hmhn(spec: R.RunSpec, runs_dir, resume_dir=None):
    from hmhn.train import train
    return train(copy.deepcopy(spec.config), out_base=runs_dir, source=spec.source,
                 quick=spec.protocol == "quick", resume_dir=resume_dir)


def _key(stem: str) -> str:
    return stem.split("_")[-1]


def series(by_stem: dict, prefix: str, split=SPLIT) -> dict:
    """{config key: {"rmse": [per seed], "mae": [...]}} of one group, read from metrics.json."""
    out = {}
    for stem, dirs in by_stem.items():
        if stem.startswith(prefix):
            ms = [json.loads((d / "metrics.json").read_text())["splits"].get(split) for d in dirs]
            ms = [m for m in ms if m]
            if ms:
                out[_key(stem)] = {"rmse": [m["rmse"] for m in ms], "mae": [m["mae"] for m in ms]}
    return out


def plot_metric_series(points: dict, order, path, xlabel: str, title: str) -> Path:
    """RMSE and MAE (mean +- sd over seeds) against a setting (Fig. 6 / Fig. 7)."""
    plt = R._plt()
    keys = [k for k in order if k in points]
    x = np.arange(len(keys))
    fig, ax = plt.subplots(figsize=(4.8, 3.2), constrained_layout=True)
    for metric, marker in (("rmse", "o"), ("mae", "s")):
        mean = [np.mean(points[k][metric]) for k in keys]
        sd = [np.std(points[k][metric], ddof=1) if len(points[k][metric]) > 1 else 0.0
              for k in keys]
        ax.errorbar(x, mean, yerr=sd, marker=marker, capsize=3, label=metric.upper())
    ax.set_xticks(x, keys)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test error")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return R._save(fig, path)


def plot_label_distribution(labels: dict, path, bins=np.arange(0, 66, 3)) -> Path:
    """Fig. 5: histogram of the video labels per split, with the BDI-II class cut-offs."""
    plt = R._plt()
    fig, ax = plt.subplots(figsize=(5.0, 3.2), constrained_layout=True)
    ax.hist([np.asarray(v) for v in labels.values()], bins=bins, stacked=True,
            label=[f"{k} ({len(v)})" for k, v in labels.items()])
    for cut in (14, 20, 29):
        ax.axvline(cut - 0.5, color="k", lw=0.6, ls=":")
    ax.set_xlabel("BDI-II")
    ax.set_ylabel("videos")
    ax.set_title("Fig. 5: label distribution", fontsize=9)
    ax.legend(fontsize=7)
    return R._save(fig, path)


def attention_figures(run_dir, out, split=SPLIT) -> tuple[list[Path], dict]:
    """Per-head attention maps (hmhn explain) of the lowest- and highest-scored video
    of ``split``: one frame each; also returns the label lists per split (Fig. 5)."""
    from hmhn.explain import save_figure, upsample_maps
    from hmhn.models import attention_maps, head_layers
    from hmhn.train import load_run, load_splits
    model, cfg = load_run(run_dir)
    d = cfg["data"]
    splits = list(dict.fromkeys(list(d["train_splits"]) + list(d["eval_splits"])))
    frames = load_splits(cfg, splits)
    labels = {s: frames[s].video_labels.tolist() for s in splits}
    if not head_layers(model):
        return [], labels
    fs = frames[split]
    order = np.argsort(fs.video_labels, kind="mergesort")
    paths = []
    for tag, v in (("low", int(order[0])), ("high", int(order[-1]))):
        vid = fs.videos[v]
        img = np.asarray(vid.frames[len(vid.frames) // 2], dtype=np.uint8)
        maps = attention_maps(model, img[None].astype(np.float32))
        score = float(np.asarray(model.predict(img[None].astype(np.float32),
                                               verbose=0)).reshape(-1)[0])
        up = upsample_maps(maps, img.shape[0])[0]
        p = Path(out) / f"attention_{tag}.png"
        tmp = p.with_name(f".{p.stem}.tmp.png")
        save_figure(tmp, img, up, title=f"{vid.video_id}: BDI-II {vid.label:.0f}, "
                                        f"predicted {score:.1f}")
        tmp.replace(p)
        paths.append(p)
    return paths, labels


def build_report(corpus: str, *, data_root="data", out=None, seeds=(0,), quick=False,
                 train_overrides=None, only=None, groups=None, n_boot: int = R.N_BOOT,
                 log=None) -> R.ReportResult:
    """Train what is missing, then write ``<out>/report.md`` and its figures."""
    t_start = time.time()
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    if quick:
        seeds = tuple(seeds)[:1]
    out = Path(out or f"outputs/hmhn-report/{corpus}")
    specs = plan_runs(corpus, data_root, seeds, quick, train_overrides, only=only,
                      groups=groups)
    if not specs:
        raise DataError(None, "no experiment configs to run")
    runs_dir = out / "runs"
    before = {(s.stem, s.seed) for s in specs if R.find_finished(runs_dir, s)}
    if len(before) < len(specs):
        if corpus == "synthetic-faces" and not (Path(data_root) / corpus).exists():
            from hmhn.cli import ensure_synthetic_faces
            ensure_synthetic_faces(data_root)
        from hmhn.train import load_splits       # the corpus must be there (one line if not)
        first = specs[0].resolved
        load_splits(first, list(first["data"]["train_splits"]) + [SPLIT])
    run_map = R.ensure_runs(specs, runs_dir, log, train_fn=_train_hmhn)
    by_stem: dict = {}
    for (stem, seed), d in sorted(run_map.items()):
        by_stem.setdefault(stem, []).append(d)
    meta = {stem: json.loads((ds[0] / "metrics.json").read_text())
            for stem, ds in by_stem.items()}
    published = R.load_published("hmhn")
    files: list[Path] = []
    data = {"corpus": corpus, "seeds": list(seeds), "quick": bool(quick),
            "budget": run_budget(specs[0].resolved), "rows": {}}
    for stem, ds in by_stem.items():
        data["rows"][stem] = {"row": meta[stem].get("row"), "params": meta[stem].get("params"),
                              SPLIT: R.row_stats(ds, SPLIT, "bdi2", n_boot)}
    heads = series(by_stem, "hmhn_heads_")
    grid = series(by_stem, "hmhn_grid_")
    if heads:
        order = sorted(heads, key=int)
        files.append(plot_metric_series(heads, order, out / "fig6_heads.png",
                                        "cross-attention heads", f"Fig. 6: heads ({corpus})"))
        data["heads"] = heads
    if grid:
        files.append(plot_metric_series(grid, GRID_ORDER, out / "fig7_grid.png", "GWA grid",
                                        f"Fig. 7: grid ({corpus})"))
        data["grid"] = grid
    # Fig. 5 and the attention maps from the row-E model (first seed)
    e_stem = next((s for s in ("hmhn_ablation_E", "hmhn_heads_4", "hmhn_grid_3x3")
                   if s in by_stem), None)
    note = ""
    if e_stem:
        try:
            maps, labels = attention_figures(by_stem[e_stem][0], out)
            files.append(plot_label_distribution(labels, out / "fig5_label_distribution.png"))
            files += maps
            data["labels"] = labels
        except DataError as e:
            note = f"Fig. 5 and the attention maps not drawn: {e}"
    elapsed = time.time() - t_start
    dirs = set(run_map.values())
    reused = {run_map[k] for k in before if k in run_map}
    run_seconds = 0.0
    for d in dirs:
        try:
            run_seconds += json.loads((d / R.REQUEST_FILE).read_text()).get("seconds", 0.0)
        except (OSError, json.JSONDecodeError):
            pass
    data.update({"seconds": round(elapsed, 1), "run_seconds": round(run_seconds, 1),
                 "runs_trained": len(dirs - reused), "runs_reused": len(reused),
                 "files": [p.name for p in files]})
    write_json_atomic(out / "report.json", data)
    write_text_atomic(out / "report.md", render_markdown(data, published, note))
    files += [out / "report.json", out / "report.md"]
    return R.ReportResult(out, files, elapsed, run_seconds, len(dirs - reused), len(reused))


def _paper(entry: dict | None, corpus_key: str) -> str:
    if not entry:
        return "-"
    v = entry.get(corpus_key, entry) if corpus_key in entry else entry
    if "mae" not in v:
        return "-"
    return f"{v['mae']:.2f} / {v['rmse']:.2f}"


def run_budget(resolved: dict) -> dict:
    """What one run of the report trains: input size, epochs, steps per epoch (0 = one
    pass over the training frames), and whether that is QUICK_TRAIN's smoke test."""
    t = resolved["train"]
    budget = {"input_size": int(resolved["model"]["input_size"]), "epochs": int(t["epochs"]),
              "steps_per_epoch": int(t["steps_per_epoch"])}
    budget["smoke"] = all(budget[k] == v for k, v in QUICK_TRAIN.items())
    return budget


def _budget_line(data: dict) -> str:
    b = data.get("budget")
    if not b:
        return ""
    steps = (f"{b['epochs']} epochs of {b['steps_per_epoch']} steps" if b["steps_per_epoch"]
             else f"{b['epochs']} epochs of one pass over the training frames")
    what = "QUICK, the configs' [quick] tables" if data["quick"] else "the configs' budget"
    return (f"; {what}: {b['input_size']} px, {steps}"
            + (": a smoke test, not a result" if b["smoke"] else ""))


def render_markdown(data: dict, published: dict, note: str = "") -> str:
    corpus = data["corpus"]
    ab = published.get("ablation", {})
    L = [f"# HMHN report: {corpus}", "",
         f"Seeds: {', '.join(map(str, data['seeds']))}" + _budget_line(data) + ".",
         f"Runs: {data['runs_trained']} trained now, {data['runs_reused']} reused; sum of "
         f"per-run times {data['run_seconds']:.0f} s; report wall time "
         f"{data['seconds']:.0f} s.", "",
         "Cells: mean ± sd over seeds [95 % bootstrap interval over videos, resampling "
         "subjects]; test split, video level. The *paper* columns (MAE / RMSE) are the "
         "paper's own numbers on AVEC 2013 and AVEC 2014 (experiments/published/hmhn.toml), "
         "never part of our statistics.", "",
         "## Tables 3 / 4: ablation rows A-E", "",
         "| row | params | MAE | RMSE | paper AVEC 2013 | paper AVEC 2014 |",
         "|---|---|---|---|---|---|"]
    for stem, r in data["rows"].items():
        if not stem.startswith("hmhn_ablation_") or not r[SPLIT]:
            continue
        k = _key(stem)
        p13 = ab.get("avec2013", {}).get(k)
        p14 = ab.get("avec2014", {}).get(k)
        label = (p13 or {}).get("label", k)
        L.append(f"| {k}: {label} | {r['params']:,} | {R.fmt_cell(r[SPLIT]['mae'])} | "
                 f"{R.fmt_cell(r[SPLIT]['rmse'])} | {_paper(p13, '')} | {_paper(p14, '')} |")
    L += ["", "## Table 5: kernels of the separable convolutions", "",
          "| kernels | params (ours) | params (paper) | MAE | RMSE | paper AVEC 2013 | "
          "paper AVEC 2014 |", "|---|---|---|---|---|---|---|"]
    kern = published.get("kernels", {})
    for stem, r in data["rows"].items():
        if not stem.startswith("hmhn_kernels_") or not r[SPLIT]:
            continue
        k = _key(stem)
        p = kern.get(k, {})
        pm = f"{p['params_m']:.2f} M" if "params_m" in p else "-"
        L.append(f"| {p.get('label', k)} | {r['params'] / 1e6:.2f} M | {pm} | "
                 f"{R.fmt_cell(r[SPLIT]['mae'])} | {R.fmt_cell(r[SPLIT]['rmse'])} | "
                 f"{_paper(p.get('avec2013'), '')} | {_paper(p.get('avec2014'), '')} |")
    for name, key, fig in (("Fig. 6: heads", "heads", "fig6_heads.png"),
                           ("Fig. 7: grid", "grid", "fig7_grid.png")):
        pts = data.get(key)
        if not pts:
            continue
        best = published.get(key, {}).get("best")
        L += ["", f"## {name}", "", "| setting | MAE | RMSE |", "|---|---|---|"]
        order = sorted(pts, key=int) if key == "heads" else [g for g in GRID_ORDER if g in pts]
        for k in order:
            L.append(f"| {k} | {np.mean(pts[k]['mae']):.2f} | {np.mean(pts[k]['rmse']):.2f} |")
        L += ["", f"Paper: best setting {best}." if best else "", "", f"![{fig}]({fig})"]
    L += ["", "## Fig. 5 and the attention maps", ""]
    for f in data["files"]:
        if f.startswith(("fig5", "attention")):
            L += [f"![{f}]({f})", ""]
    if note:
        L += [note, ""]
    return "\n".join(L) + "\n"
