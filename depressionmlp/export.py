"""Export a trained run for image-free, on-device inference.

``export_run(run, out)`` writes ``out/saved_model`` (a TensorFlow SavedModel whose
``serve`` signature takes the stream tensors ``R_X, R_Y, R_AU`` of shape
(batch, M, N) float32 and returns the segment scores (batch, 1)), ``out/model.tflite``
when asked, and ``out/depressionmlp_export.json`` with what a caller needs to
segment OpenFace output the same way (Eq. 1-3 settings, streams, scale).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from depressionmlp.runs import check_output_dir, write_json_atomic


def export_run(model_path, out_dir, tflite: bool = False) -> dict:
    from depressionmlp.train import load_run
    import tensorflow as tf

    out = check_output_dir(out_dir, what="export folder", empty=True)
    model, cfg = load_run(model_path)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        model.export(str(tmp / "saved_model"), format="tf_saved_model", verbose=False)
        paths = {"saved_model": out / "saved_model"}
        if tflite:
            conv = tf.lite.TFLiteConverter.from_saved_model(str(tmp / "saved_model"))
            (tmp / "model.tflite").write_bytes(conv.convert())
            paths["tflite"] = out / "model.tflite"
        link = cfg["resolved"].get("recording_link")
        link = link if (link or {}).get("kind", "identity") != "identity" else None
        write_json_atomic(tmp / "depressionmlp_export.json", {
            "model": cfg["model"], "segment": cfg["resolved"]["segment"],
            "streams": cfg["resolved"]["streams"], "scale": cfg["resolved"]["scale"],
            "inputs": {s: ["batch", cfg["resolved"]["segment"]["segment_length"],
                           cfg["resolved"]["segment"]["n_points"]]
                       for s in cfg["resolved"]["streams"]},
            "aggregation": ("a recording's score is the mean of its segments' scores"
                            + (", then recording_link (depressionmlp.metrics."
                               "apply_recording_link)" if link else "")),
            **({"recording_link": link} if link else {})})
        paths["info"] = out / "depressionmlp_export.json"
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return paths
