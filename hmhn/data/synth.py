"""The bundled synthetic face corpus: drawn, already aligned faces whose only depression
cues are facial expression.

A measuring instrument for HMHN, built to be honest: identity (face shape, colours,
placement) is drawn independently of the score, the score moves only three expression
cues, and the best achievable error (the noise floor) is written into ``manifest.json``.

Layout (the faces layout of :mod:`hmhn.data.corpora`)::

    <out>/faces/{train,dev,test}/<rec>/frame_0000.png ...   RGB, size x size
    <out>/labels/{train,dev,test}/<rec>_Depression.csv       one integer BDI-II label
    <out>/manifest.json

``<rec>`` is ``<subject>_<session>``: subjects are random 3-digit ids (not ordered by
label), sessions 1 or 2 (a fraction ``second_session_frac`` of subjects, chosen at
random, has a second recording). Frames are "aligned" like
:class:`hmhn.data.align.FaceAligner` crops (defaults ``eye_y=0.38``, ``eye_dist=0.36``):
eye centres near ``(0.32, 0.38)`` and ``(0.68, 0.38)`` of the size, up to a few percent
off (the subject's placement, roll and scale, plus per-frame jitter), as a detector
would leave them.

Scores
    Latent true BDI-II per subject from a skewed mixture (85 % gamma(k=1.8,
    theta=6.5), 15 % normal(33, 9), clipped to 0..63: mostly low, a few severe). A
    second session differs by U(-2, 2). Label = ``round(clip(true + N(0,
    label_noise_sd), 0, 63))``. ``noise_floor`` in the manifest is the video-level
    RMSE (and MAE) of predicting the label with the true score: no model can do
    better on average. ``mean_predictor_rmse``: predicting the train-label mean.
    Splits are subject-disjoint and stratified by true score (60/20/20 by default;
    at least one subject each).

Signal (the only place the score enters), with severity ``s = min(true, 45) / 45``
    * mouth-corner droop: corners ``0.035 * s * size`` below the lip midline (minus a
      smile),
    * eye openness: eyelid aperture times ``1 - 0.45 * s``,
    * brow angle: inner brow ends raised by ``14 * s`` degrees ("sad" brows),
    * expressivity ``1 - 0.7 * s`` scales frame-to-frame smiles (which lift the mouth
      corners and raise the brows a little): depressed faces smile less.
    Every cue also varies frame to frame (normal noise), and each subject has its own
    label-free resting mouth curve, eye size and brow slant. The three magnitudes
    (0.035, 0.45, 14) are the defaults of ``droop_max``, ``open_drop`` and
    ``brow_max_deg`` (:class:`CueStrength`): subtle at 64 px (droop ~2 px, aperture
    ~1 px). ``make demo-hmhn`` keeps them; stronger ones can be asked for (the
    ``[synth]`` table of a demo config), and the manifest records them under
    ``parameters`` and ``signal``.

Nuisance (independent of the score)
    Per subject: head width and height, eye spacing and size, brow height and
    thickness, nose and mouth size and position, skin / hair / iris / lip / shirt /
    background colours, hair style, placement (shift, roll, scale). Per frame:
    shift / roll / scale jitter, gaze, blinks, talking (mouth opening), lighting gain,
    pixel noise.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from depressionmlp.errors import DataError
from depressionmlp.runs import swap_into_place
# the score prior and the noise floor are the OpenFace corpus's own
from depressionmlp.synth import noise_floor, sample_true_scores as draw_true_scores

SPLITS = ("train", "dev", "test")
GENERATOR = "hmhn.data.synth"
SHIFT = 4                      # cv2 drawing: sub-pixel precision of 1/16 pixel
EYE_Y, EYE_HALF_DIST = 0.38, 0.18
DROOP_MAX, OPEN_DROP, BROW_MAX_DEG = 0.035, 0.45, 14.0
SEVERITY_CAP = 45.0
HAIR_COLOURS = np.array([[25, 20, 18], [60, 40, 25], [110, 75, 45], [190, 150, 90],
                         [140, 60, 30], [150, 145, 140]], dtype=np.float64)
SMALL = {"n_subjects": 9, "frames_per_video": 4, "size": 64}


# ----------------------------------------------------------------------------- subjects

@dataclass
class Subject:
    sid: str
    split: str
    true_score: float
    n_sessions: int
    seed: int


def split_quotas(n: int, fractions) -> dict[str, int]:
    """Subjects per split: dev and test get ``round(f * n)`` (at least 1), train the rest."""
    if n < 3:
        raise ValueError(f"n_subjects must be >= 3 (one per split), got {n}")
    n_dev = max(1, int(round(fractions[1] * n)))
    n_test = max(1, int(round(fractions[2] * n)))
    n_dev = min(n_dev, n - 2)
    n_test = min(n_test, n - 1 - n_dev)
    return {"train": n - n_dev - n_test, "dev": n_dev, "test": n_test}


def stratified_splits(rng, scores: np.ndarray, fractions) -> list[str]:
    """Split per subject, interleaved along the sorted scores (each split spans the range)."""
    quotas = split_quotas(len(scores), fractions)
    keys, names = [], []
    for split, q in quotas.items():
        keys += list((np.arange(q) + rng.random(q)) / q)
        names += [split] * q
    by_rank = [names[i] for i in np.argsort(keys, kind="stable")]
    out = [""] * len(scores)
    for rank, subj in enumerate(np.argsort(scores, kind="stable")):
        out[subj] = by_rank[rank]
    return out


def plan_subjects(seed: int, n_subjects: int, fractions, second_session_frac: float):
    """Subjects with ids, splits, true scores, session counts and their own seeds."""
    rng = np.random.default_rng([seed, 0])
    scores = draw_true_scores(rng, n_subjects)
    splits = stratified_splits(rng, scores, fractions)
    ids = rng.choice(np.arange(100, 1000), size=n_subjects, replace=False)
    two = rng.random(n_subjects) < second_session_frac
    seeds = rng.integers(0, 2**31, size=n_subjects)
    return [Subject(str(ids[i]), splits[i], float(scores[i]), 1 + int(two[i]), int(seeds[i]))
            for i in range(n_subjects)]


# ----------------------------------------------------------------------------- identity

def _colour(rng, lo, hi) -> np.ndarray:
    return np.array([rng.uniform(a, b) for a, b in zip(lo, hi)])


def draw_identity(rng) -> dict:
    """Label-free per-subject appearance (RGB colours 0..255, geometry in units of size)."""
    t = rng.random()                               # skin tone: light .. dark
    skin = (1 - t) * np.array([236, 200, 172]) + t * np.array([120, 80, 56])
    skin = skin * rng.uniform(0.95, 1.05, 3)
    hair = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] * rng.uniform(0.8, 1.2, 3)
    return {
        "skin": np.clip(skin, 0, 255), "hair": np.clip(hair, 0, 255),
        "background": _colour(rng, (30, 40, 60), (150, 160, 190)),
        "shirt": _colour(rng, (20, 20, 20), (200, 160, 160)),
        "iris": _colour(rng, (30, 30, 20), (110, 130, 160)),
        "lip": np.clip(skin * np.array([0.85, 0.6, 0.6]), 0, 255),
        "sclera": np.array([244, 242, 236]) * rng.uniform(0.97, 1.0),
        "head_w": 0.30 * rng.uniform(0.9, 1.1), "head_h": 0.40 * rng.uniform(0.92, 1.08),
        "eye_half_dist": EYE_HALF_DIST * rng.uniform(0.95, 1.05),
        "eye_w": 0.05 * rng.uniform(0.9, 1.1), "eye_h": 0.027 * rng.uniform(0.85, 1.15),
        "brow_dy": rng.uniform(0.065, 0.085), "brow_t": rng.uniform(0.012, 0.02),
        "brow_slant_deg": rng.normal(0, 1.5),
        "nose_y": rng.uniform(0.15, 0.19), "mouth_y": rng.uniform(0.25, 0.29),
        "mouth_w": rng.uniform(0.085, 0.115), "mouth_curve": rng.normal(0, 0.004),
        "long_hair": bool(rng.random() < 0.4),
        "shift": rng.normal(0, 0.012, 2), "roll_deg": rng.normal(0, 2.5),
        "scale": float(np.exp(rng.normal(0, 0.03))),
    }


@dataclass(frozen=True)
class CueStrength:
    """How far the score moves the three expression cues (at severity ``s = 1``).

    ``droop_max``: mouth-corner droop, fraction of the image size; ``open_drop``: the
    fraction of the eyelid aperture lost; ``brow_max_deg``: inner-brow raise in degrees.
    The defaults are subtle at 64 px (droop ~2 px), and ``make demo-hmhn`` learns
    at them; larger values make an easier corpus. Only the score's effect changes: the
    label-free frame noise (smiles, blinks, jitter) stays as it is.
    """
    droop_max: float = DROOP_MAX
    open_drop: float = OPEN_DROP
    brow_max_deg: float = BROW_MAX_DEG

    def check(self) -> None:
        if not (self.droop_max >= 0 and 0 <= self.open_drop < 1 and self.brow_max_deg >= 0):
            raise ValueError("need droop_max >= 0, 0 <= open_drop < 1, brow_max_deg >= 0")


def draw_expression(rng, true_score: float, cues: CueStrength = CueStrength()) -> dict:
    """One frame's expression: the score-driven cues plus label-free frame variation."""
    s = min(true_score, SEVERITY_CAP) / SEVERITY_CAP
    smile = (1 - 0.7 * s) * float(np.clip(rng.normal(0.25, 0.45), 0, 1))
    blink = rng.random() < 0.07
    openness = (1 - cues.open_drop * s) * float(np.exp(rng.normal(0, 0.08)))
    return {
        "droop": cues.droop_max * s - 0.03 * smile + rng.normal(0, 0.004),
        "openness": 0.12 if blink else openness,
        "brow_deg": cues.brow_max_deg * s - 4.0 * smile + rng.normal(0, 3.0),
        "brow_lift": 0.01 * smile + rng.normal(0, 0.004),
        "mouth_open": max(0.0, rng.normal(0.0, 0.015)),
        "gaze": rng.normal(0, 0.006, 2),
        "shift": rng.normal(0, 0.006, 2), "roll_deg": rng.normal(0, 1.2),
        "scale": float(np.exp(rng.normal(0, 0.015))),
        "gain": rng.uniform(0.93, 1.07),
    }


