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
    demo                                       synth (if needed) + train + evaluate + report

Bad input of any kind ends with one line ``depressionmlp: error: <file>: <problem>``
and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from depressionmlp.clikit import guarded, quiet_tensorflow
from depressionmlp.errors import DataError


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
    argv = ["--out", args.out, "--seed", str(args.seed)]
    if args.subjects is not None:
        argv += ["--subjects", str(args.subjects)]
    if args.small:
        argv.append("--small")
    if args.force:
        argv.append("--force")
    return synth.main(argv) or 0


def _load_toml_config(path, args) -> dict:
    from depressionmlp.runs import load_config
    cfg = load_config(path)
    if args.data_root:
        cfg.setdefault("data", {})["data_root"] = args.data_root
    if args.corpus:
        cfg.setdefault("data", {})["corpus"] = args.corpus
    if getattr(args, "strict", False):
        cfg.setdefault("data", {})["strict_leakage"] = True
    train = cfg.setdefault("train", {})
    if args.epochs is not None:
        train["epochs"] = args.epochs
    if args.max_minutes is not None:
        train["max_minutes"] = args.max_minutes
    if args.jit:
        train["jit_compile"] = True
    if args.quiet:
        train["verbose"] = 0
    return cfg


def cmd_train(args) -> int:
    from depressionmlp import train
    cfg = _load_toml_config(args.config, args)
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
    train_labels = train._merge_tables(
        [tables[s] for s in cfg["data"]["train_splits"]]).recording_labels
    res, rows = train.evaluate_table(model, tables[args.split], cfg["resolved"]["streams"],
                                     cfg["resolved"]["scale"], train_labels=train_labels)
    out = {"model": str(args.model), "split": args.split, "metrics": res, "recordings": rows}
    if args.json:
        _print_json(out)
    else:
        print(format_result_table({"name": cfg["name"], "splits": {args.split: res}}))
    return 0


def cmd_predict(args) -> int:
    from depressionmlp import train
    model, cfg = train.load_run(args.model)
    results = [train.predict_file(model, cfg, f) for f in args.openface]
    if args.json:
        _print_json(results if len(results) > 1 else results[0])
        return 0
    for r in results:
        print(f"{r['file']}: score {r['score']:.2f} ({r['severity']}, {r['scale']}) "
              f"from {r['segments']} segments; segment scores "
              f"min {min(r['segment_scores']):.2f} max {max(r['segment_scores']):.2f}")
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
    paths = export_run(args.model, args.out, tflite=args.tflite)
    for kind, p in paths.items():
        print(f"{kind}: {p}")
    return 0


def cmd_summarize(args) -> int:
    from depressionmlp.summary import to_markdown, write_summary
    summary = write_summary(args.runs, args.out or str(Path(args.runs) / "summary"))
    print(to_markdown(summary), end="")
    return 0


def cmd_demo(args) -> int:
    from depressionmlp.demo import run_demo
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
    p = argparse.ArgumentParser(prog="depressionmlp", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("inspect", help="validate one OpenFace CSV / DAIC-WOZ CLNF file")
    s.add_argument("file")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_inspect)

    s = sub.add_parser("synth", help="write the bundled synthetic OpenFace corpus")
    s.add_argument("--out", default="data/synthetic")
    s.add_argument("--subjects", type=int)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--small", action="store_true")
    s.add_argument("--force", action="store_true")
    s.set_defaults(fn=cmd_synth)

    s = sub.add_parser("train", help="train one experiment config")
    s.add_argument("--config", required=True)
    s.add_argument("--data-root")
    s.add_argument("--corpus", help="override data.corpus (avec2013, avec2014, daic, synthetic)")
    s.add_argument("--out", default="outputs/runs")
    s.add_argument("--epochs", type=int)
    s.add_argument("--max-minutes", type=float)
    s.add_argument("--resume", help="run directory of a killed run to resume")
    s.add_argument("--jit", action="store_true", help="jit_compile=True (XLA)")
    s.add_argument("--strict", action="store_true",
                   help="a subject in more than one split is an error, not a warning")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(fn=cmd_train)

    s = sub.add_parser("evaluate", help="recording-level metrics of a trained run")
    s.add_argument("--model", required=True, help="run directory or its best.keras")
    s.add_argument("--split", default="test", choices=["train", "dev", "test"])
    s.add_argument("--data-root")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_evaluate)

    s = sub.add_parser("predict", help="score OpenFace recordings with a trained run")
    s.add_argument("--model", required=True)
    s.add_argument("--openface", required=True, nargs="+")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_predict)

    s = sub.add_parser("count", help="params and FLOPs per model (Table VI)")
    s.add_argument("--segment-length", type=int, default=18)
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_count)

    s = sub.add_parser("export", help="SavedModel (+ TFLite) export of a trained run")
    s.add_argument("--model", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--tflite", action="store_true")
    s.set_defaults(fn=cmd_export)

    s = sub.add_parser("summarize", help="one table (md + JSON) over run directories")
    s.add_argument("--runs", required=True, help="folder holding run directories")
    s.add_argument("--out", help="output stem (default <runs>/summary)")
    s.set_defaults(fn=cmd_summarize)

    s = sub.add_parser("demo", help="synthetic corpus -> train -> evaluate -> report")
    s.add_argument("--data-root", default="data")
    s.add_argument("--out", default="outputs/demo")
    s.add_argument("--config", default="experiments/demo.toml")
    s.add_argument("--max-minutes", type=float)
    s.set_defaults(fn=cmd_demo)
    return p


@guarded
def main(argv=None) -> int:
    quiet_tensorflow()
    args = build_parser().parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
