"""`make demo`: bundled synthetic corpus -> DepressionMLP -> recording-level report.

Writes ``<out>/report.md`` and ``<out>/metrics.json`` (model, mean predictor and
the corpus's noise floor per split) next to the run directory under ``<out>/runs``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from depressionmlp import classical
from depressionmlp.data.types import AUTO_PHASES, SegmentSettings
from depressionmlp.errors import DataError
from depressionmlp.runs import load_config, write_json_atomic, write_text_atomic


def ensure_synthetic(data_root, **params) -> dict:
    """Generate ``<data_root>/synthetic`` unless it already holds this generator's corpus.

    A corpus written by an older version of the generator (or with other
    parameters) is replaced; a folder holding anything else is refused.
    ``params`` go to :func:`depressionmlp.synth.generate_corpus`.
    """
    from depressionmlp import synth
    corpus = Path(data_root) / "synthetic"
    try:
        manifest = json.loads((corpus / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError):
        manifest = None
    ours = isinstance(manifest, dict) and manifest.get("generator") == "depressionmlp.synth"
    t0 = time.time()
    try:
        result = synth.generate_corpus(corpus, **params)
    except DataError:
        if not ours:
            raise
        print(f"replacing the synthetic corpus in {corpus} (older generator or parameters)",
              flush=True)
        result = synth.generate_corpus(corpus, force=True, **params)
    if time.time() - t0 > 1.0:
        print(f"wrote the bundled synthetic corpus to {corpus}", flush=True)
    return result


def run_demo(data_root="data", out="outputs/demo", config="experiments/demo.toml",
             max_minutes=None) -> dict:
    from depressionmlp.cli import format_result_table
    from depressionmlp.train import train

    manifest = ensure_synthetic(data_root)
    cfg = load_config(config)
    cfg.setdefault("data", {}).update({"corpus": "synthetic", "data_root": str(data_root)})
    if max_minutes is not None:
        cfg.setdefault("train", {})["max_minutes"] = max_minutes
    t0 = time.time()
    run_dir, result = train(cfg, out_base=Path(out) / "runs", source=config)
    result["wall_seconds"] = round(time.time() - t0, 1)
    result["baselines"] = []
    for name in classical.MODEL_NAMES:        # the classical references, beside the model
        ref_cfg = {"name": name, "model": {"name": name, "inputs": "all"},
                   "data": dict(cfg["data"])}
        _, ref = train(ref_cfg, out_base=Path(out) / "runs", source=config)
        result["baselines"].append({"name": name, "splits": ref["splits"]})
    result["baseline"] = result["baselines"][0]
    floor = manifest.get("noise_floor", {})
    result["noise_floor"] = floor
    result["run_dir"] = str(run_dir)
    write_json_atomic(Path(out) / "metrics.json", result)
    run_cfg = json.loads((Path(run_dir) / "config.json").read_text())
    report = render_report(result, manifest, format_result_table(result), run_cfg)
    write_text_atomic(Path(out) / "report.md", report)
    print(report)
    return result


def _floor(floor, split):
    v = floor.get(split) if isinstance(floor, dict) else None
    if isinstance(v, dict):
        v = v.get("rmse")
    return v


def _view_list(views: list[int]) -> str:
    """'view 2', 'views 2-4' (consecutive) or 'views 0, 2'."""
    if len(views) == 1:
        return f"view {views[0]}"
    if views == list(range(views[0], views[-1] + 1)):
        return f"views {views[0]}-{views[-1]}"
    return "views " + ", ".join(map(str, views))


def settings_line(cfg: dict) -> str:
    """The protocol and the settings that differ from the paper's, in words."""
    from depressionmlp.train import scaled_steps
    t, m = cfg.get("train", {}), cfg.get("model", {})
    seg = cfg.get("data", {}).get("segment", {})
    notes = []
    if m.get("keypoint_frame", "image") != "image":
        notes.append("keypoints in the segment's face frame [choice]")
    if m.get("keypoint_levels", "keep") == "drop":
        notes.append("keypoints minus their segment mean (motion only) [choice]")
    elif m.get("keypoint_levels", "keep") == "speed":
        notes.append("keypoints as their frame-to-frame speed [choice]")
    elif m.get("keypoint_levels", "keep") == "energy":
        notes.append("keypoints minus their segment mean, with their mean speed as "
                     "level [choice]")
    if m.get("au_levels", "keep") == "interleave":
        notes.append("AUs at their resting levels, Eq. 3's interpolated AU columns as "
                     "motion with their mean speed as level [choice]")
    if m.get("standardize") == "split":
        notes.append("resting level and motion standardised apart with training "
                     "statistics [choice]")
    elif m.get("standardize"):
        notes.append("per-column standardisation with training statistics [choice]")
    if m.get("column_jitter"):
        shared = (f", shared by each run of {m['column_jitter_group']} draws"
                  if m.get("column_jitter_group", 1) > 1 else "")
        cj = m["column_jitter"]
        sd = (", ".join(f"{k} {v:g}" for k, v in cj.items()) if isinstance(cj, dict)
              else f"{cj:g}")
        notes.append(f"training-only column offsets, sd {sd}{shared} [choice]")
    if m.get("column_dropout"):
        notes.append(f"training-only column dropout, rate {m['column_dropout']:g} [choice]")
    if m.get("column_gate_l1"):
        notes.append(f"a trained gain per column under an L1 penalty of "
                     f"{m['column_gate_l1']:g} [choice]")
    if m.get("head_hidden"):
        notes.append(f"Eq. 19 read out through a hidden layer of {m['head_hidden']} GELU "
                     "units per column (paper: one linear C1) [choice]")
    if m.get("output_activation", "relu") != "relu":
        notes.append(f"Eq. 20 with a {m['output_activation']} output (paper: ReLU) [choice]")
    if m.get("score_scale", 1.0) != 1.0 or m.get("score_offset", 0.0) != 0.0:
        notes.append("Eq. 20 on standardised labels (x training sd + training mean) [choice]")
    if t.get("loss", "segment") == "recording":
        notes.append(f"Eq. 21 on each recording's mean over its {t.get('per_recording', 4)} "
                     "draws (paper: per segment, 4 draws) [choice]")
    if t.get("learning_rate", 2e-4) != 2e-4:
        notes.append(f"learning rate {t['learning_rate']:g} (paper: 2e-4)")
    if t.get("lr_schedule", "constant") != "constant":
        notes.append(f"{t['lr_schedule']} learning-rate decay")
    if t.get("steps"):
        scale = t.get("member_step_scale") or []
        budgets = {}                       # steps -> the views that train them
        for v, x in enumerate(scale):
            if scaled_steps(t["steps"], x) != t["steps"]:
                budgets.setdefault(scaled_steps(t["steps"], x), []).append(v)
        other = [f"{_view_list(views)}: {steps}" for steps, views in budgets.items()]
        notes.append(f"{t['steps']} steps" + (f" a model ({', '.join(other)})" if other else "")
                     + f", dev evaluation every {t.get('eval_every')} steps")
    if t.get("calibrate", "none") != "none":
        where = ("each model's held-out fold" if t.get("member_split", "fixed") == "cross"
                 else "dev")
        notes.append(f"score {t['calibrate']} fitted on {where} after training [choice]")
    views = len(t.get("member_model", []))
    fit = t.get("member_weights", "equal") == "fit"
    if t.get("ensemble", 1) > 1:
        notes.append(f"{t['ensemble'] * views} such models ({views} views x {t['ensemble']} "
                     "folds) trained with different seeds (paper: one) [choice]" if fit else
                     f"the mean of {t['ensemble']} such models trained with different seeds "
                     "(paper: one) [choice]")
        if t.get("member_split", "fixed") == "cross":
            notes.append(f"model k trains on {t['ensemble'] - 1} of {t['ensemble']} subject "
                         "folds of train + dev and is selected and calibrated on fold k; dev "
                         "is scored out of fold [choice]")
        if fit:
            notes.append(f"each of the {views} views of train.member_model "
                         f"({_describe_views(t['member_model'])}) trained on every "
                         "fold, the views weighted by a convex least-squares fit to the "
                         "pooled out-of-fold scores [choice]")
        elif views:
            notes.append(f"model k reads the input as view k mod {views} of "
                         "train.member_model [choice]")
        if t.get("recording_link", "identity") == "quadratic":
            notes.append("each recording's score through a nondecreasing quadratic fitted "
                         "to the pooled out-of-fold scores (paper: the mean of its segment "
                         "scores) [choice]")
    if seg.get("center", "none") != "none":
        notes.append(f"inputs centred per {seg['center']} [choice]")
    phases = seg.get("phases", 1)
    if phases == AUTO_PHASES:
        below = seg.get("phases_below", SegmentSettings.phases_below)
        notes.append(f"segments cut from all five down-sampling phases of each recording "
                     f"with fewer than {below} at phase 0 (paper: every 5th frame from the "
                     "first) [choice]")
    elif phases != 1:
        notes.append(f"segments cut from {phases} down-sampling phases (paper: every 5th "
                     "frame from the first) [choice]")
    name = cfg.get("protocol", "default")
    if not notes:
        return f"Protocol `{name}`: the paper's (Sec. IV-B)."
    return (f"Protocol `{name}` (experiments/protocols/{name}.toml); what differs from the "
            "paper's: " + "; ".join(notes) + ".")