# ----------------------------------------------------------------------------- drawing

class Canvas:
    """A BGR uint8 image with drawing helpers in units of the image size (anti-aliased)."""

    def __init__(self, size: int, background):
        self.size = size
        self.img = np.empty((size, size, 3), np.uint8)
        self.img[:] = _bgr(background)

    def p(self, x, y) -> tuple[int, int]:
        k = self.size * (1 << SHIFT)
        return int(round(x * k)), int(round(y * k))

    def px(self, v) -> int:
        return max(1, int(round(v * self.size * (1 << SHIFT))))

    def ellipse(self, c, axes, colour, angle=0.0, start=0, end=360, thickness=-1):
        import cv2
        t = thickness if thickness < 0 else max(1, int(round(thickness * self.size)))
        cv2.ellipse(self.img, self.p(*c), (self.px(axes[0]), self.px(axes[1])), angle,
                    start, end, _bgr(colour), t, cv2.LINE_AA, SHIFT)

    def poly(self, pts, colour, closed=False, thickness=None):
        import cv2
        arr = np.array([self.p(x, y) for x, y in pts], np.int32).reshape(-1, 1, 2)
        if thickness is None:
            cv2.fillPoly(self.img, [arr], _bgr(colour), cv2.LINE_AA, SHIFT)
        else:
            cv2.polylines(self.img, [arr], closed, _bgr(colour),
                          max(1, int(round(thickness * self.size))), cv2.LINE_AA, SHIFT)


