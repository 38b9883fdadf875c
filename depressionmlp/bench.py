"""`make bench`: speed and memory of both packages on this machine, as JSON.

Measures, on a synthetic corpus generated into a temporary folder:
    parse_mb_per_s        OpenFace CSV parsing (read_openface_csv; _pandas: the pandas
                          path it replaced, same files, same run; _1_thread: the default
                          reader on one thread; _cpu_s: per CPU second; parse_speedup:
                          pandas over default, CPU seconds; _wall: wall seconds)
    load_corpus_mb_per_s  a whole corpus read and segmented by load_corpus, its default
                          threads against one (_1_thread)
    segment_rec_per_s     Eq. 1-3 segmenting of parsed recordings
    sampler_segments_per_s  the balanced tf.data pipeline, batches pulled
    train_steps_per_s     DepressionMLP (DG+MG+Linear) at batch 8, jit_compile False / True
    infer_segments_per_s  DepressionMLP prediction at batch 256
    whole_run_*           a whole short train() run against pure fit() steps/s
    hmhn_images_per_s     HMHN (row E) training at 224x224, batch 8, jit False / True
    hmhn_params           its trainable parameters (Table 5's count); _total: all
    peak_rss_mb           the process's peak resident memory

Usage: python -m depressionmlp.bench [--out outputs/bench] [--quick] [--skip-hmhn]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path


def _timeit(fn, min_seconds=1.0, min_reps=1):
    reps, t0 = 0, time.perf_counter()
    while True:
        fn()
        reps += 1
        dt = time.perf_counter() - t0
        if reps >= min_reps and dt >= min_seconds:
            return dt / reps


def bench_data(tmp: Path, quick: bool) -> dict:
    from depressionmlp import synth
    from depressionmlp.data.corpora import default_settings, load_corpus
    from depressionmlp.data.fastcsv import usable_cores
    from depressionmlp.data.openface import read_openface_csv
    from depressionmlp.data.sampler import SegmentTable, balanced_dataset
    from depressionmlp.data.segments import segment_recording
    from depressionmlp.data.types import SegmentedRecording

    root = tmp / "synthetic"
    t0 = time.perf_counter()
    synth.generate_corpus(root, n_subjects=12 if quick else 40, seed=0)
    gen_s = time.perf_counter() - t0
    files = sorted(root.glob("openface/*/*.csv"))
    size_mb = sum(f.stat().st_size for f in files) / 2**20
    # same files, one run: the pandas path (before issue 12) against the default one
    # (its blocks of lines on the usable cores) and the default one on one thread; the
    # best of 3 passes each, interleaved, so a busy machine hurts all alike. Wall
    # seconds, and CPU seconds, which a machine shared with other jobs inflates far
    # less (parse_speedup is taken from those; the threads show in the wall ratio).
    runs = {"pandas": ("pandas", 1), "auto": ("auto", None), "auto_1": ("auto", 1)}
    parse_s = {k: [] for k in runs}
    parse_cpu = {k: [] for k in runs}
    for _ in range(1 if quick else 3):
        for key, (engine, threads) in runs.items():
            t0, c0 = time.perf_counter(), time.process_time()
            frames = [read_openface_csv(f, engine=engine, threads=threads) for f in files]
            parse_s[key].append(time.perf_counter() - t0)
            parse_cpu[key].append(time.process_time() - c0)
    parse_s = {k: min(v) for k, v in parse_s.items()}
    parse_cpu = {k: min(v) for k, v in parse_cpu.items()}
    settings = default_settings("synthetic")
    # a whole corpus read and segmented (no cache): one recording at a time against
    # load_corpus' default threads
    load_s = {}
    for workers in (1, None):
        t0 = time.perf_counter()
        load_corpus("synthetic", tmp, settings=settings, warn=lambda m: None,
                    workers=workers)
        load_s[workers] = time.perf_counter() - t0
    t0 = time.perf_counter()
    segs = [segment_recording(fr, settings) for fr in frames]
    seg_s = time.perf_counter() - t0
    recs = [SegmentedRecording(f"r{i}", f"s{i}", "train", float(i % 40), x, y, a)
            for i, (x, y, a, _) in enumerate(segs)]
    table = SegmentTable.from_recordings(recs)
    ds = balanced_dataset(table, batch_size=8, seed=0)
    it = iter(ds)
    for _ in range(20):
        next(it)
    n = 2000 if not quick else 300
    t0 = time.perf_counter()
    for _ in range(n):
        next(it)
    samp_s = time.perf_counter() - t0
    return {"corpus_files": len(files), "corpus_mb": round(size_mb, 1),
            "synth_seconds": round(gen_s, 2),
            "parse_mb_per_s": round(size_mb / parse_s["auto"], 1),
            "parse_mb_per_s_pandas": round(size_mb / parse_s["pandas"], 1),
            "parse_mb_per_s_1_thread": round(size_mb / parse_s["auto_1"], 1),
            "parse_threads": usable_cores(4),
            "parse_mb_per_cpu_s": round(size_mb / parse_cpu["auto"], 1),
            "parse_mb_per_cpu_s_pandas": round(size_mb / parse_cpu["pandas"], 1),
            "parse_speedup": round(parse_cpu["pandas"] / parse_cpu["auto"], 2),
            "parse_speedup_wall": round(parse_s["pandas"] / parse_s["auto"], 2),
            "parse_speedup_wall_1_thread": round(parse_s["pandas"] / parse_s["auto_1"], 2),
            "load_corpus_mb_per_s_1_thread": round(size_mb / load_s[1], 1),
            "load_corpus_mb_per_s": round(size_mb / load_s[None], 1),
            "load_corpus_threads": min(8, os.cpu_count() or 1),
            "segment_rec_per_s": round(len(files) / seg_s, 1),
            "segments_total": int(table.n_segments),
            "sampler_segments_per_s": round(n * 8 / samp_s, 0)}, table


def bench_depressionmlp(table, quick: bool) -> dict:
    import keras
    from depressionmlp.data.sampler import balanced_dataset, eval_dataset
    from depressionmlp.models import build_model
    from depressionmlp.train import rmse_loss

    out = {}
    steps = 50 if quick else 300
    for jit in (False, True):
        keras.utils.set_random_seed(0)
        model = build_model("DG+MG+Linear", "all")
        model.compile(optimizer=keras.optimizers.Adam(2e-4, weight_decay=1e-4),
                      loss=rmse_loss, jit_compile=jit)
        ds = balanced_dataset(table, batch_size=8, seed=0)
        model.fit(ds, steps_per_epoch=20, epochs=1, verbose=0, shuffle=False)  # warm up
        t0 = time.perf_counter()
        model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
        out[f"train_steps_per_s_jit_{str(jit).lower()}"] = round(
            steps / (time.perf_counter() - t0), 1)
    eds = eval_dataset(table, batch_size=256)
    model.predict(eds, verbose=0)
    t0 = time.perf_counter()
    model.predict(eds, verbose=0)
    out["infer_segments_per_s"] = round(table.n_segments / (time.perf_counter() - t0), 0)
    out["params"] = int(model.count_params())
    return out


def bench_whole_run(data_root: Path, quick: bool) -> dict:
    """Steps/s of a whole short DepressionMLP run (``train.train``: dev evaluation every
    ``eval_every`` steps, best-model saving, backups, TensorBoard, final evaluation)
    against pure training steps/s (``fit`` on the same pipeline, no callbacks).

    Both start from a fresh model, so both pay building it and tracing the train
    function; ``pure_steady_steps_per_s`` is the traced function alone. The default
    protocol, the bench corpus, ``steps`` steps with a dev evaluation every quarter, one
    model (``train.ensemble = 1``: the default ensemble would train several models of
    ``steps`` steps each).
    """
    import keras
    from depressionmlp import train
    from depressionmlp.data.sampler import balanced_dataset
    from depressionmlp.models import adapt_inputs

    steps = 120 if quick else 800
    cfg = {"name": "bench", "model": {"name": "DG+MG+Linear", "inputs": "all"},
           "data": {"corpus": "synthetic", "data_root": str(data_root), "cache_dir": ""},
           "train": {"steps": steps, "eval_every": steps // 4, "seed": 0, "verbose": 0,
                     "ensemble": 1}}
    rc = train.resolve_config(cfg)
    settings = train.segment_settings(rc)
    tables = train.load_tables(rc, settings, ["train", "dev", "test"])
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        _, res = train.train(cfg, out_base=out, tables=tables)
        whole = time.perf_counter() - t0

    t, streams = rc["train"], train.model_streams(rc)
    t0 = time.perf_counter()
    keras.utils.set_random_seed(t["seed"])
    train.resolve_score_affine(rc["model"], tables["train"].recording_labels, "bench")
    from depressionmlp import scaling
    with scaling.precision_policy(res["precision"]):        # as the whole run built it
        model = train.build_model_from_config(rc, settings)
    adapt_inputs(model, tables["train"].arrays)
    model.compile(optimizer=train.make_optimizer(t, steps), loss=train.rmse_loss,
                  jit_compile=scaling.resolve_jit(t["jit_compile"]),
                  steps_per_execution=math.gcd(t["steps_per_execution"], steps // 4))
    model.optimizer.build(model.trainable_variables)        # as train() does: one trace
    ds = balanced_dataset(tables["train"], streams, per_recording=t["per_recording"],
                          batch_size=t["batch_size"], seed=t["seed"])
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
    pure = time.perf_counter() - t0
    n = steps // 2
    t0 = time.perf_counter()
    model.fit(ds, steps_per_epoch=n, epochs=1, verbose=0, shuffle=False)
    steady = n / (time.perf_counter() - t0)
    return {"run_steps": steps, "run_eval_every": steps // 4, "run_batch": t["batch_size"],
            "whole_run_steps_per_s": round(steps / whole, 2),
            "pure_train_steps_per_s": round(steps / pure, 2),
            "whole_over_pure": round(pure / whole, 3),
            "pure_steady_steps_per_s": round(steady, 2),
            "run_seconds": round(whole, 2), "run_models": len(res.get("members", [])) or 1,
            "run_precision": res["precision"],
            "run_replicas": res["replicas"]}


def bench_hmhn(quick: bool) -> dict:
    import keras
    import numpy as np
    from hmhn.models import build_hmhn

    size = 96 if quick else 224
    out = {"hmhn_input_size": size}
    x = np.random.default_rng(0).uniform(0, 255, (8, size, size, 3)).astype("float32")
    y = np.random.default_rng(1).uniform(0, 40, (8, 1)).astype("float32")
    for jit in (False, True):
        keras.utils.set_random_seed(0)
        model = build_hmhn(input_size=size)
        # loss="mse" as in hmhn.train: the partition loss (Eq. 11) comes via add_loss, the
        # score needs its own loss or train_on_batch has nothing to fit the targets with.
        model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss="mse", jit_compile=jit)
        model.train_on_batch(x, y)
        dt = _timeit(lambda: model.train_on_batch(x, y), min_seconds=3.0 if not quick else 1.0,
                     min_reps=2)
        out[f"hmhn_train_images_per_s_jit_{str(jit).lower()}"] = round(8 / dt, 2)
    # trainable (Table 5 counts these: 19.72 M) and all, BatchNorm statistics included
    out["hmhn_params"] = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    out["hmhn_params_total"] = int(model.count_params())
    return out


def main(argv=None) -> int:
    from depressionmlp.clikit import quiet_tensorflow
    quiet_tensorflow()
    p = argparse.ArgumentParser(prog="depressionmlp.bench", description=__doc__.split("\n")[0])
    p.add_argument("--out", default="outputs/bench")
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    p.add_argument("--skip-hmhn", action="store_true")
    args = p.parse_args(argv)

    import tensorflow as tf
    from depressionmlp.runs import write_json_atomic
    from depressionmlp.scaling import device_info

    result = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                          "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
                          "tensorflow": tf.__version__, "python": platform.python_version(),
                          # set before TensorFlow starts; it changes CPU speed (README)
                          "tf_enable_onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
                          # GPU names and compute capabilities where there are GPUs:
                          # the same JSON then holds real GPU numbers (make bench there)
                          "devices": device_info(),
                          "load_average": list(os.getloadavg())},
              "quick": args.quick}
    with tempfile.TemporaryDirectory() as tmp:
        data, table = bench_data(Path(tmp), args.quick)
        result["data"] = data
        print(f"data: {data}", flush=True)
        result["depressionmlp"] = bench_depressionmlp(table, args.quick)
        print(f"depressionmlp: {result['depressionmlp']}", flush=True)
        result["whole_run"] = bench_whole_run(Path(tmp), args.quick)
        print(f"whole_run: {result['whole_run']}", flush=True)
    if not args.skip_hmhn:
        result["hmhn"] = bench_hmhn(args.quick)
        print(f"hmhn: {result['hmhn']}", flush=True)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out = Path(args.out) / "bench.json"
    write_json_atomic(out, result)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
