"""`python -m depressionmlp <command>` (also the `depressionmlp` console script).

Commands:
    inspect FILE [--json]                      validate one OpenFace file as training reads it
    synth --out DIR [--small] [--seed S]       write the bundled synthetic corpus
    train --config experiments/X.toml          train one config; one run directory per run
    evaluate --model RUN --split dev|test      recording-level metrics of a trained run
    predict --model RUN --openface FILE        score one recording
    count [--json]                             params and FLOPs per model (Table VI)
    export --model RUN --out DIR [--tflite]    SavedModel (and TFLite) for deployment
    summarize --runs DIR                       one table over run directories (+ Friedman test)
    report --corpus C [--seeds ..] [--quick]   every table and figure of the paper (make report)
    demo                                       synth (if needed) + train + evaluate + report

Bad input of any kind ends with one line ``depressionmlp: error: <file>: <problem>``
and exit code 2; output folders are checked before any work. Progress goes to stderr
(``--quiet`` turns it off). ``depressionmlp COMMAND --help`` lists every option.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from depressionmlp.clikit import (HelpFormatter, add_command, add_scaling_options,
                                  add_version, guarded, quiet_tensorflow, run_command)
from depressionmlp.errors import DataError
from depressionmlp.runs import check_output_dir, check_output_file


def _print_json(obj) -> None:
    from depressionmlp.runs import _jsonable
    print(json.dumps(_jsonable(obj), indent=2))


# --------------------------------------------------------------------------- commands

def cmd_inspect(args) -> int:
    from depressionmlp.data.inspect import inspect_recording
    info = inspect_recording(args.file)
    if args.json:
        _print_json(info)
        return 0
    for k, v in info.items():
        if isinstance(v, (list, tuple)) and len(v) == 2 and all(
                isinstance(x, (int, float)) for x in v):
            v = f"{v[0]:.1f} .. {v[1]:.1f}"
        elif isinstance(v, list):
            v = ", ".join(map(str, v))
        print(f"{k:>16}: {v}")
    return 0


def cmd_synth(args) -> int:
    from depressionmlp import synth
    check_output_dir(args.out, what="corpus folder")
    argv = ["--out", args.out, "--seed", str(args.seed)]
    if args.subjects is not None:
        argv += ["--subjects", str(args.subjects)]
    if args.small:
        argv.append("--small")
    if args.force:
        argv.append("--force")
    if args.cue != "dynamic":
        argv += ["--cue", args.cue]
    return synth.main(argv) or 0


def cmd_learnability(args) -> int:
    from depressionmlp import learnability
    check_output_dir(args.out, what="--out folder")
    argv = ["--out", args.out, "--data-root", args.data_root, "--cues", *args.cues,
            "--seeds", *map(str, args.seeds), "--size", args.size]
    if args.rows:
        argv += ["--rows", *args.rows]
    if args.config:
        argv += ["--config", *args.config]
    if args.protocol:
        argv += ["--protocol", args.protocol]
    return learnability.main(argv) or 0


def _load_toml_config(path, args) -> dict:
    from depressionmlp.runs import config_table, load_config
    cfg = load_config(path)
    data = config_table(cfg, "data", path)
    if args.data_root:
        data["data_root"] = args.data_root
    if args.corpus:
        data["corpus"] = args.corpus
    if getattr(args, "strict", False):
        data["strict_leakage"] = True
    train = config_table(cfg, "train", path)
    if args.epochs is not None:
        train["epochs"] = args.epochs
    if args.max_minutes is not None:
        train["max_minutes"] = args.max_minutes
    if args.jit:
        train["jit_compile"] = True
    if getattr(args, "steps", None) is not None:
        train["steps"] = args.steps
    for key in ("distribute", "precision"):
        if getattr(args, key, None) is not None:
            train[key] = getattr(args, key)
    if args.quiet:
        train["verbose"] = 0
    return cfg


def cmd_train(args) -> int:
    from depressionmlp import train
    if args.cpu_devices is not None:              # before TensorFlow runs any op
        from depressionmlp.scaling import split_cpu
        split_cpu(args.cpu_devices)
    cfg = _load_toml_config(args.config, args)
    train.resolve_config(cfg, args.config)           # bad values: one line, before any work
    if args.resume:
        train.check_resumable(args.resume)        # missing, finished, not a run: one line
        check_output_dir(args.resume, what="run directory")
    else:
        check_output_dir(args.out, what="--out folder")
    run_dir, result = train.train(cfg, out_base=args.out, resume_dir=args.resume,
                                  source=args.config)
    print(format_result_table(result))
    print(f"run directory: {run_dir}")
    return 0


def cmd_evaluate(args) -> int:
    from depressionmlp import train
    model, cfg = train.load_run(args.model)
    if args.data_root:
        cfg["data"]["data_root"] = args.data_root
    settings = train.SegmentSettings.from_dict(cfg["resolved"]["segment"])
    splits = list(dict.fromkeys(list(cfg["data"]["train_splits"]) + [args.split]))
    tables = train.load_tables(cfg, settings, splits)
    train_labels = train.SegmentTable.concat(
        [tables[s] for s in cfg["data"]["train_splits"]]).recording_labels
    res, rows = train.evaluate_table(model, tables[args.split], cfg["resolved"]["streams"],
                                     cfg["resolved"]["scale"], train_labels=train_labels,
                                     link=cfg["resolved"].get("recording_link"))
    if (cfg["train"].get("member_split") == "cross"
            and args.split == cfg["data"]["select_split"]):
        print(f"note: the ensemble's models trained on most of '{args.split}' "
              "(train.member_split = 'cross'); its out-of-fold metrics are in the run's "
              "metrics.json", file=sys.stderr)
    out = {"model": str(args.model), "split": args.split, "metrics": res, "recordings": rows}
    if args.json:
        _print_json(out)
    else:
        print(format_result_table({"name": cfg["name"], "splits": {args.split: res}}))
    return 0


def cmd_predict(args) -> int:
    from depressionmlp import train
    from depressionmlp.prediction import describe, format_text
    model, cfg = train.load_run(args.model)
    results = [describe(train.predict_file(model, cfg, f), cfg, args.model)
               for f in args.openface]
    for r in results:
        for w in r["warnings"]:
            print(f"warning: {r['file']}: {w}", file=sys.stderr)
    if args.json:
        _print_json(results if len(results) > 1 else results[0])
        return 0
    for r in results:
        print("\n".join(format_text(r)))
    return 0


def cmd_count(args) -> int:
    from depressionmlp.models import count_all
    counts = count_all(segment_length=args.segment_length)
    if args.json:
        _print_json(counts)
        return 0
    print(f"{'model':<16} {'params':>10} {'FLOPs':>12}")
    for name, c in counts.items():
        print(f"{name:<16} {c['params']:>10,} {c['flops']:>12,}")
    return 0


def cmd_export(args) -> int:
    from depressionmlp.export import export_run
    check_output_dir(args.out, what="export folder", empty=True)
    paths = export_run(args.model, args.out, tflite=args.tflite)
    for kind, p in paths.items():
        print(f"{kind}: {p}")
    return 0


def cmd_summarize(args) -> int:
    from depressionmlp.summary import to_markdown, write_summary
    stem = args.out or str(Path(args.runs) / "summary")
    for ext in (".json", ".md"):
        check_output_file(stem + ext, what="summary file")
    summary = write_summary(args.runs, stem)
    print(to_markdown(summary), end="")
    return 0


def cmd_report(args) -> int:
    from depressionmlp import progress
    from depressionmlp.report import build_report
    out = args.out or f"outputs/report/{args.corpus}"
    check_output_dir(out, what="--out folder")
    check_output_dir(args.data_root, what="--data-root folder")
    log = (lambda m: None) if args.quiet else None
    progress.set_enabled(not args.quiet)
    r = build_report(args.corpus, data_root=args.data_root, out=out, seeds=tuple(args.seeds),
                     protocol=args.protocol, quick=args.quick,
                     train_overrides={"jit_compile": True} if args.jit else None, log=log)
    print(f"report: {r.out / 'report.md'} ({len(r.files)} files; {r.runs_trained} run(s) "
          f"trained, {r.runs_reused} reused; sum of run times {r.run_seconds:.0f} s; "
          f"wall time {r.seconds:.0f} s)")
    return 0


def cmd_demo(args) -> int:
    from depressionmlp.demo import run_demo
    check_output_dir(args.out, what="--out folder")
    check_output_dir(args.data_root, what="--data-root folder")
    run_demo(data_root=args.data_root, out=args.out, config=args.config,
             max_minutes=args.max_minutes)
    return 0


# --------------------------------------------------------------------------- output

def format_result_table(result: dict) -> str:
    """Recording-level table: model vs the mean predictor, per split."""
    lines = [f"{result.get('name', 'model')}: recording-level results",
             f"{'split':<6} {'n':>4} {'RMSE':>7} {'MAE':>7} {'R2':>7} {'SMAPE':>7} "
             f"{'acc':>6} {'AUC':>6} | {'mean-pred RMSE':>14} {'MAE':>7}"]
    for split, r in result["splits"].items():
        mp = r.get("mean_predictor", {})
        lines.append(
            f"{split:<6} {r['n']:>4} {r['rmse']:>7.2f} {r['mae']:>7.2f} {_f(r['r2']):>7} "
            f"{r['smape']:>7.1f} {r['accuracy_classes']:>6.2f} {_f(r['roc_auc_2class']):>6} | "
            f"{_f(mp.get('rmse')):>14} {_f(mp.get('mae')):>7}")
    return "\n".join(lines)


def _f(v, nd=2) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    return f"{v:.{nd}f}"


# --------------------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="depressionmlp", description=__doc__.split("\n\n")[0]
                                + "\n\n" + __doc__.split("\n\n")[1],
                                formatter_class=HelpFormatter)
    add_version(p, "depressionmlp")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = add_command(sub, "inspect", "validate one OpenFace CSV / DAIC-WOZ CLNF file as "
                                    "training reads it", cmd_inspect, needs_tf=False)
    s.add_argument("file", help="an OpenFace 2.x CSV or a DAIC-WOZ NNN_CLNF_features.txt")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")

    s = add_command(sub, "synth", "write the bundled synthetic OpenFace corpus", cmd_synth,
                    needs_tf=False)
    s.add_argument("--out", default="data/synthetic", help="corpus folder to write")
    s.add_argument("--subjects", type=int, help="number of subjects (default: the "
                                                "generator's 80, or 12 with --small)")
    s.add_argument("--seed", type=int, default=0, help="random seed")
    s.add_argument("--small", action="store_true", help="a small corpus, for tests")
    s.add_argument("--force", action="store_true", help="replace a non-empty --out")
    s.add_argument("--cue", default="dynamic", choices=["dynamic", "motion", "au_variability",
                                                         "static", "region", "blink", "mixed"],
                   help="where the score enters the data (default: %(default)s)")

    s = add_command(sub, "train", "train one experiment config; one run directory per run",
                    cmd_train)
    s.add_argument("--config", required=True, help="experiment TOML, e.g. experiments/demo.toml")
    s.add_argument("--data-root", help="folder holding the corpora (default: data.data_root "
                                       "of the config, else $DATA_ROOT, else ./data)")
    s.add_argument("--corpus", help="override data.corpus (avec2013, avec2014, daic, "
                                    "synthetic)")
    s.add_argument("--out", default="outputs/runs", help="folder for the run directory")
    s.add_argument("--protocol", choices=["default", "paper"],
                   help="training protocol (experiments/protocols/<name>.toml); default: "
                        "the config's `protocol` key, else 'default'")
    s.add_argument("--steps", type=int, help="override train.steps (the step budget)")
    s.add_argument("--epochs", type=int, help="override train.epochs")
    s.add_argument("--max-minutes", type=float, help="override train.max_minutes "
                                                     "(wall-clock budget)")
    s.add_argument("--resume", help="run directory of a killed run to resume")
    s.add_argument("--jit", action="store_true", help="jit_compile=True (XLA)")
    add_scaling_options(s)
    s.add_argument("--strict", action="store_true",
                   help="a subject in more than one split is an error, not a warning")
    s.add_argument("--quiet", action="store_true",
                   help="no progress display and no per-epoch Keras output")

    s = add_command(sub, "evaluate", "recording-level metrics of a trained run", cmd_evaluate)
    s.add_argument("--model", required=True, help="run directory or its best.keras")
    s.add_argument("--split", default="test", choices=["train", "dev", "test"],
                   help="split to evaluate")
    s.add_argument("--data-root", help="folder holding the corpora (default: the run's)")
    s.add_argument("--json", action="store_true", help="print JSON with per-recording rows")
    s.add_argument("--quiet", action="store_true", help="no progress display")

    s = add_command(sub, "predict", "score OpenFace recordings with a trained run",
                    cmd_predict)
    s.add_argument("--model", required=True, help="run directory or its best.keras")
    s.add_argument("--openface", required=True, nargs="+", metavar="FILE",
                   help="OpenFace CSV(s) or DAIC-WOZ NNN_CLNF_features.txt file(s)")
    s.add_argument("--json", action="store_true", help="print JSON (one object per file)")

    s = add_command(sub, "count", "params and FLOPs per model (Table VI)", cmd_count)
    s.add_argument("--segment-length", type=int, default=18, help="M, frames per segment")
    s.add_argument("--json", action="store_true", help="print JSON")

    s = add_command(sub, "export", "SavedModel (+ TFLite with --tflite) export of a "
                                   "trained run", cmd_export)
    s.add_argument("--model", required=True, help="run directory or its best.keras")
    s.add_argument("--out", required=True, help="new (or empty) export folder")
    s.add_argument("--tflite", action="store_true", help="also write model.tflite")

    s = add_command(sub, "summarize", "one table (md + JSON) over run directories "
                                      "(+ Friedman test)", cmd_summarize, needs_tf=False)
    s.add_argument("--runs", required=True, help="folder holding run directories")
    s.add_argument("--out", help="output stem: writes <out>.md and <out>.json "
                                 "(default: <runs>/summary)")

    s = add_command(sub, "learnability", "the learnability suite: generated corpora x models "
                                         "x seeds (make learnability)", cmd_learnability)
    s.add_argument("--out", default="outputs/learnability", help="results folder")
    s.add_argument("--data-root", default="data/learnability", help="generated corpora")
    s.add_argument("--cues", nargs="+", default=["motion", "au_variability", "static",
                                                 "region", "blink", "mixed"],
                   help="corpora (cues) to run")
    s.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds")
    s.add_argument("--rows", nargs="+", help="only these rows, e.g. StatsRidge")
    s.add_argument("--size", choices=["short", "long"], default="short",
                   help="corpus size: short (56 training recordings of 30-50 s) or long "
                        "(25 training subjects, 150-240 s); use a separate --out")
    s.add_argument("--config", nargs="+", metavar="TOML",
                   help="experiment configs to add as rows, each under its protocol "
                        "(e.g. experiments/dg_mg_three_views.toml)")
    s.add_argument("--protocol", choices=["default", "paper"],
                   help="the protocol of the --config rows (default: each config's own)")

    s = add_command(sub, "report", "every table and figure of the paper: trains what is "
                                   "missing, writes report.md + PNGs (make report)", cmd_report)
    s.add_argument("--corpus", required=True, choices=["avec2013", "avec2014", "daic",
                                                       "synthetic"], help="corpus")
    s.add_argument("--data-root", default=os.environ.get("DATA_ROOT", "data"),
                   help="folder holding the corpora (default: $DATA_ROOT, else ./data)")
    s.add_argument("--out", help="report folder (default: outputs/report/<corpus>); its "
                                 "runs/ subfolder keeps the run directories for reuse")
    s.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="training seeds")
    s.add_argument("--protocol", choices=["default", "paper"],
                   help="training protocol (default: each config's own, else 'default')")
    s.add_argument("--quick", action="store_true",
                   help="one seed, a small step budget per run (a smoke test)")
    s.add_argument("--jit", action="store_true", help="jit_compile=True (XLA)")
    s.add_argument("--quiet", action="store_true", help="no progress lines")

    s = add_command(sub, "demo", "synthetic corpus -> train -> evaluate -> report", cmd_demo)
    s.add_argument("--data-root", default="data", help="folder for the synthetic corpus")
    s.add_argument("--out", default="outputs/demo", help="folder for the run and report.md")
    s.add_argument("--config", default="experiments/demo.toml", help="experiment TOML")
    s.add_argument("--max-minutes", type=float, help="override train.max_minutes")
    return p


@guarded
def main(argv=None) -> int:
    quiet_tensorflow()
    args = build_parser().parse_args(argv)
    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())