def _bgr(rgb) -> tuple[float, float, float]:
    r, g, b = (float(v) for v in np.clip(rgb, 0, 255))
    return (b, g, r)


def _draw_eye(cv: Canvas, ident: dict, ex: float, ey: float, expr: dict) -> None:
    """Sclera ellipse with iris and pupil clipped to it, and an upper-lid line."""
    import cv2
    w, h = ident["eye_w"], max(0.002, ident["eye_h"] * expr["openness"])
    eye = Canvas(cv.size, ident["skin"])
    eye.img = cv.img.copy()
    eye.ellipse((ex, ey), (w, h), ident["sclera"])
    gx, gy = ex + expr["gaze"][0], ey + expr["gaze"][1]
    eye.ellipse((gx, gy), (0.021, 0.021), ident["iris"])
    eye.ellipse((gx, gy), (0.009, 0.009), (12, 10, 10))
    mask = np.zeros(cv.img.shape[:2], np.uint8)
    cv2.ellipse(mask, cv.p(ex, ey), (cv.px(w), cv.px(h)), 0, 0, 360, 255, -1, cv2.LINE_AA, SHIFT)
    a = mask[:, :, None].astype(np.float32) / 255
    cv.img[:] = (eye.img * a + cv.img * (1 - a) + 0.5).astype(np.uint8)
    cv.ellipse((ex, ey), (w * 1.02, h * 1.05 + 0.002), ident["skin"] * 0.45,
               start=180, end=360, thickness=0.008)


