"""`make learnability`: does a model learn what is in the data, wherever it is?

Generates one small OpenFace corpus per cue (:data:`depressionmlp.synth.CUES`:
the score only in keypoint motion, only in AU variability, only in resting AU
levels, only in one face region, only in blinks, or mixed), each with
per-subject identity nuisance and known label noise, for several seeds (a new
corpus and a new training seed each), and trains on each, on the same split:

- the noise floor (true latent score vs label) and the mean predictor,
- the cue floor (:mod:`depressionmlp.cue_floor`): what a regressor reaches from the
  cue's noise-free latent signals, with ample data and at the corpus's training size,
- the classical references (StatsRidge and its sparse twin StatsLasso,
  :mod:`depressionmlp.classical`),
- DG+MG+Linear under the default protocol and under the paper's protocol,
- the Table III single-stream model (DG+Linear) on the stream that carries the cue,
- any experiment config given with ``--config`` (e.g.
  ``experiments/dg_mg_three_views.toml``), as a row of its own under its protocol,
  with its ratios to the ridge and the mean predictor: a variant measured against the
  same references on the same corpora.

Results go to ``<out>/results.json`` (one row per corpus x seed x model, reused
on a rerun, so a killed suite continues), ``<out>/cue_floors.json`` (one per cue)
and ``<out>/table.md`` (test RMSE, mean over seeds, with ratios to the ridge
baseline and the mean predictor).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

SUITE_CUES = ("motion", "au_variability", "static", "region", "blink", "mixed")
#: Corpus sizes (``--size``). "short": about 56 training, 28 dev and 28 test
#: recordings of 30-50 s, label noise sd 3 (single segments and even whole
#: recordings are weak evidence). "long": 25 training subjects (about 35
#: recordings), 150-240 s each, label noise sd 2: few identities, precise
#: recording statistics, the regime where memorising subjects is easiest.
SIZES = {
    "short": {"n_subjects": 80, "duration_s": (30, 50), "splits": (0.5, 0.25, 0.25)},
    "long": {"n_subjects": 50, "duration_s": (150, 240), "splits": (0.5, 0.25, 0.25),
             "label_noise_sd": 2.0},
}
#: generator seed = SEED_BASE[size] + suite seed (a new corpus per size and seed)
SEED_BASE = {"short": 1000, "long": 2000}
#: simulated recordings per cue floor (the long ones cost 5x more each)
CUE_FLOOR_SIMS = {"short": 3000, "long": 2000}
#: Table III's single-stream row for the stream that carries each cue.
SINGLE_STREAM = {"motion": "xy", "region": "xy", "blink": "xy",
                 "au_variability": "au", "static": "au"}


#: The ridge row fitted on train + dev: the recordings the default protocol's
#: ensemble (``train.member_split = "cross"``) learns from.
POOLED_RIDGE = "StatsRidge train+dev"


def model_rows(cue: str) -> list[tuple[str, dict, str | None]]:
    """(row name, config, protocol) per trained row of one cue."""
    ridge = {"name": "StatsRidge", "inputs": "all"}
    rows = [("StatsRidge", {"model": ridge}, "default"),
            ("StatsLasso", {"model": {"name": "StatsLasso", "inputs": "all"}}, "default"),
            # the same reference fitted on the recordings a cross ensemble learns from
            (POOLED_RIDGE, {"model": ridge, "data": {"train_splits": ["train", "dev"]}},
             "default"),
            ("DG+MG default", {"model": {"name": "DG+MG+Linear"}}, "default"),
            ("DG+MG paper", {"model": {"name": "DG+MG+Linear"}}, "paper")]
    if cue in SINGLE_STREAM:
        inputs = SINGLE_STREAM[cue]
        # the Table III row as its config runs it: the protocol's views with blocks
        rows.append((f"DG+Linear {inputs} default",
                     {"model": {"name": "DG+Linear", "inputs": inputs},
                      "train": {"member_views": [0, 1]}}, "default"))
    return rows


#: keys of an experiment config that the suite sets itself (:func:`config_row`)
SUITE_SETS = {"data": ("corpus", "data_root"), "train": ("seed",)}


def config_row(path, protocol: str | None = None) -> tuple[str, dict, str]:
    """An experiment config as a suite row: ("<its name, else the file's stem>
    <protocol>"; the config without the corpus, data root and seed, which the suite
    sets; the protocol: ``protocol``, else the config's, else "default", as ``train``
    chooses). Checked here (``train.resolve_config``), so a bad config fails before any
    corpus is built; a DataError names the file."""
    from depressionmlp.errors import DataError
    from depressionmlp.runs import load_config
    from depressionmlp.train import resolve_config
    cfg = load_config(path)
    protocol = protocol or cfg.pop("protocol", None) or "default"
    cfg.pop("protocol", None)
    name = f"{cfg.get('name', Path(path).stem)} {protocol}"
    if name in {n for n, _, _ in model_rows("static") + model_rows("motion")}:
        raise DataError(path, f"config name {name!r} is one of the suite's own rows; "
                              f"give the config another name")
    for table, keys in SUITE_SETS.items():
        if isinstance(cfg.get(table), dict):
            cfg[table] = {k: v for k, v in cfg[table].items() if k not in keys}
    resolve_config(cfg, str(path), protocol)
    return name, cfg, protocol


def corpus_root(data_root: Path, cue: str, seed: int, size: str = "short") -> Path:
    tag = "" if size == "short" else f"-{size}"
    return Path(data_root) / f"{cue}{tag}-s{seed}"


def ensure_corpus(data_root: Path, cue: str, seed: int, size: str = "short") -> dict:
    """Generate (or reuse) ``<data_root>/<cue>[-<size>]-s<seed>/synthetic``; its manifest."""
    from depressionmlp import synth
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    out = corpus_root(data_root, cue, seed, size) / "synthetic"
    return synth.generate_corpus(out, seed=SEED_BASE[size] + seed, cue=cue, **SIZES[size])


def run_row(cfg: dict, protocol: str, data_root: Path, seed: int, out: Path,
            overrides: dict | None = None) -> dict:
    """Train one row quietly; its test/dev RMSE and wall time."""
    from depressionmlp.runs import deep_update
    from depressionmlp.train import train
    cfg = deep_update({"data": {"corpus": "synthetic", "data_root": str(data_root)},
                       "train": {"seed": seed, "verbose": 0}}, cfg)
    if overrides:
        cfg = deep_update(cfg, overrides)
    t0 = time.time()
    run_dir, result = train(cfg, out_base=out, protocol=protocol)
    return {"test_rmse": result["splits"]["test"]["rmse"],
            "dev_rmse": result["splits"]["dev"]["rmse"],
            "test_mae": result["splits"]["test"]["mae"],
            "seconds": round(time.time() - t0, 1), "run_dir": str(run_dir)}


def ensure_cue_floors(out: Path, cues, size: str, n_train: dict, n_sim: int | None = None,
                      log=print, n_pooled: dict | None = None) -> dict:
    """Compute (or reuse) ``<out>/cue_floors.json``: one cue floor per cue.

    ``n_train`` maps cue -> training recordings of its corpus (the floor at size),
    ``n_pooled`` cue -> its train + dev recordings (the floor at the size the
    default's cross-fitted models learn from; a saved floor without it is redone).
    """
    from depressionmlp.cue_floor import cue_floor
    path = Path(out) / "cue_floors.json"
    floors = json.loads(path.read_text()) if path.exists() else {}
    spec = SIZES[size]
    for cue in cues:
        if cue in floors and (n_pooled is None or "floor_at_pooled" in floors[cue]):
            continue
        t0 = time.time()
        pooled = None if n_pooled is None else n_pooled[cue]
        floors[cue] = cue_floor(cue, n_train[cue], duration_s=spec["duration_s"],
                                label_noise_sd=spec.get("label_noise_sd", 3.0),
                                n_sim=n_sim or CUE_FLOOR_SIMS[size], n_pooled=pooled)
        f = floors[cue]
        log(f"{cue:<22} cue floor {f['floor']:6.2f}, at {n_train[cue]} training recordings "
            f"{f['floor_at_size']:6.2f}"
            + (f", at {pooled} (train + dev) {f['floor_at_pooled']:6.2f}" if pooled else "")
            + f"  ({f['floor'] / f['mean_predictor']:.2f}x its mean predictor "
              f"{f['mean_predictor']:.2f})  {time.time() - t0:.0f} s")
        path.write_text(json.dumps(floors, indent=1) + "\n")
    return floors


def run_suite(out="outputs/learnability", data_root="data/learnability", cues=SUITE_CUES,
              seeds=(0, 1, 2), rows=None, overrides=None, log=print, size="short",
              configs=(), protocol=None) -> dict:
    """Run (or continue) the suite; returns the results dict also written to disk.
    ``configs``: experiment config files, each a row of its own (:func:`config_row`,
    under ``protocol`` where given), run whatever ``rows`` selects."""
    extra = [config_row(c, protocol) for c in configs]
    from_config = {name: str(path) for (name, _, _), path in zip(extra, configs)}
    out, data_root = Path(out), Path(data_root)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    splits = {cue: [r["split"] for r in ensure_corpus(data_root, cue, seeds[0], size)["recordings"]]
              for cue in cues}
    n_train = {cue: s.count("train") for cue, s in splits.items()}
    n_pooled = {cue: s.count("train") + s.count("dev") for cue, s in splits.items()}
    floors = ensure_cue_floors(out, cues, size, n_train, log=log, n_pooled=n_pooled)
    for cue in cues:
        for seed in seeds:
            manifest = ensure_corpus(data_root, cue, seed, size)
            key = f"{cue}/s{seed}"
            entry = results.setdefault(key, {"cue": cue, "seed": seed, "rows": {}})
            entry["noise_floor"] = manifest["noise_floor"]["test"]["rmse"]
            entry["mean_predictor"] = manifest["mean_predictor_rmse"]["test"]["rmse"]
            for name, cfg, row_protocol in model_rows(cue) + extra:
                if rows is not None and name not in rows and name not in from_config:
                    continue
                if name in entry["rows"]:
                    continue
                root = corpus_root(data_root, cue, seed, size)
                r = run_row(cfg, row_protocol, root, seed, out / "runs" / root.name,
                            overrides)
                if name in from_config:
                    r["config"] = from_config[name]
                entry["rows"][name] = r
                log(f"{key:<22} {name:<24} test RMSE {r['test_rmse']:6.2f}  "
                    f"(mean {entry['mean_predictor']:.2f}, floor {entry['noise_floor']:.2f})"
                    f"  {r['seconds']:.0f} s")
                path.write_text(json.dumps(results, indent=1) + "\n")
    path.write_text(json.dumps(results, indent=1) + "\n")
    (out / "table.md").write_text(to_markdown(results, floors))
    return results


def summarize(results: dict) -> dict:
    """Per cue: mean over seeds of every row, and the ratios the targets use."""
    by_cue: dict = {}
    for entry in results.values():
        c = by_cue.setdefault(entry["cue"], {"seeds": [], "floor": [], "mean": [], "rows": {}})
        c["seeds"].append(entry["seed"])
        c["floor"].append(entry["noise_floor"])
        c["mean"].append(entry["mean_predictor"])
        for name, r in entry["rows"].items():
            row = c["rows"].setdefault(name, {"rmse": [], "seconds": []})
            if "config" in r:
                row["config"] = r["config"]
            row["rmse"].append(r["test_rmse"])
            row["seconds"].append(r["seconds"])
    return by_cue


def to_markdown(results: dict, floors: dict | None = None) -> str:
    """The suite's table; ``floors`` (cue -> :func:`cue_floor` result) adds its column."""
    by_cue = summarize(results)
    floors = floors or {}
    names = []
    for c in by_cue.values():
        names += [n for n in c["rows"] if n not in names]
    pooled = POOLED_RIDGE in names
    lasso = "StatsLasso" in names
    from_config = [n for n in names if any("config" in c["rows"].get(n, {})
                                           for c in by_cue.values())]
    head = ("| corpus (cue) | seeds | noise floor | cue floor (at size) | cue floor / its mean "
            "predictor | mean predictor | "
            + " | ".join(names) + " | DG+MG default / ridge |"
            + (" DG+MG default / ridge train+dev |" if pooled else "")
            + (" DG+MG default / lasso |" if lasso else "")
            + " DG+MG default / mean |"
            + "".join(f" {n} / ridge | {n} / mean |" for n in from_config))
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for cue, c in by_cue.items():
        cells = []
        for n in names:
            r = c["rows"].get(n)
            if r is None:
                cells.append("-")
            elif len(r["rmse"]) == 1:
                cells.append(f"{r['rmse'][0]:.2f} (1 seed, {r['seconds'][0]:.0f} s)")
            else:
                cells.append(f"{np.mean(r['rmse']):.2f} ± {np.std(r['rmse']):.2f} "
                             f"({np.mean(r['seconds']):.0f} s)")
        ridge = c["rows"].get("StatsRidge")
        dg = c["rows"].get("DG+MG default")
        ratio_r = (f"{np.mean(dg['rmse']) / np.mean(ridge['rmse']):.2f}"
                   if ridge and dg else "-")
        if pooled:
            p = c["rows"].get(POOLED_RIDGE)
            ratio_r += (f" | {np.mean(dg['rmse']) / np.mean(p['rmse']):.2f}"
                        if p and dg else " | -")
        if lasso:
            la = c["rows"].get("StatsLasso")
            ratio_r += (f" | {np.mean(dg['rmse']) / np.mean(la['rmse']):.2f}"
                        if la and dg else " | -")
        ratio_m = f"{np.mean(dg['rmse']) / np.mean(c['mean']):.2f}" if dg else "-"
        for n in from_config:                       # a config row: its own two ratios
            x = c["rows"].get(n)
            ratio_m += (f" | {np.mean(x['rmse']) / np.mean(ridge['rmse']):.2f}"
                        if x and ridge else " | -")
            ratio_m += f" | {np.mean(x['rmse']) / np.mean(c['mean']):.2f}" if x else " | -"
        cue_cell = floor_cells(floors.get(cue))
        lines.append(f"| {cue} | {len(c['seeds'])} | {np.mean(c['floor']):.2f} | {cue_cell} | "
                     f"{np.mean(c['mean']):.2f} | " + " | ".join(cells)
                     + f" | {ratio_r} | {ratio_m} |")
    lines.append("")
    lines.append("Test RMSE at recording level, mean ± sd over seeds (each seed a new "
                 "corpus and a new training seed), with the mean wall time per run. "
                 "Cue floor: a regressor on the cue's noise-free latent signals, fitted "
                 "on ample simulated recordings (in brackets: ridge on the cue's channel "
                 "fitted on the corpus's number of training recordings, and on its train + "
                 "dev recordings); as a ratio, to the mean predictor on the same simulated "
                 "recordings, which is the one to hold against a row's / mean ratio (a "
                 "corpus's own test recordings give a different mean predictor); see "
                 "depressionmlp/cue_floor.py.")
    return "\n".join(lines) + "\n"


def floor_cells(f: dict | None) -> str:
    """The two table cells of one cue floor: ``floor (at size / at pooled size)`` and
    the same as ratios to the simulation's mean predictor."""
    if not f:
        return "- | -"
    keys = [k for k in ("floor_at_size", "floor_at_pooled") if k in f]
    sizes = " / ".join(f"{f[k]:.2f}" for k in keys)
    cell = f"{f['floor']:.2f} ({sizes})"
    if "mean_predictor" not in f:
        return cell + " | -"
    ratios = " / ".join(f"{f[k] / f['mean_predictor']:.2f}x" for k in keys)
    return cell + f" | {f['floor'] / f['mean_predictor']:.2f}x ({ratios})"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m depressionmlp learnability",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="outputs/learnability")
    ap.add_argument("--data-root", default="data/learnability")
    ap.add_argument("--cues", nargs="+", default=list(SUITE_CUES))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--rows", nargs="+", help="only these rows (default: all)")
    ap.add_argument("--size", choices=sorted(SIZES), default="short",
                    help="corpus size (see SIZES; default: short); use a separate --out")
    ap.add_argument("--config", nargs="+", default=[], metavar="TOML",
                    help="experiment configs to add as rows (each under its protocol)")
    ap.add_argument("--protocol", choices=["default", "paper"],
                    help="the protocol of the --config rows (default: each config's own)")
    args = ap.parse_args(argv)
    t0 = time.time()
    results = run_suite(args.out, args.data_root, args.cues, args.seeds, args.rows,
                        size=args.size, configs=args.config, protocol=args.protocol)
    floors = json.loads((Path(args.out) / "cue_floors.json").read_text())
    print(to_markdown(results, floors))
    print(f"suite wall time {time.time() - t0:.0f} s; results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
