"""What ``depressionmlp predict`` says beside a score: how sure, from which model.

:func:`describe` adds to :func:`depressionmlp.train.predict_file`'s result

- ``spread``: sd, min, quartiles and max of the segment scores;
- ``interval``: an approximate 95 % interval for the recording's score (the mean of
  its segment scores): a t interval whose sample size is the number of
  *non-overlapping* segment lengths covered (segments overlap by M - stride frames,
  so their scores are not independent), its ends mapped through the run's recording
  link (``train.recording_link``) where it has one. It reflects how much the segments
  of this recording disagree, not the model's own error, which is reported next to it;
- ``model``: the run that made the prediction (name, run folder, architecture) and
  its recording-level dev/test error from that run's ``metrics.json``;
- ``band``: the severity band's name and limits on the scale;
- ``warnings``: thin evidence (few segments, many frames dropped, an interval that
  spans several bands) and a score outside the scale's range (the model extrapolates;
  the band is then the nearest one, and the score is reported unclipped).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from depressionmlp import metrics

MIN_SEGMENTS = 5            # fewer (per phase): the score rests on a few seconds of video
MAX_DROPPED = 0.3           # more failed-tracking frames than this: warn
SCALE_NAMES = {"bdi2": "BDI-II", "phq8": "PHQ-8"}


def severity_band(score: float, scale: str) -> dict:
    """``{"name", "low", "high"}``: the band holding ``score``, limits inclusive."""
    sc = metrics.SEVERITY_SCALES[scale]
    bounds = list(sc["bounds"]) + [sc["max"] + 1]
    i = int(np.clip(np.searchsorted(bounds, score, side="right") - 1, 0, len(sc["names"]) - 1))
    return {"name": sc["names"][i], "low": bounds[i], "high": bounds[i + 1] - 1,
            "scale": SCALE_NAMES.get(scale, scale)}


def score_interval(seg_scores, segment_length: int, stride: float, scale: str,
                   level: float = 0.95, link: dict | None = None) -> dict | None:
    """Approximate interval for the mean of overlapping segment scores, its ends
    mapped through the run's recording ``link`` (nondecreasing, so they stay its
    ends); None for fewer than two segments (no spread to measure)."""
    from scipy import stats
    s = np.asarray(seg_scores, dtype=np.float64)
    if len(s) < 2:
        return None
    n_eff = max(1.0, (len(s) - 1) * stride / segment_length + 1)
    sd = float(np.std(s, ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, max(n_eff - 1, 1))) * sd / math.sqrt(n_eff)
    top = metrics.SEVERITY_SCALES[scale]["max"]
    low, high = metrics.apply_recording_link(link, [np.mean(s) - half, np.mean(s) + half])
    return {"level": level, "low": max(0.0, float(low)), "high": min(float(top), float(high)),
            "effective_segments": round(n_eff, 1),
            "method": "t interval over non-overlapping segment lengths; segment spread only"}


def run_identity(model_path, cfg: dict) -> dict:
    """Name, run folder and recording-level dev/test error of the run behind a model."""
    p = Path(model_path)
    run_dir = p if p.is_dir() else p.parent
    out = {"name": cfg.get("name"), "architecture": cfg.get("model", {}).get("name"),
           "inputs": cfg.get("model", {}).get("inputs"), "run_dir": str(run_dir),
           "run": run_dir.name, "error": {}}
    mfile = run_dir / "metrics.json"
    try:
        run_metrics = json.loads(mfile.read_text())
    except (OSError, json.JSONDecodeError):
        out["error_note"] = f"no readable {mfile.name} in the run folder"
        return out
    for split, r in (run_metrics.get("splits") or {}).items():
        if isinstance(r, dict):
            out["error"][split] = {k: r.get(k) for k in ("rmse", "mae", "n")}
    out["best_epoch"] = run_metrics.get("best_epoch")
    return out


def describe(result: dict, cfg: dict, model_path) -> dict:
    """``result`` (from ``predict_file``) plus spread, interval, model, band, warnings."""
    seg = np.asarray(result["segment_scores"], dtype=np.float64)
    scale = result["scale"]
    settings = cfg["resolved"]["segment"]
    # cut at k phases (data.segment.phases, or the "auto" rule's choice for this
    # recording), k segments start in each stride's span
    phases = result.get("phases", settings.get("phases", 1))
    m, stride, fps = (int(settings["segment_length"]),
                      int(settings["stride"]) / int(phases), float(settings["fps"]))
    out = dict(result)
    out["spread"] = {"sd": float(np.std(seg, ddof=1)) if len(seg) > 1 else 0.0,
                     "min": float(seg.min()), "q25": float(np.percentile(seg, 25)),
                     "median": float(np.median(seg)), "q75": float(np.percentile(seg, 75)),
                     "max": float(seg.max())}
    out["interval"] = score_interval(seg, m, stride, scale,
                                     link=cfg["resolved"].get("recording_link"))
    out["band"] = severity_band(result["score"], scale)
    out["model"] = run_identity(model_path, cfg)
    warnings = []
    seconds = ((len(seg) - 1) * stride + m) / fps
    if len(seg) / int(phases) < MIN_SEGMENTS:        # windows of distinct video
        warnings.append(f"thin evidence: {len(seg)} segment(s), about {seconds:.0f} s of "
                        f"usable video; the score may not represent the recording")
    top = metrics.SEVERITY_SCALES[scale]["max"]
    if not 0.0 <= result["score"] <= top:
        warnings.append(f"the score {result['score']:.2f} lies outside the "
                        f"{SCALE_NAMES.get(scale, scale)} range 0-{top}: the model "
                        "extrapolates beyond the scores it was trained on")
    frames = result.get("frames") or 0
    dropped = result.get("frames_dropped") or 0
    if frames and dropped / frames > MAX_DROPPED:
        warnings.append(f"{dropped} of {frames} frames ({100 * dropped / frames:.0f} %) "
                        "were dropped (failed tracking)")
    iv = out["interval"]
    if iv is not None:
        lo, hi = severity_band(iv["low"], scale), severity_band(iv["high"], scale)
        if lo["name"] != hi["name"]:
            warnings.append(f"the 95 % interval spans severity bands {lo['name']} to "
                            f"{hi['name']}")
    out["usable_seconds"] = round(seconds, 1)
    out["warnings"] = warnings
    return out


def format_text(r: dict) -> list[str]:
    """Human-readable lines for one described prediction (warnings excluded)."""
    b, iv, sp, mo = r["band"], r["interval"], r["spread"], r["model"]
    head = (f"{r['file']}: score {r['score']:.2f} {b['scale']} ({b['name']}, "
            f"{b['low']}-{b['high']})")
    head += (f", 95 % interval {iv['low']:.1f}-{iv['high']:.1f}" if iv is not None
             else ", no interval (one segment)")
    lines = [head,
             f"  {r['segments']} segment{'s' if r['segments'] != 1 else ''} ({r['usable_seconds']:g} s usable, "
             f"{r.get('frames_dropped', 0)} of {r.get('frames', 0)} frames dropped); "
             f"segment scores sd {sp['sd']:.2f}, min {sp['min']:.2f}, median "
             f"{sp['median']:.2f}, max {sp['max']:.2f}"]
    err = ", ".join(f"{s} RMSE {e['rmse']:.2f} / MAE {e['mae']:.2f} (n={e['n']})"
                    for s, e in mo["error"].items()
                    if e.get("rmse") is not None and e.get("mae") is not None)
    lines.append(f"  model: {mo['name']} ({mo['architecture']}, run {mo['run']}); "
                 + (f"its recording-level error: {err}" if err
                    else mo.get("error_note", "no recorded error")))
    return lines