def _draw_brow(cv: Canvas, ident: dict, ex: float, ey: float, side: int, expr: dict) -> None:
    """A thick brow; ``side`` -1 for the image-left eye, +1 for the right one."""
    inner_dx, outer_dx = 0.04, 0.055
    angle = np.deg2rad(expr["brow_deg"] + ident["brow_slant_deg"])
    y0 = ey - ident["brow_dy"] - expr["brow_lift"]
    inner = (ex - side * inner_dx, y0 - (inner_dx + outer_dx) * np.tan(angle) / 2)
    outer = (ex + side * outer_dx, y0 + (inner_dx + outer_dx) * np.tan(angle) / 2)
    mid = ((inner[0] + outer[0]) / 2, (inner[1] + outer[1]) / 2 - 0.008)
    cv.poly([inner, mid, outer], ident["hair"] * 0.8, thickness=ident["brow_t"])


def _draw_mouth(cv: Canvas, ident: dict, cx: float, my: float, expr: dict) -> None:
    """Lips as parabolas: corners ``droop`` below the midline, opened by ``mouth_open``."""
    u = np.linspace(-1, 1, 17)
    x = cx + ident["mouth_w"] * u
    bend = (expr["droop"] + ident["mouth_curve"]) * u ** 2
    gap = expr["mouth_open"] * (1 - u ** 2)
    upper = list(zip(x, my + bend - gap / 2))
    lower = list(zip(x, my + bend + gap / 2))
    if expr["mouth_open"] > 0.002:
        cv.poly(upper + lower[::-1], (60, 20, 25))
    cv.poly(upper, ident["lip"], thickness=0.014)
    cv.poly(lower, ident["lip"] * 1.05, thickness=0.018)


