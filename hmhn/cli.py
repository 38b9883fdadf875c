"""`python -m hmhn <command>` (also the `hmhn` console script).

Commands:
    train --config experiments/hmhn_default.toml [--data-root D] [--out outputs/hmhn] [--quick]
                                        train one config; one run directory per run
    evaluate --model RUN --split test   video-level metrics of a trained run
    count [--json]                      parameters per configuration vs the paper's Table 5
    synth [--out DIR]                   write the synthetic face corpus (hmhn.data.synth)
    explain --model RUN --images DIR --out DIR
                                        per-head attention maps over faces (Fig. 1), PNG
    bench [--size 224 --batch 8 --jit]  training images/s on random data
    demo [--data-root D --out DIR]      synth + quick training + evaluation + report.md
    report --corpus C [--seeds ..] [--quick]
                                        Tables 3-5, Fig. 5-7, attention maps (make hmhn-report)

``--quick`` (or ``QUICK=1``) merges the config's ``[quick]`` table: a small input size
for CPU runs. Bad input of any kind ends with one line ``hmhn: error: <file>: <problem>``
and exit code 2; output folders are checked before any work. Progress goes to stderr
(``--quiet`` turns it off). ``hmhn COMMAND --help`` lists every option.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from depressionmlp.clikit import (HelpFormatter, add_command, add_scaling_options, add_version,
                                  guarded, quiet_tensorflow, run_command)
from depressionmlp.errors import DataError
from depressionmlp.runs import check_output_dir, check_resumable

SYNTH_CORPUS = "synthetic-faces"


def _print_json(obj) -> None:
    from depressionmlp.runs import _jsonable
    print(json.dumps(_jsonable(obj), indent=2))


def _f(v, nd=2) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    return f"{v:.{nd}f}"


def format_result_table(result: dict) -> str:
    """Video-level table: model vs the mean predictor, per split."""
    lines = [f"{result.get('name', 'model')}: video-level results",
             f"{'split':<6} {'videos':>6} {'RMSE':>7} {'MAE':>7} {'R2':>7} | "
             f"{'mean-pred RMSE':>14} {'MAE':>7}"]
    for split, r in result["splits"].items():
        mp = r.get("mean_predictor", {})
        lines.append(f"{split:<6} {r['n']:>6} {r['rmse']:>7.2f} {r['mae']:>7.2f} "
                     f"{_f(r['r2']):>7} | {_f(mp.get('rmse')):>14} {_f(mp.get('mae')):>7}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- commands

def _load_config(args) -> dict:
    from depressionmlp.runs import config_table, load_config
    cfg = load_config(args.config)
    data = config_table(cfg, "data", args.config)
    if args.data_root:
        data["data_root"] = args.data_root
    if getattr(args, "corpus", None):
        data["corpus"] = args.corpus
    train = config_table(cfg, "train", args.config)
    # command-line values win over the config's [quick] table too (--quick --epochs 10)
    quick = config_table(cfg, "quick", args.config)
    quick_train = config_table(quick, "train", args.config)
    if args.epochs is not None:
        train["epochs"] = quick_train["epochs"] = args.epochs
    if args.max_minutes is not None:
        train["max_minutes"] = quick_train["max_minutes"] = args.max_minutes
    if args.jit is not None:
        train["jit_compile"] = args.jit
    for key in ("distribute", "precision"):
        if getattr(args, key, None) is not None:
            train[key] = getattr(args, key)
    if args.quiet:
        train["verbose"] = 0
    return cfg


def cmd_train(args) -> int:
    from hmhn import train
    if args.cpu_devices is not None:              # before TensorFlow runs any op
        from depressionmlp.scaling import split_cpu
        split_cpu(args.cpu_devices)
    cfg = _load_config(args)
    quick = train.quick_requested(args.quick)
    train.resolve_config(cfg, args.config, quick=quick)   # bad values: one line, before any work
    if args.resume:
        check_resumable(args.resume)              # missing, finished, not a run: one line
        check_output_dir(args.resume, what="run directory")
    else:
        check_output_dir(args.out, what="--out folder")
    run_dir, result = train.train(cfg, out_base=args.out, resume_dir=args.resume,
                                  source=args.config, quick=quick)
    print(format_result_table(result))
    print(f"run directory: {run_dir}")
    return 0


def cmd_evaluate(args) -> int:
    from hmhn.train import evaluate_run
    out = evaluate_run(args.model, args.split, data_root=args.data_root)
    if args.json:
        _print_json(out)
    else:
        print(format_result_table({"name": out["name"], "splits": {args.split: out["metrics"]}}))
    return 0


def cmd_count(args) -> int:
    from hmhn.models import count_configurations, paper_params
    counts = count_configurations(input_size=args.input_size)
    if args.json:
        _print_json(counts)
        return 0
    print("Trainable parameters (PyTorch convention: BN moving statistics not counted)")
    print(f"{'configuration':<24} {'ours':>12} {'ours (M)':>9} {'paper (M)':>10}")
    for name, n in counts.items():
        paper = paper_params(name)
        print(f"{name:<24} {n:>12,} {n / 1e6:>9.2f} {'' if paper is None else f'{paper:.2f}':>10}")
    return 0


def cmd_synth(args) -> int:
    from hmhn.data.synth import generate_faces
    kw = {"seed": args.seed}
    for key in ("n_subjects", "frames_per_video", "size"):
        if getattr(args, key) is not None:
            kw[key] = getattr(args, key)
    out = Path(args.out) if args.out else Path(args.data_root) / SYNTH_CORPUS
    check_output_dir(out, what="corpus folder")
    manifest = generate_faces(out, **kw)
    print(f"synthetic faces written to {out}")
    if isinstance(manifest, dict) and "noise_floor" in manifest:
        print(f"noise floor: {json.dumps(manifest['noise_floor'])}")
    return 0


def cmd_explain(args) -> int:
    from hmhn.explain import explain
    paths = explain(args.model, args.images, args.out)
    for p in paths:
        print(p)
    return 0


def cmd_bench(args) -> int:
    from hmhn.train import benchmark_training
    rows = []
    for jit in ([False, True] if args.jit is None else [args.jit]):
        rows.append(benchmark_training(args.size, args.batch, jit, steps=args.steps,
                                       row=args.row))
    if args.json:
        _print_json(rows)
    else:
        for r in rows:
            print(f"row {args.row} size {r['input_size']} batch {r['batch_size']} "
                  f"jit_compile={r['jit_compile']}: {r['images_per_second']:.2f} images/s "
                  f"({r['device']}; first steps {r['warmup_seconds']:.1f} s)")
    return 0


def cmd_demo(args) -> int:
    check_output_dir(args.out, what="--out folder")
    check_output_dir(args.data_root, what="--data-root folder")
    run_demo(data_root=args.data_root, out=args.out, config=args.config,
             max_minutes=args.max_minutes)
    return 0


def cmd_report(args) -> int:
    from depressionmlp import progress
    from hmhn.report import QUICK_TRAIN, build_report
    out = args.out or f"outputs/hmhn-report/{args.corpus}"
    check_output_dir(out, what="--out folder")
    check_output_dir(args.data_root, what="--data-root folder")
    progress.set_enabled(not args.quiet)
    if args.budget and not args.quick:
        raise DataError(None, "--budget chooses the --quick budget; add --quick")
    over = dict(QUICK_TRAIN) if args.quick and args.budget != "config" else {}
    if args.jit is not None:
        over["jit_compile"] = args.jit
    r = build_report(args.corpus, data_root=args.data_root, out=out, seeds=tuple(args.seeds),
                     quick=args.quick, train_overrides=over or None,
                     log=(lambda m: None) if args.quiet else None)
    print(f"report: {r.out / 'report.md'} ({len(r.files)} files; {r.runs_trained} run(s) "
          f"trained, {r.runs_reused} reused; sum of run times {r.run_seconds:.0f} s; "
          f"wall time {r.seconds:.0f} s)")
    return 0


# --------------------------------------------------------------------------- demo

def ensure_synthetic_faces(data_root, corpus_name=SYNTH_CORPUS, **params) -> dict:
    """Generate ``<data_root>/<corpus_name>`` unless it is there with these generator
    ``params`` (:func:`hmhn.data.synth.generate_faces` arguments); return its manifest."""
    from hmhn.data.synth import generate_faces
    corpus = Path(data_root) / corpus_name
    manifest = corpus / "manifest.json"
    current = None
    if manifest.exists():
        try:
            current = json.loads(manifest.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise DataError(manifest, f"unreadable synthetic-faces manifest ({e})") from None
    have = (current or {}).get("parameters", {})
    if current is None or any(have.get(k) != v for k, v in params.items()):
        print(f"generating synthetic faces in {corpus} {params or ''}...", flush=True)
        current = generate_faces(corpus, **params)
    return current


def _floor_rmse(floor, split):
    v = floor.get(split) if isinstance(floor, dict) else None
    if isinstance(v, dict):
        v = v.get("rmse")
    if v is None and isinstance(floor, (int, float)):
        v = floor
    return v


def run_demo(data_root="data", out="outputs/demo-hmhn", config="experiments/hmhn_demo.toml",
             max_minutes=None) -> dict:
    """Synthetic faces -> train (config, CPU-sized) -> video-level report."""
    from depressionmlp.runs import load_config, write_json_atomic, write_text_atomic
    from hmhn.train import train
    cfg = load_config(config)
    corpus = cfg.setdefault("data", {}).get("corpus", SYNTH_CORPUS)
    manifest = ensure_synthetic_faces(data_root, corpus, **cfg.pop("synth", {}))
    cfg["data"].update({"corpus": corpus, "data_root": str(data_root)})
    if max_minutes is not None:
        cfg.setdefault("train", {})["max_minutes"] = max_minutes
    t0 = time.time()
    run_dir, result = train(cfg, out_base=Path(out) / "runs", source=config)
    result["wall_seconds"] = round(time.time() - t0, 1)
    result["noise_floor"] = manifest.get("noise_floor")
    result["run_dir"] = str(run_dir)
    write_json_atomic(Path(out) / "metrics.json", result)
    report = render_report(result)
    write_text_atomic(Path(out) / "report.md", report)
    print(report)
    return result


def render_report(result: dict) -> str:
    floor = result.get("noise_floor") or {}
    rows = ["| split | videos | model RMSE | model MAE | mean-predictor RMSE | "
            "mean-predictor MAE | noise floor RMSE |", "|---|---|---|---|---|---|---|"]
    for split, r in result["splits"].items():
        mp = r["mean_predictor"]
        rows.append(f"| {split} | {r['n']} | {r['rmse']:.2f} | {r['mae']:.2f} | "
                    f"{mp['rmse']:.2f} | {mp['mae']:.2f} | {_f(_floor_rmse(floor, split))} |")
    return "\n".join([
        f"# depressionkit demo: HMHN ({result['model']}) on synthetic faces", "",
        f"Video-level results (mean of frame predictions per video) of the best dev epoch "
        f"({result['best_epoch']} of {result['epochs_run']}), {result['params']:,} trainable "
        f"parameters, trained {result['train_seconds']:.0f} s on {result['device']} "
        f"({result['train_images_per_second']:.1f} images/s).", "",
        *rows, "",
        "The noise floor is the RMSE of the corpus's true latent scores against its noisy "
        "labels: no model can beat it on average. The mean predictor outputs the training "
        "mean for every video.", "",
        "```", format_result_table(result), "```", "",
        f"Run directory: `{result['run_dir']}` (config.json, best.keras, metrics.json, "
        "history.json, predictions_<split>.csv, TensorBoard logs in tb/).", ""])


# --------------------------------------------------------------------------- parser

def _bool(v: str) -> bool:
    if v.lower() in ("1", "true", "yes", "on"):
        return True
    if v.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {v!r}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hmhn", description=__doc__, formatter_class=HelpFormatter)
    add_version(p, "hmhn")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = add_command(sub, "train", "train one experiment config; one run directory per run",
                    cmd_train)
    s.add_argument("--config", required=True,
                   help="experiment TOML, e.g. experiments/hmhn_default.toml")
    s.add_argument("--data-root", help="folder holding the corpora (default: data.data_root "
                                       "of the config, else $DATA_ROOT, else ./data)")
    s.add_argument("--corpus", help="override data.corpus (synthetic-faces, avec2013, "
                                    "avec2014)")
    s.add_argument("--out", default="outputs/hmhn", help="folder for the run directory")
    s.add_argument("--quick", action="store_true",
                   help="merge the config's [quick] table (small input, CPU); also QUICK=1")
    s.add_argument("--epochs", type=int, help="override train.epochs")
    s.add_argument("--max-minutes", type=float,
                   help="wall-clock safety net for training (0 = none; default: the config's)")
    s.add_argument("--resume", help="run directory of a killed run to resume")
    s.add_argument("--jit", type=_bool, default=None, help="jit_compile true/false "
                                                           "(default: the config's, auto)")
    add_scaling_options(s)
    s.add_argument("--quiet", action="store_true",
                   help="no progress display and no per-epoch Keras output")

    s = add_command(sub, "evaluate", "video-level metrics of a trained run", cmd_evaluate)
    s.add_argument("--model", required=True, help="run directory or its best.keras")
    s.add_argument("--split", default="test", choices=["train", "dev", "test"],
                   help="split to evaluate")
    s.add_argument("--data-root", help="folder holding the corpora (default: the run's)")
    s.add_argument("--json", action="store_true", help="print JSON with per-video rows")
    s.add_argument("--quiet", action="store_true", help="no progress display")

    s = add_command(sub, "count", "parameters per configuration vs the paper's Table 5",
                    cmd_count)
    s.add_argument("--json", action="store_true", help="print JSON")
    s.add_argument("--input-size", type=int, default=224, help="input side in pixels")

    s = add_command(sub, "synth", "write the synthetic face corpus", cmd_synth)
    s.add_argument("--data-root", default="data", help="folder holding the corpora")
    s.add_argument("--out", help=f"corpus folder (default: <data-root>/{SYNTH_CORPUS})")
    s.add_argument("--n-subjects", dest="n_subjects", type=int,
                   help="number of subjects (default: the generator's)")
    s.add_argument("--frames-per-video", dest="frames_per_video", type=int,
                   help="face frames per video (default: the generator's)")
    s.add_argument("--size", type=int, help="image side in pixels (default: the generator's)")
    s.add_argument("--seed", type=int, default=0, help="random seed")

    s = add_command(sub, "explain", "per-head attention maps over faces (Fig. 1), PNG",
                    cmd_explain)
    s.add_argument("--model", required=True, help="run directory or its best.keras")
    s.add_argument("--images", required=True, help="folder of face images")
    s.add_argument("--out", required=True, help="folder for the PNGs and explain.json")

    s = add_command(sub, "bench", "training images/s on random data", cmd_bench)
    s.add_argument("--size", type=int, default=224, help="input side in pixels")
    s.add_argument("--batch", type=int, default=8, help="batch size")
    s.add_argument("--row", default="E", help="ablation row A-E")
    s.add_argument("--steps", type=int, default=5, help="timed training steps")
    s.add_argument("--jit", type=_bool, default=None, help="jit_compile true/false "
                                                           "(default: both)")
    s.add_argument("--json", action="store_true", help="print JSON")

    s = add_command(sub, "report", "Tables 3-5, Fig. 5-7 and attention maps: trains what is "
                                   "missing, writes report.md + PNGs (make hmhn-report)",
                    cmd_report)
    s.add_argument("--corpus", required=True, help="avec2013, avec2014 or synthetic-faces")
    s.add_argument("--data-root", default=os.environ.get("DATA_ROOT", "data"),
                   help="folder holding the corpora (default: $DATA_ROOT, else ./data)")
    s.add_argument("--out", help="report folder (default: outputs/hmhn-report/<corpus>); "
                                 "its runs/ subfolder keeps the run directories for reuse")
    s.add_argument("--seeds", nargs="+", type=int, default=[0], help="training seeds")
    s.add_argument("--quick", action="store_true",
                   help="the configs' [quick] tables (small input) and a smoke-test budget "
                        "(hmhn.report.QUICK_TRAIN), one seed")
    s.add_argument("--budget", choices=("smoke", "config"), default=None,
                   help="with --quick: 'smoke' (default) trains each run for "
                        "QUICK_TRAIN's 2 x 10 steps; 'config' for its [quick] table's own "
                        "budget (16 epochs of 60 steps: the README's numbers)")
    s.add_argument("--jit", type=_bool, default=None, help="jit_compile true/false "
                                                           "(default: the config's, auto)")
    s.add_argument("--quiet", action="store_true", help="no progress lines")

    s = add_command(sub, "demo", "synthetic faces -> train -> evaluate -> report", cmd_demo)
    s.add_argument("--data-root", default="data", help="folder for the synthetic faces")
    s.add_argument("--out", default="outputs/demo-hmhn", help="folder for the run and "
                                                              "report.md")
    s.add_argument("--config", default="experiments/hmhn_demo.toml", help="experiment TOML")
    s.add_argument("--max-minutes", type=float,
                   help="wall-clock safety net for training (0 = none; default: the config's)")
    return p


@guarded
def main(argv=None) -> int:
    # oneDNN convolutions: HMHN training steps ~25 % faster on CPU (measured at 64 px,
    # batch 32: 2.1 vs 2.8 s). quiet_tensorflow() would switch them off (setdefault);
    # an explicit TF_ENABLE_ONEDNN_OPTS in the environment still wins.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    quiet_tensorflow()
    args = build_parser().parse_args(argv)
    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())