def _describe_views(entries: list[dict]) -> str:
    """``[{}, {"au_levels": "interleave"}]`` -> "view 0 the [model] above, view 1
    au_levels = interleave"."""
    def value(v):
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} {x:g}" for k, x in v.items()) + "}"
        return str(v).lower() if isinstance(v, bool) else f"{v}"       # as TOML writes it
    return ", ".join(f"view {i} " + ("; ".join(f"{k} = {value(v)}" for k, v in e.items())
                                     or "the [model] above") for i, e in enumerate(entries))


def render_report(result: dict, manifest: dict, table: str, cfg: dict | None = None) -> str:
    floor = result.get("noise_floor", {})
    refs = result.get("baselines") or ([result["baseline"]] if "baseline" in result else [])
    rows = ["| split | recordings | model RMSE | model MAE | "
            + "".join(f"{b['name']} RMSE | " for b in refs)
            + "mean-predictor RMSE | noise floor RMSE |", "|---" * (6 + len(refs)) + "|"]
    for split, r in result["splits"].items():
        nf = _floor(floor, split)
        cells = "".join(f"{'-' if v is None else f'{v:.2f}'} | " for v in
                        (b["splits"].get(split, {}).get("rmse") for b in refs))
        name = f"{split} (out of fold)" if r.get("out_of_fold") else split
        rows.append(f"| {name} | {r['n']} | {r['rmse']:.2f} | {r['mae']:.2f} | {cells}"
                    f"{r['mean_predictor']['rmse']:.2f} | "
                    f"{'-' if nf is None else f'{nf:.2f}'} |")
    if result.get("ensemble", 1) > 1:
        steps = ", ".join(f"{m['best_step']} of {m['steps_run']}" for m in result["members"])
        how = (f"a weighted mean of {result['ensemble']} models (view weights "
               + " / ".join(f"{w:.2f}" for w in result["view_weights"])
               + ", fitted out of fold)" if "view_weights" in result
               else f"the mean of {result['ensemble']} models")
        link = result.get("recording_link") or {}
        if link.get("kind") == "quadratic":
            how += (", each recording's score through a nondecreasing quadratic fitted out "
                    "of fold (train.recording_link)")
        elif "reason" in link:
            how += f", the recording link left at the identity ({link['reason']})"
        total, first = result.get("params_total"), result["params"]
        size = (f"{first:,} parameters each" if total in (None, first * result["ensemble"])
                else f"{total:,} parameters in all ({first:,} in the first)")  # views differ
        what = f"{how}, each at its best dev evaluation (step {steps}), {size}"
    else:
        what = (f"the best dev evaluation (step {result['best_step']} of "
                f"{result['steps_run']}), {result['params']:,} parameters")
    return "\n".join([
        f"# depressionkit demo: {result['model']} on the bundled synthetic corpus", "",
        f"Recording-level results of {what}, trained "
        f"{result['train_seconds']:.0f} s on this machine.", "",
        settings_line(cfg or {}), "",
        *rows, "",
        "The noise floor is the RMSE of the corpus's true latent scores against its noisy "
        "labels: no model can beat it on average. The mean predictor outputs the training "
        "mean for every recording. StatsRidge and StatsLasso are the classical references: "
        "hand-crafted per-recording statistics of the same segments + ridge regression, "
        "or + the lasso, which keeps the few statistics that carry a cue.", "",
        "```", table, "```", "",
        f"Run directory: `{result['run_dir']}` (config.json, best.keras, metrics.json, "
        "predictions_<split>.csv, "
        + ("members/<k>/ with each model's own run and TensorBoard logs)."
           if result.get("ensemble", 1) > 1 else "TensorBoard logs in tb/)."), ""])