def draw_face(size: int, ident: dict, expr: dict) -> np.ndarray:
    """One ``(size, size, 3)`` uint8 RGB frame (noise-free: see :func:`finish_frame`)."""
    import cv2
    cx = 0.5 + ident["shift"][0] + expr["shift"][0]
    ey = EYE_Y + ident["shift"][1] + expr["shift"][1]
    hw, hh, d = ident["head_w"], ident["head_h"], ident["eye_half_dist"]
    cv = Canvas(size, ident["background"])
    cv.ellipse((cx, 1.1), (0.42, 0.24), ident["shirt"])
    cv.poly([(cx - 0.085, ey + 0.3), (cx + 0.085, ey + 0.3), (cx + 0.095, 1.0),
             (cx - 0.095, 1.0)], ident["skin"] * 0.85)
    if ident["long_hair"]:
        cv.ellipse((cx, ey + 0.12), (hw * 1.15, hh * 1.02), ident["hair"])
    cv.ellipse((cx, ey - 0.03), (hw * 1.07, hh * 0.8), ident["hair"])
    for side in (-1, 1):
        cv.ellipse((cx + side * hw * 0.98, ey + 0.08), (0.035, 0.06), ident["skin"] * 0.93)
    cv.ellipse((cx, ey + 0.1), (hw, hh), ident["skin"])
    cv.ellipse((cx, ey - 0.24), (hw * 0.92, 0.1), ident["hair"])
    for side in (-1, 1):
        ex = cx + side * d
        _draw_eye(cv, ident, ex, ey, expr)
        _draw_brow(cv, ident, ex, ey, side, expr)
    ny = ey + ident["nose_y"]
    cv.poly([(cx, ey + 0.05), (cx + 0.012, ny - 0.01)], ident["skin"] * 0.82, thickness=0.008)
    for side in (-1, 1):
        cv.ellipse((cx + side * 0.022, ny), (0.012, 0.007), ident["skin"] * 0.55)
    _draw_mouth(cv, ident, cx, ey + ident["mouth_y"], expr)
    roll = ident["roll_deg"] + expr["roll_deg"]
    m = cv2.getRotationMatrix2D((cx * size, ey * size), roll, ident["scale"] * expr["scale"])
    img = cv2.warpAffine(cv.img, m, (size, size), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
    return img[:, :, ::-1]


def finish_frame(rng, rgb: np.ndarray, gain: float) -> np.ndarray:
    """Lighting gain and sensor noise (sd 2.5 grey levels)."""
    noisy = rgb.astype(np.float32) * gain + rng.normal(0, 2.5, rgb.shape).astype(np.float32)
    return np.clip(noisy + 0.5, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- corpus

def iter_videos(*, n_subjects, frames_per_video, size, seed, label_noise_sd,
                second_session_frac, split_fractions, droop_max=DROOP_MAX,
                open_drop=OPEN_DROP, brow_max_deg=BROW_MAX_DEG):
    """Yield ``(meta, frames)`` per video; frames ``(F, size, size, 3)`` uint8 RGB."""
    cues = CueStrength(droop_max, open_drop, brow_max_deg)
    cues.check()
    for subj in plan_subjects(seed, n_subjects, split_fractions, second_session_frac):
        rng = np.random.default_rng(subj.seed)
        pixel_rng = np.random.default_rng([subj.seed, 1])   # size-dependent draws apart
        ident = draw_identity(rng)
        for session in range(1, subj.n_sessions + 1):
            true = subj.true_score if session == 1 else float(
                np.clip(subj.true_score + rng.uniform(-2, 2), 0, 63))
            label = int(np.rint(np.clip(true + rng.normal(0, label_noise_sd), 0, 63)))
            exprs = [draw_expression(rng, true, cues) for _ in range(frames_per_video)]
            frames = np.stack([finish_frame(pixel_rng, draw_face(size, ident, e), e["gain"])
                               for e in exprs])
            meta = {"video_id": f"{subj.sid}_{session}", "subject": subj.sid,
                    "session": session, "split": subj.split, "true_score": round(true, 3),
                    "label": label, "n_frames": frames_per_video,
                    "cues": {"mouth_droop": round(float(np.mean([e["droop"] for e in exprs])), 5),
                             "eye_openness": round(float(np.mean([e["openness"] for e in exprs])), 4),
                             "brow_deg": round(float(np.mean([e["brow_deg"] for e in exprs])), 3)}}
            yield meta, frames


def _write_video(root: Path, meta: dict, frames: np.ndarray) -> None:
    import cv2
    folder = root / "faces" / meta["split"] / meta["video_id"]
    folder.mkdir(parents=True)
    for i, rgb in enumerate(frames):
        if not cv2.imwrite(os.fspath(folder / f"frame_{i:04d}.png"), rgb[:, :, ::-1]):
            raise DataError(folder, "cannot write PNG")
    (root / "labels" / meta["split"] / f"{meta['video_id']}_Depression.csv").write_text(
        f"{meta['label']}\n")


def signal_description(cues: CueStrength = CueStrength()) -> dict:
    """The generative story in machine-readable form (also in the module docstring)."""
    return {
        "score_prior": "85% gamma(k=1.8, theta=6.5) + 15% normal(33, 9), clipped 0..63; "
                       "second session = first + U(-2, 2)",
        "label": "round(clip(true + N(0, label_noise_sd), 0, 63))",
        "severity": f"s = min(true, {SEVERITY_CAP:g}) / {SEVERITY_CAP:g}",
        "mouth_droop": f"{cues.droop_max:g} * s - 0.03 * smile + N(0, 0.004)  "
                       "(fraction of size)",
        "eye_openness": f"(1 - {cues.open_drop:g} * s) * lognormal(0, 0.08); "
                        "blinks 7% -> 0.12",
        "brow_inner_raise_deg": f"{cues.brow_max_deg:g} * s - 4 * smile + N(0, 3)",
        "smile": "(1 - 0.7 s) * clip(N(0.25, 0.45), 0, 1) per frame",
        "label_free": ["head size", "eye spacing and size", "brow height/thickness/slant",
                       "nose and mouth geometry", "skin, hair, iris, lip, shirt, background "
                       "colours", "placement (shift, roll, scale) and per-frame jitter",
                       "gaze", "blinks", "mouth opening", "lighting gain", "pixel noise",
                       "subject ids (random 3-digit)"],
        "eye_targets": {"eye_y": EYE_Y, "eye_dist": 2 * EYE_HALF_DIST},
    }


def _prepare_out(out: Path) -> None:
    """Refuse to replace anything but an empty folder or an earlier synthetic-faces corpus."""
    if not out.exists():
        return
    if not out.is_dir():
        raise DataError(out, "exists and is not a folder")
    if not any(out.iterdir()):
        return
    try:
        previous = json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError):
        previous = None
    if not isinstance(previous, dict) or previous.get("generator") != GENERATOR:
        raise DataError(out, "folder is not empty and holds no synthetic-faces corpus; "
                             "choose another --out")


def generate_faces(out_dir, n_subjects=24, frames_per_video=8, size=96, seed=0,
                   label_noise_sd=3.0, *, second_session_frac=0.3,
                   split_fractions=(0.6, 0.2, 0.2), droop_max=DROOP_MAX,
                   open_drop=OPEN_DROP, brow_max_deg=BROW_MAX_DEG) -> dict:
    """Write the synthetic face corpus to ``out_dir``; return its manifest.

    ``droop_max``, ``open_drop``, ``brow_max_deg``: the score's effect on the three
    expression cues (:class:`CueStrength`; defaults subtle, the demo's stronger).

    Written into a temporary sibling folder and renamed into place at the end (an
    interrupted run leaves nothing half-written); an existing earlier corpus there is
    replaced, any other non-empty folder refused (:class:`DataError`). Same arguments
    -> identical files.
    """
    if int(frames_per_video) < 1 or int(size) < 32 or label_noise_sd < 0:
        raise ValueError("need frames_per_video >= 1, size >= 32, label_noise_sd >= 0")
    if not 0 <= second_session_frac <= 1 or len(split_fractions) != 3:
        raise ValueError("second_session_frac in [0, 1]; split_fractions: three numbers")
    cues = CueStrength(float(droop_max), float(open_drop), float(brow_max_deg))
    cues.check()
    out = Path(out_dir)
    _prepare_out(out)
    params = {"n_subjects": int(n_subjects), "frames_per_video": int(frames_per_video),
              "size": int(size), "seed": int(seed), "label_noise_sd": float(label_noise_sd),
              "second_session_frac": float(second_session_frac),
              "split_fractions": [float(f) for f in split_fractions],
              "droop_max": cues.droop_max, "open_drop": cues.open_drop,
              "brow_max_deg": cues.brow_max_deg}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        for split in SPLITS:
            (tmp / "faces" / split).mkdir(parents=True)
            (tmp / "labels" / split).mkdir(parents=True)
        videos = []
        for meta, frames in iter_videos(**params):
            _write_video(tmp, meta, frames)
            videos.append(meta)
        videos.sort(key=lambda v: (SPLITS.index(v["split"]), v["video_id"]))
        floor, mean_pred = noise_floor(videos)
        manifest = {"corpus": "synthetic-faces", "generator": GENERATOR, "seed": int(seed),
                    "parameters": params, "signal": signal_description(cues),
                    "noise_floor": floor, "mean_predictor_rmse": mean_pred, "videos": videos}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def summary_lines(manifest: dict, seconds: float | None = None) -> list[str]:
    """Human summary: videos and subjects per split, mean-predictor RMSE, noise floor."""
    vids = manifest["videos"]
    lines = []
    for split in SPLITS:
        rows = [v for v in vids if v["split"] == split]
        labels = [v["label"] for v in rows]
        lines.append(f"{split:5s}: {len(rows)} videos, {len({v['subject'] for v in rows})} "
                     f"subjects, labels mean {np.mean(labels):.1f} (min {min(labels)}, "
                     f"max {max(labels)})")
    if seconds is not None:
        lines.append(f"written in {seconds:.1f} s")
    mp, nf = manifest["mean_predictor_rmse"], manifest["noise_floor"]
    lines.append("mean-predictor RMSE (train-label mean): " + ", ".join(
        f"{s} {mp[s]['rmse']:.2f}" for s in SPLITS))
    lines.append("noise floor RMSE (true latent score vs label): " + ", ".join(
        f"{s} {nf[s]['rmse']:.2f}" for s in (*SPLITS, "all")))
    return lines


def main(argv=None) -> int:
    """``python -m hmhn.data.synth --out data/synthetic-faces [--size 224] [--small]``."""
    ap = argparse.ArgumentParser(prog="python -m hmhn.data.synth",
                                 description="write the synthetic face corpus")
    ap.add_argument("--out", default="data/synthetic-faces")
    ap.add_argument("--size", type=int, help="frame side in pixels (default 96)")
    ap.add_argument("--small", action="store_true",
                    help=f"a tiny corpus for tests: {SMALL} unless given")
    ap.add_argument("--n-subjects", dest="n_subjects", type=int)
    ap.add_argument("--frames-per-video", dest="frames_per_video", type=int)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--label-noise-sd", dest="label_noise_sd", type=float, default=3.0)
    args = ap.parse_args(argv)
    kw = dict(SMALL) if args.small else {}
    for key in ("n_subjects", "frames_per_video", "size"):
        if getattr(args, key) is not None:
            kw[key] = getattr(args, key)
    t0 = time.time()
    try:
        manifest = generate_faces(args.out, seed=args.seed, label_noise_sd=args.label_noise_sd,
                                  **kw)
    except (DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"synthetic faces written to {args.out}")
    for line in summary_lines(manifest, time.time() - t0):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
