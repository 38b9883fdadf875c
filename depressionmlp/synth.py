"""The bundled synthetic corpus: OpenFace 2.x CSVs whose only depression cue is motion.

A measuring instrument for the rest of the toolkit, so it is built to be honest:
the label lives *only* in facial dynamics, every static per-recording statistic is
independent of it, and the best achievable error (the noise floor) is known and
written into ``manifest.json``.

Layout (the same as AVEC 2013's in this project)::

    <out>/openface/{train,dev,test}/<rec>.csv           OpenFace 2.x FeatureExtraction CSV
    <out>/labels/{train,dev,test}/<rec>_Depression.csv   one integer BDI-II label, no header
    <out>/manifest.json

``<rec>`` is ``<subject>_<session>``; subjects are random 3-digit ids (not ordered by
label), sessions 1 or 2. Every CSV has the 714 columns of
:data:`depressionmlp.data.schema.OPENFACE_COLUMNS` in order, ", "-separated like
OpenFace writes them (header and rows), one row per frame at ``fps`` (30),
``frame`` from 1, ``face_id`` 0, ``timestamp = (frame - 1) / fps``, with OpenFace's
decimals (timestamp 3, confidence 2, gaze 6, gaze angles 3, eye landmarks 1, pose
translation 1 and rotation 3, 2-D/3-D landmarks 1, PDM parameters 3, AUs 2). The
frame is 640 x 480 pixels.

Scores
    Each subject has a latent true BDI-II score from a skewed mixture (85 %
    gamma(k=1.8, theta=6.5), 15 % normal(33, 9); clipped to 0..63; mean ~15, a few
    severe cases). A second session (fraction ``second_session_frac`` of subjects,
    chosen at random) differs by U(-2, 2). The observed label is
    ``round(clip(true + N(0, label_noise_sd), 0, 63))``. ``noise_floor`` in the
    manifest is the recording-level RMSE of predicting the label with the true score:
    no model can do better on average. Splits are subject-disjoint and stratified
    (subjects sorted by true score, split quotas assigned in shuffled blocks).

Signal (the only place the score enters)
    An expressivity ``E = 1 - 0.75 * min(true, 45) / 45`` (1 at score 0, 0.25 at 45+)
    drives five latent expression axes (smile / lip-corner depressor, brow raise /
    frown, mouth open / lip press, upper-lip raise / nose wrinkle, lip stretch /
    squint). Each axis is a sum of raised-cosine events of random sign at Poisson
    times with rate ``0.8/s * (0.35 + 0.65 E)``, amplitude ``1.3 * E`` (AU
    intensity units, per-event log-normal spread 0.35) and duration
    ``1.2 s / (0.5 + 0.5 E)`` (per-event spread 0.3): more depressed faces make fewer,
    smaller, slower expressions. The axes are re-centred to zero mean per
    recording, then (a) move the 3-D face (brows, eyelids, mouth corners, lips, jaw)
    before head pose and projection, so the 2-D keypoints' motion carries the cue,
    and (b) raise the AU intensities through a fixed AU x axis mixing matrix (each
    sign of an axis drives its own AUs: smile -> AU12, lip-corner depressor -> AU15),
    so the temporal spread of ``AUxx_r`` carries it. Presence ``AUxx_c`` switches on around
    the events of its axis, stretched so that the fraction of frames present is the
    subject's own (label-free) value: the *rate* of activations carries the cue, the
    fraction does not. A 3-second window often holds no event at all, so single
    segments are weak evidence; a recording is good evidence.

Nuisance (independent of the score)
    Per subject: face shape (deformation of a 68-point mean face), face width
    120-260 px, position in the frame, depth, head-pose drift amplitude (slow
    Ornstein-Uhlenbeck drifts in Rx/Ry/Rz and translation, plus fast jitter),
    expressivity and event-rate multipliers (log-normal, sd 0.05; they blur the
    signal a little, so the true achievable error is somewhat above the noise floor), AU baseline levels,
    tracker jitter, blink rate (blinks drive AU45 and the eyelids), gaze direction,
    confidence level, AU-presence fractions, tracking-failure rate. The mean of every
    AU intensity is set to the subject's baseline exactly (re-centring after
    clipping), landmark means follow the subject's placement, and frame counts,
    failures, confidence, ids and file names are drawn without the score.

Other columns
    3-D landmarks are the 2-D ones back-projected with the per-frame depth (pinhole,
    f = 500 px, principal point at the frame centre); pose is the simulated head
    pose; eye landmarks follow the eye keypoints and a label-free gaze; PDM rigid
    parameters follow the pose, the 34 non-rigid ones are random per subject plus
    small noise. None of them carries anything beyond the 2-D keypoints.

Failed tracking
    Runs of 1-20 frames (geometric, mean ~5) at a per-subject rate of
    ``failed_frame_rate`` times a gamma(4, 0.25) multiplier (at most 2.5): ``success = 0``, ``confidence`` < 0.45, and either all
    measurement columns 0 (as OpenFace writes when it finds no face) or garbage
    landmarks (a collapsed, displaced face) with zero AUs.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal import lfilter

from depressionmlp.data.schema import (AU_INTENSITY, AU_PRESENCE, N_EYE_LANDMARKS,
                                       OPENFACE_COLUMNS)
from depressionmlp.errors import DataError
from depressionmlp.runs import swap_into_place

FRAME_WIDTH = 640
FRAME_HEIGHT = 480
FOCAL_PX = 500.0
SPLITS = ("train", "dev", "test")
N_AXES = 5
AXIS_NAMES = ("smile(+)/lip-corner-depressor(-)", "brow-raise(+)/frown(-)",
              "mouth-open(+)/lip-press(-)", "upper-lip-raise(+)/relax(-)",
              "lip-stretch+squint(+)/relax(-)")
# signal constants (documented in the module docstring and the manifest)
EVENT_RATE_HZ = 0.8
EVENT_AMPLITUDE = 1.3
EVENT_DURATION_S = 1.2
SMALL = {"n_subjects": 12, "duration_s": (12, 20)}
#: Bumped whenever the same parameters would write different data; a corpus written
#: by another version is not reused.
GENERATOR_VERSION = 3

_COL = {name: i for i, name in enumerate(OPENFACE_COLUMNS)}


# ----------------------------------------------------------------------------- geometry

def mean_face() -> np.ndarray:
    """A plausible neutral 68-point face (iBUG order), (68, 3) in face-width units.

    x to the image right, y down, z away from the camera; the face is 1 wide
    (jaw 0 to jaw 16) and centred on the nose bridge. Jaw 0-16, brows 17-26,
    nose 27-35, eyes 36-47, mouth 48-67 (outer 48-59, inner 60-67).
    """
    p = np.zeros((68, 3))
    phi = np.linspace(np.pi, 0.0, 17)
    p[0:17, 0] = 0.5 * np.cos(phi)
    p[0:17, 1] = -0.12 + 0.62 * np.sin(phi) ** 1.2
    t = np.linspace(0, 1, 5)
    brow_x = -0.42 + 0.34 * t
    brow_y = -0.30 - 0.06 * np.sin(np.pi * (0.3 + 0.7 * t))
    p[17:22, 0], p[17:22, 1] = brow_x, brow_y
    p[22:27, 0], p[22:27, 1] = -brow_x[::-1], brow_y[::-1]
    p[27:31, 0], p[27:31, 1] = 0.0, np.linspace(-0.20, 0.05, 4)
    p[31:36, 0] = np.linspace(-0.09, 0.09, 5)
    p[31:36, 1] = 0.10 + 0.02 * (1 - np.abs(np.linspace(-1, 1, 5)))
    ang = np.array([180, 120, 60, 0, -60, -120]) * np.pi / 180
    for first, cx in ((36, -0.20), (42, 0.20)):      # corner, 2 upper, corner, 2 lower
        ex = cx + 0.10 * np.cos(ang)
        ey = -0.15 - 0.04 * np.sin(ang)
        p[first:first + 6, 0], p[first:first + 6, 1] = ex, ey
    ang = np.linspace(np.pi, -np.pi, 13)[:-1]           # 48 right corner, upper lip first
    p[48:60, 0] = 0.18 * np.cos(ang)
    p[48:60, 1] = 0.30 - np.where(np.sin(ang) > 0, 0.06, 0.07) * np.sin(ang)
    ang_in = np.linspace(np.pi, -np.pi, 9)[:-1]
    p[60:68, 0] = 0.12 * np.cos(ang_in)
    p[60:68, 1] = 0.30 - 0.03 * np.sin(ang_in)     # lips parted: the inner-lip gap stays
    #                                                 positive, so its mean cannot grow with motion
    p[:, 2] = 0.55 * (2 * p[:, 0]) ** 2 - 0.12 * np.exp(-((p[:, 0] / 0.1) ** 2
                                                          + ((p[:, 1] - 0.08) / 0.12) ** 2))
    return p


def expression_bases(face: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Displacements (face-width units) per unit of each axis and of a blink.

    Returns ``(pos, neg, blink)``: ``pos``/``neg`` are (N_AXES, 68, 3), applied to
    ``relu(e)`` and ``relu(-e)`` of the axis value ``e``; ``blink`` is (68, 3) per unit
    eyelid closure.
    """
    pos = np.zeros((N_AXES, 68, 3))
    neg = np.zeros((N_AXES, 68, 3))
    sx = np.sign(face[:, 0])
    corners, in_corners = [48, 54], [60, 64]
    upper_out, lower_out = list(range(49, 54)), list(range(55, 60))
    upper_in, lower_in = [61, 62, 63], [65, 66, 67]
    upper_lids, lower_lids = [37, 38, 43, 44], [40, 41, 46, 47]
    brows = list(range(17, 27))
    inner_brows = [20, 21, 22, 23]
    # 0 smile (+) / lip-corner depressor (-)
    for i in corners + in_corners:
        pos[0, i] = (0.030 * sx[i], -0.028, -0.01)
        neg[0, i] = (-0.006 * sx[i], 0.028, 0.0)
    pos[0, lower_lids, 1] = -0.010
    pos[0, upper_out + upper_in, 1] = -0.006
    neg[0, lower_out, 1] = 0.006
    # 1 brow raise (+) / frown (-)
    pos[1, brows, 1] = -0.045
    pos[1, upper_lids, 1] = -0.010
    neg[1, brows, 1] = 0.030
    for i in inner_brows:
        neg[1, i, 0] = -0.018 * sx[i]
    neg[1, upper_lids, 1] = 0.008
    # 2 mouth open (+) / lip press (-)
    pos[2, lower_out + lower_in, 1] = 0.055
    pos[2, [48, 54, 60, 64], 1] = 0.025
    jaw_w = np.exp(-((np.arange(17) - 8) / 3.5) ** 2)
    pos[2, 0:17, 1] = 0.045 * jaw_w
    pos[2, upper_out + upper_in, 1] = -0.006
    neg[2, upper_out, 1] = 0.010
    neg[2, lower_out, 1] = -0.012
    for i in corners + in_corners:
        neg[2, i, 0] = -0.010 * sx[i]
    # 3 upper-lip raise / nose wrinkle (+), relax (-)
    pos[3, upper_out + upper_in, 1] = -0.022
    pos[3, 31:36, 1] = -0.012
    pos[3, [48, 54], 1] = -0.008
    neg[3, upper_out, 1] = 0.008
    # 4 lip stretch + squint (+), relax (-)
    for i in corners + in_corners:
        pos[4, i, 0] = 0.030 * sx[i]
        neg[4, i, 0] = -0.012 * sx[i]
    pos[4, lower_out, 1] = 0.008
    pos[4, upper_lids, 1] = 0.010
    pos[4, lower_lids, 1] = -0.008
    blink = np.zeros((68, 3))
    blink[upper_lids, 1] = 0.070
    blink[lower_lids, 1] = -0.008
    return pos, neg, blink


def au_mixing() -> np.ndarray:
    """(17, N_AXES) weights from the expression axes to the AU intensities."""
    w = {"AU01": {1: 0.9}, "AU02": {1: 0.8}, "AU04": {1: -0.8}, "AU05": {1: 0.4},
         "AU06": {0: 0.8}, "AU07": {4: 0.6, 1: -0.3}, "AU09": {3: 0.7},
         "AU10": {3: 0.8, 0: 0.2}, "AU12": {0: 1.0}, "AU14": {4: 0.5, 0: 0.2},
         "AU15": {0: -0.6}, "AU17": {2: -0.6}, "AU20": {4: 0.7}, "AU23": {2: -0.5},
         "AU25": {2: 0.9}, "AU26": {2: 0.7}, "AU45": {}}
    m = np.zeros((len(AU_INTENSITY), N_AXES))
    for i, au in enumerate(AU_INTENSITY):
        for k, v in w[au].items():
            m[i, k] = v
    return m


def presence_drivers() -> list[tuple[int, int]]:
    """For each AU_PRESENCE entry: (axis, sign) whose events switch it on; axis -1 = blink."""
    mix = au_mixing()
    out = []
    for au in AU_PRESENCE:
        if au == "AU45":
            out.append((-1, 1))
        elif au == "AU28":                      # lip suck: with lip press
            out.append((2, -1))
        else:
            row = mix[AU_INTENSITY.index(au)]
            k = int(np.argmax(np.abs(row)))
            out.append((k, int(np.sign(row[k]))))
    return out


def rotation_matrices(rx, ry, rz) -> np.ndarray:
    """(T, 3, 3) rotations R = Rx @ Ry @ Rz (OpenFace's convention) for angle arrays."""
    cx, sx_, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    one, zero = np.ones_like(rx), np.zeros_like(rx)
    rxm = np.stack([np.stack([one, zero, zero], -1), np.stack([zero, cx, -sx_], -1),
                    np.stack([zero, sx_, cx], -1)], -2)
    rym = np.stack([np.stack([cy, zero, sy], -1), np.stack([zero, one, zero], -1),
                    np.stack([-sy, zero, cy], -1)], -2)
    rzm = np.stack([np.stack([cz, -sz, zero], -1), np.stack([sz, cz, zero], -1),
                    np.stack([zero, zero, one], -1)], -2)
    return rxm @ rym @ rzm


# ----------------------------------------------------------------------------- processes

def ou_process(rng, n: int, k: int, sd, tau_frames: float) -> np.ndarray:
    """(n, k) stationary AR(1) series with marginal sd ``sd`` (scalar or (k,))."""
    a = math.exp(-1.0 / max(tau_frames, 1e-6))
    noise = rng.standard_normal((n, k)) * math.sqrt(1 - a * a)
    noise[0] = rng.standard_normal(k)
    x = lfilter([1.0], [1.0, -a], noise, axis=0)
    return x * np.asarray(sd)


def event_train(rng, n: int, fps: float, rate_hz: float, amp: float, dur_s: float,
                signed: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sum of raised-cosine events at Poisson times.

    Returns ``(signal (n,), centres (m,) frame index, signs (m,))``; ``amp`` and
    ``dur_s`` are medians of log-normal per-event draws (sd 0.35 and 0.3).
    """
    total_s = n / fps
    m = rng.poisson(rate_hz * total_s)
    dur = np.maximum(dur_s * rng.lognormal(0.0, 0.3, m), 0.25)
    start = rng.uniform(-0.5 * dur, total_s - 0.5 * dur)
    sign = rng.choice([-1.0, 1.0], m) if signed else np.ones(m)
    a = amp * rng.lognormal(0.0, 0.35, m) * sign
    t = np.arange(n) / fps
    sig = np.zeros(n)
    for s0, d, ai in zip(start, dur, a):
        lo, hi = max(int(s0 * fps), 0), min(int(math.ceil((s0 + d) * fps)) + 1, n)
        u = (t[lo:hi] - s0) / d
        inside = (u >= 0) & (u <= 1)
        sig[lo:hi] += np.where(inside, ai * 0.5 * (1 - np.cos(2 * np.pi * u)), 0.0)
    centres = np.clip(((start + 0.5 * dur) * fps).astype(int), 0, n - 1)
    return sig, centres, sign


def presence_track(rng, n: int, centres: np.ndarray, widths: np.ndarray,
                   frac: float) -> np.ndarray:
    """0/1 track switched on around ``centres``, covering about ``frac`` of the frames.

    Interval half-widths are ``scale * widths``; ``scale`` is found by bisection so
    that the covered fraction matches ``frac``: how often the AU switches on follows
    the events, how long it is on does not follow the label.
    """
    if len(centres) == 0:
        centres = rng.integers(0, n, 1)
        widths = np.array([1.0])
    def cover(scale):
        on = np.zeros(n + 1, dtype=np.int64)
        half = np.maximum(scale * widths, 0.5)
        lo = np.clip(np.round(centres - half).astype(int), 0, n)
        hi = np.clip(np.round(centres + half).astype(int) + 1, 0, n)
        np.add.at(on, lo, 1)
        np.add.at(on, hi, -1)
        return np.cumsum(on)[:n] > 0

    lo_s, hi_s = 0.0, 4.0 * n / max(widths.sum(), 1e-9)
    for _ in range(30):
        mid = 0.5 * (lo_s + hi_s)
        if cover(mid).mean() < frac:
            lo_s = mid
        else:
            hi_s = mid
    return cover(hi_s).astype(float)


# ----------------------------------------------------------------------------- subjects

@dataclass
class Subject:
    """Everything fixed per subject. Only ``true_score`` is label information."""

    sid: str
    true_score: float
    split: str
    seed: np.random.SeedSequence
    n_sessions: int


def sample_true_scores(rng, n: int) -> np.ndarray:
    """Latent BDI-II scores: 85 % gamma(1.8, 6.5), 15 % normal(33, 9), clipped 0..63."""
    severe = rng.random(n) < 0.15
    s = np.where(severe, rng.normal(33.0, 9.0, n), rng.gamma(1.8, 6.5, n))
    return np.clip(s, 0.0, 63.0)


def assign_splits(rng, scores: np.ndarray, fracs) -> np.ndarray:
    """Subject-disjoint stratified split names: quota pattern by score, shuffled in blocks."""
    fracs = np.asarray(fracs, dtype=float)
    fracs = fracs / fracs.sum()
    n = len(scores)
    order = np.argsort(scores + rng.uniform(0, 1e-6, n), kind="stable")
    assigned = np.zeros(len(fracs))
    pattern = []
    for i in range(n):
        k = int(np.argmax(fracs * (i + 1) - assigned))
        assigned[k] += 1
        pattern.append(k)
    block = max(2, int(round(1.0 / fracs[fracs > 0].min())))
    pattern = np.array(pattern)
    for b in range(0, n, block):
        rng.shuffle(pattern[b:b + block])
    out = np.empty(n, dtype=object)
    out[order] = [SPLITS[k] for k in pattern]
    return out


def plan_subjects(seed: int, n_subjects: int, splits, second_session_frac: float):
    """Draw subjects (ids, scores, splits, sessions) from one seed."""
    ss = np.random.SeedSequence(seed)
    plan_seed, *child = ss.spawn(n_subjects + 1)
    rng = np.random.default_rng(plan_seed)
    ids = rng.choice(np.arange(100, 1000), n_subjects, replace=False)
    scores = sample_true_scores(rng, n_subjects)
    split = assign_splits(rng, scores, splits)
    sessions = np.where(rng.random(n_subjects) < second_session_frac, 2, 1)
    return [Subject(str(i), float(s), str(sp), c, int(k))
            for i, s, sp, c, k in zip(ids, scores, split, child, sessions)]


def expressivity(true_score: float) -> float:
    """E = 1 - 0.75 * min(score, 45) / 45: the one route from the score to the data."""
    return 1.0 - 0.75 * min(max(true_score, 0.0), 45.0) / 45.0


#: Where the score enters the data. Each cue leaves every other channel to a
#: label-free draw, so a model that reads the wrong channel learns nothing.
CUES = {
    "dynamic": "expression events: rate, amplitude and duration drive keypoint motion "
               "and AU intensity/presence dynamics (the bundled corpus)",
    "motion": "keypoint motion speed and amplitude only; AU dynamics label-free",
    "au_variability": "AU intensity variability and activation rate only; keypoint "
                      "motion label-free",
    "static": "resting AU levels only: less smiling (AU06, AU12, AU14 lower), more "
              "lip-corner depressor and brow lowerer (AU15, AU04 higher) when severe; "
              "all dynamics label-free",
    "region": "brow and eyelid keypoint motion only (one face region); the other "
              "regions and every AU label-free",
    "blink": "blink rate (2 exp(-3 s/45) x the subject's) and blink duration "
             "(x (1 + 2 s/45)) only: AU45 and eyelid keypoints",
    "mixed": "half-strength dynamics, half-strength resting AU levels and half-strength "
             "blinks together",
}
#: Resting-level shift per AU intensity at score 45 for the static cue (AU units).
STATIC_SHIFT = {"AU06": -1.6, "AU12": -2.0, "AU14": -1.0, "AU15": 1.2, "AU04": 1.2}
#: Keypoint displacement gain of the axes that carry a single-place keypoint cue,
#: so that expression motion stands out of head-pose motion and tracker jitter.
KEYPOINT_GAIN = 3.0
BROW_AXIS = 1


def cue_plan(cue: str, true_score: float, free_score: float | None = None) -> dict:
    """Per-recording generative settings of one cue.

    Returns ``keypoint_gain`` (N_AXES,) multiplying the keypoint displacement of
    each axis, ``e_keypoints`` / ``e_aus`` (N_AXES,) expressivities of the axes that
    move the keypoints and the AUs (the same array object when they share their
    events), ``blink_rate_mult``, ``blink_dur_mult`` and ``au_shift`` (17,) added
    to the subject's AU baselines. Channels the cue leaves alone follow
    ``free_score``, a per-subject draw from the score prior independent of the label.
    """
    if cue not in CUES:
        raise ValueError(f"cue must be one of {sorted(CUES)}, got {cue!r}")
    sev = min(max(true_score, 0.0), 45.0) / 45.0
    if cue != "dynamic" and free_score is None:
        raise ValueError(f"cue {cue!r} needs the subject's label-free free_score")
    e_true = np.full(N_AXES, expressivity(true_score))
    e_free = np.full(N_AXES, expressivity(free_score)) if free_score is not None else None
    plan = {"e_keypoints": e_true, "e_aus": e_true, "blink_rate_mult": 1.0,
            "blink_dur_mult": 1.0, "au_shift": np.zeros(len(AU_INTENSITY)),
            "keypoint_gain": np.ones(N_AXES)}
    static = np.array([STATIC_SHIFT.get(au, 0.0) for au in AU_INTENSITY])
    if cue == "motion":
        plan["e_aus"] = e_free
        plan["keypoint_gain"][:] = KEYPOINT_GAIN
    elif cue == "au_variability":
        plan["e_keypoints"] = e_free
    elif cue == "region":
        e_kp = e_free.copy()
        e_kp[BROW_AXIS] = e_true[BROW_AXIS]
        plan["e_keypoints"], plan["e_aus"] = e_kp, e_free
        plan["keypoint_gain"][BROW_AXIS] = 2 * KEYPOINT_GAIN
    elif cue in ("static", "blink"):
        plan["e_keypoints"] = plan["e_aus"] = e_free
    if cue == "static":
        plan["au_shift"] = static * sev
    if cue == "blink":
        plan["blink_rate_mult"] = 2.0 * math.exp(-3.0 * sev)
        plan["blink_dur_mult"] = 1.0 + 2.0 * sev
    if cue == "mixed":
        e_half = 0.5 * (e_true + e_free)
        plan["e_keypoints"] = plan["e_aus"] = e_half
        plan["au_shift"] = 0.5 * static * sev
        plan["keypoint_gain"][:] = 0.5 * (1 + KEYPOINT_GAIN)
        plan["blink_rate_mult"] = 1.75 - 1.1 * sev
        plan["blink_dur_mult"] = 1.0 + 0.75 * sev
    return plan


def expression_axes(rng, n: int, fps: float, e: np.ndarray, nuis: dict, amp_rec: float):
    """(n, N_AXES) zero-mean expression axes with per-axis expressivity ``e``.

    Returns ``(axes, events, dur)``: ``events[k] = (centres, signs)`` of axis k and
    ``dur`` (N_AXES,) the median event duration per axis in seconds.
    """
    axes = np.zeros((n, N_AXES))
    events, durs = [], np.zeros(N_AXES)
    for k in range(N_AXES):
        rate = EVENT_RATE_HZ * (0.35 + 0.65 * e[k]) * nuis["rate_mult"]
        amp = EVENT_AMPLITUDE * e[k] * nuis["expr_mult"] * amp_rec
        durs[k] = EVENT_DURATION_S / (0.5 + 0.5 * e[k])
        axes[:, k], centres, signs = event_train(rng, n, fps, rate, amp, durs[k])
        events.append((centres, signs))
    axes -= axes.mean(axis=0)
    return axes, events, durs


def draw_nuisance(rng) -> dict:
    """Per-subject, label-free appearance and behaviour parameters."""
    face = mean_face()
    width_px = rng.uniform(120, 260)
    height_px = 1.15 * width_px
    mx = 0.5 * width_px + 30
    my = 0.5 * height_px + 30
    deform = np.zeros((68, 3))
    deform[:, 0] = face[:, 0] * rng.normal(0, 0.05)                  # wider / narrower
    deform[:, 1] = face[:, 1] * rng.normal(0, 0.06)                  # longer / shorter
    deform[36:48, 0] += np.sign(face[36:48, 0]) * rng.normal(0, 0.015)  # eye spacing
    deform[48:68, 0] += face[48:68, 0] * rng.normal(0, 0.08)         # mouth width
    deform[17:27, 1] += rng.normal(0, 0.015)                         # brow height
    deform += rng.normal(0, 0.006, (68, 3))
    return {
        "shape": face + deform,
        "width_mm": rng.uniform(130, 150),
        "width_px": width_px,
        "centre_px": (rng.uniform(mx, FRAME_WIDTH - mx), rng.uniform(my, FRAME_HEIGHT - my)),
        "pose_sd": rng.uniform(0.03, 0.12, 3),
        "pose_mean": rng.normal(0, [0.08, 0.12, 0.05]),
        "trans_sd_px": rng.uniform(3, 15),
        "head_jitter": rng.uniform(0.002, 0.008),
        "expr_mult": rng.lognormal(0, 0.05),
        "rate_mult": rng.lognormal(0, 0.05),
        "au_base": np.concatenate([rng.uniform(0.5, 1.8, 16), rng.uniform(0.15, 0.5, 1)]),
        "au_jitter": rng.uniform(0.04, 0.12),
        "lmk_jitter_px": rng.uniform(0.3, 1.0),
        "blink_hz": rng.uniform(0.1, 0.45),
        "gaze_mean": rng.normal(0, [0.12, 0.10]),
        "gaze_sd": rng.uniform(0.03, 0.10),
        "conf_mean": rng.uniform(0.86, 0.97),
        "presence_frac": rng.uniform(0.12, 0.45, len(AU_PRESENCE)),
        "flicker": rng.uniform(0.0, 0.002),
        "fail_mult": min(rng.gamma(4.0, 0.25), 2.5),
        "pdm_nonrigid": rng.normal(0, np.linspace(25, 2, 34)),
    }


# ----------------------------------------------------------------------------- one recording

def failure_mask(rng, n: int, rate: float) -> np.ndarray:
    """Boolean (n,) runs of failed frames, run lengths geometric (mean ~5, max 20)."""
    mask = np.zeros(n, dtype=bool)
    if rate <= 0:
        return mask
    lengths_mean = 5.0
    n_runs = rng.poisson(rate * n / lengths_mean)
    for start in rng.integers(0, n, n_runs):
        length = min(int(rng.geometric(1 / lengths_mean)), 20)
        mask[start:start + length] = True
    return mask


def latent_signals(rng, nuis: dict, true_score: float, n: int, fps: float,
                   cue: str = "dynamic", free_score: float | None = None) -> dict:
    """Everything of one recording the score can reach, before rendering and tracking.

    Returns ``plan`` (:func:`cue_plan`), ``keypoint_axes`` (n, N_AXES) the expression
    axes as they move the keypoints (gain applied), ``axes_au`` (n, N_AXES) the axes
    that drive the AUs with their ``events_au`` and ``dur_au``, ``blink`` (n,) in
    [0, 1] with ``blink_events`` (its event centres) and ``au_base`` (17,) the resting
    AU intensities. :func:`simulate_recording` renders these; the cue floor
    (:mod:`depressionmlp.cue_floor`) reads them directly.
    """
    plan = cue_plan(cue, true_score, free_score)
    # the signal: keypoints and AUs share the expression axes unless the cue puts the
    # score into only one of the two
    amp_rec = rng.lognormal(0, 0.04)
    axes, events, dur = expression_axes(rng, n, fps, plan["e_keypoints"], nuis, amp_rec)
    if plan["e_aus"] is plan["e_keypoints"]:
        axes_au, events_au, dur_au = axes, events, dur
    else:
        axes_au, events_au, dur_au = expression_axes(rng, n, fps, plan["e_aus"], nuis, amp_rec)
    blink_hz = nuis["blink_hz"] * plan["blink_rate_mult"]
    blink, blink_c, _ = event_train(rng, n, fps, blink_hz, 1.0, 0.25 * plan["blink_dur_mult"],
                                    signed=False)
    return {"plan": plan, "keypoint_axes": axes * plan["keypoint_gain"],
            "axes_au": axes_au, "events_au": events_au, "dur_au": dur_au,
            "blink": np.clip(blink, 0, 1), "blink_events": blink_c,
            "au_base": np.maximum(nuis["au_base"] + plan["au_shift"], 0.1)}


def simulate_recording(rng, nuis: dict, true_score: float, n: int, fps: float,
                       failed_frame_rate: float, cue: str = "dynamic",
                       free_score: float | None = None) -> tuple[np.ndarray, int]:
    """One recording's (n, 714) OpenFace values (unrounded) and its failed-frame count.

    ``cue`` says where the score enters (see :data:`CUES` and :func:`cue_plan`);
    ``free_score`` is the subject's label-free score-like draw that sets every
    channel the cue leaves alone (required unless ``cue == "dynamic"``).
    """
    lat = latent_signals(rng, nuis, true_score, n, fps, cue, free_score)
    blink, base = lat["blink"], lat["au_base"]
    axes_au, events_au, dur_au = lat["axes_au"], lat["events_au"], lat["dur_au"]
    pos_b, neg_b, blink_b = expression_bases(mean_face())
    # --- 3-D face in mm, head pose, projection
    w_mm = nuis["width_mm"]
    gained = lat["keypoint_axes"]
    disp = (np.maximum(gained, 0) @ pos_b.reshape(N_AXES, -1)
            + np.maximum(-gained, 0) @ neg_b.reshape(N_AXES, -1))
    disp -= disp.mean(axis=0)                   # the mean face stays the subject's own
    shape = nuis["shape"][None] + disp.reshape(n, 68, 3)
    shape = (shape + blink[:, None, None] * blink_b[None]) * w_mm
    tau = 3.0 * fps
    rot = (nuis["pose_mean"] + ou_process(rng, n, 3, nuis["pose_sd"], tau)
           + ou_process(rng, n, 3, nuis["head_jitter"], 2.0))
    tz = FOCAL_PX * w_mm / nuis["width_px"]
    centre = (np.array(nuis["centre_px"]) + ou_process(rng, n, 2, nuis["trans_sd_px"], 4 * fps))
    tx = (centre[:, 0] - FRAME_WIDTH / 2) * tz / FOCAL_PX
    ty = (centre[:, 1] - FRAME_HEIGHT / 2) * tz / FOCAL_PX
    tz_t = tz * (1 + ou_process(rng, n, 1, 0.02, 5 * fps)[:, 0])
    trans = np.stack([tx, ty, tz_t], -1)
    world = np.einsum("tij,tpj->tpi", rotation_matrices(*rot.T), shape) + trans[:, None]
    jit = ou_process(rng, n, 136, nuis["lmk_jitter_px"], 1.5).reshape(n, 68, 2)
    x2 = FOCAL_PX * world[..., 0] / world[..., 2] + FRAME_WIDTH / 2 + jit[..., 0]
    y2 = FOCAL_PX * world[..., 1] / world[..., 2] + FRAME_HEIGHT / 2 + jit[..., 1]
    z3 = world[..., 2]
    x3 = (x2 - FRAME_WIDTH / 2) * z3 / FOCAL_PX
    y3 = (y2 - FRAME_HEIGHT / 2) * z3 / FOCAL_PX
    # --- AUs
    mix = au_mixing()
    # AUs are activations: an axis drives the AUs of its own sign's action (smile -> AU12,
    # lip-corner depressor -> AU15), so intensities rise from the subject's baseline.
    au_r = (base + np.maximum(axes_au, 0) @ np.maximum(mix, 0).T
            + np.maximum(-axes_au, 0) @ np.maximum(-mix, 0).T
            + ou_process(rng, n, 17, nuis["au_jitter"], 2.0))
    au_r[:, -1] += 2.5 * blink
    au_r = recentre_clip(au_r, base)
    au_c = np.zeros((n, len(AU_PRESENCE)))
    for j, (k, sgn) in enumerate(presence_drivers()):
        if k < 0:
            au_c[:, j] = (blink > 0.5).astype(float)
            continue
        centres, signs = events_au[k]
        sel = signs == sgn
        widths = np.full(int(sel.sum()), 0.5 * dur_au[k] * fps)
        au_c[:, j] = presence_track(rng, n, centres[sel], widths, nuis["presence_frac"][j])
    flip = rng.random(au_c.shape) < nuis["flicker"]
    au_c = np.where(flip, 1 - au_c, au_c)
    # --- gaze and eye landmarks (label-free gaze; eyelids follow the keypoints)
    gaze_ang = (nuis["gaze_mean"] + ou_process(rng, n, 2, nuis["gaze_sd"], 0.8 * fps)
                + rot[:, [1, 0]] * 0.3)
    eye2d, eye3d = eye_landmarks(x2, y2, z3, gaze_ang)
    gvec = np.stack([np.sin(gaze_ang[:, 0]) * np.cos(gaze_ang[:, 1]), np.sin(gaze_ang[:, 1]),
                     -np.cos(gaze_ang[:, 0]) * np.cos(gaze_ang[:, 1])], -1)
    g0 = _unit(gvec + rng.normal(0, 0.01, gvec.shape) + [0.02, 0, 0])
    g1 = _unit(gvec + rng.normal(0, 0.01, gvec.shape) - [0.02, 0, 0])
    # --- assemble
    v = np.zeros((n, len(OPENFACE_COLUMNS)))
    frame = np.arange(1, n + 1)
    v[:, _COL["frame"]] = frame
    v[:, _COL["timestamp"]] = (frame - 1) / fps
    conf = np.clip(nuis["conf_mean"] + rng.normal(0, 0.015, n), 0.5, 0.99)
    v[:, _COL["confidence"]] = conf
    v[:, _COL["success"]] = 1
    gz = _COL["gaze_0_x"]
    v[:, gz:gz + 3], v[:, gz + 3:gz + 6], v[:, gz + 6:gz + 8] = g0, g1, gaze_ang
    el = _COL["eye_lmk_x_0"]
    m = N_EYE_LANDMARKS
    v[:, el:el + m], v[:, el + m:el + 2 * m] = eye2d[..., 0], eye2d[..., 1]
    v[:, el + 2 * m:el + 5 * m] = eye3d.transpose(0, 2, 1).reshape(n, 3 * m)
    p = _COL["pose_Tx"]
    v[:, p:p + 3], v[:, p + 3:p + 6] = trans, rot
    xs = _COL["x_0"]
    v[:, xs:xs + 68], v[:, xs + 68:xs + 136] = x2, y2
    x3c = _COL["X_0"]
    v[:, x3c:x3c + 68], v[:, x3c + 68:x3c + 136], v[:, x3c + 136:x3c + 204] = x3, y3, z3
    pd = _COL["p_scale"]
    v[:, pd] = nuis["width_px"] / 100.0 * tz / tz_t
    v[:, pd + 1:pd + 4] = rot + rng.normal(0, 0.003, (n, 3))
    v[:, pd + 4:pd + 6] = centre
    v[:, pd + 6:pd + 40] = nuis["pdm_nonrigid"] + rng.normal(0, 0.8, (n, 34))
    a0 = _COL["AU01_r"]
    v[:, a0:a0 + 17], v[:, a0 + 17:a0 + 35] = au_r, au_c
    fails = failure_mask(rng, n, failed_frame_rate * nuis["fail_mult"])
    apply_failures(rng, v, fails)
    return v, int(fails.sum())


def recentre_clip(au: np.ndarray, base: np.ndarray, lo=0.0, hi=5.0) -> np.ndarray:
    """Clip AU intensities to [lo, hi] while keeping each column's mean at ``base``."""
    out = np.clip(au, lo, hi)
    for _ in range(4):
        out = np.clip(out + (base - out.mean(axis=0)), lo, hi)
    return out


def eye_landmarks(x2, y2, z3, gaze_ang) -> tuple[np.ndarray, np.ndarray]:
    """OpenFace-like 56 eye landmarks (28 per eye: 8 iris, 12 eyelid, 8 pupil ring).

    2-D points follow the six eye keypoints of each eye; the iris sits at the eye
    centre shifted by the gaze. 3-D by back-projection at the eye's mean depth.
    """
    n = x2.shape[0]
    out2 = np.zeros((n, N_EYE_LANDMARKS, 2))
    out3 = np.zeros((n, N_EYE_LANDMARKS, 3))
    ring8 = np.linspace(0, 2 * np.pi, 9)[:-1]
    for e, first in enumerate((42, 36)):                  # OpenFace lists the left eye first
        ex, ey = x2[:, first:first + 6], y2[:, first:first + 6]
        mid_x = 0.5 * (ex + np.roll(ex, -1, axis=1))
        mid_y = 0.5 * (ey + np.roll(ey, -1, axis=1))
        lid_x = np.stack([ex, mid_x], -1).reshape(n, 12)
        lid_y = np.stack([ey, mid_y], -1).reshape(n, 12)
        cx, cy = ex.mean(1), ey.mean(1)
        w = np.abs(ex[:, 3] - ex[:, 0])
        ix = cx + 0.35 * w * np.sin(gaze_ang[:, 0])
        iy = cy + 0.35 * w * np.sin(gaze_ang[:, 1])
        r = 0.2 * w
        iris = np.stack([ix[:, None] + r[:, None] * np.cos(ring8),
                         iy[:, None] + r[:, None] * np.sin(ring8)], -1)
        pupil = np.stack([ix[:, None] + 0.4 * r[:, None] * np.cos(ring8),
                          iy[:, None] + 0.4 * r[:, None] * np.sin(ring8)], -1)
        pts = np.concatenate([iris, np.stack([lid_x, lid_y], -1), pupil], 1)
        sl = slice(28 * e, 28 * (e + 1))
        out2[:, sl] = pts
        z = z3[:, first:first + 6].mean(1)[:, None] + np.zeros((1, 28))
        out3[:, sl, 0] = (pts[..., 0] - FRAME_WIDTH / 2) * z / FOCAL_PX
        out3[:, sl, 1] = (pts[..., 1] - FRAME_HEIGHT / 2) * z / FOCAL_PX
        out3[:, sl, 2] = z
    return out2, out3


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def apply_failures(rng, v: np.ndarray, fails: np.ndarray) -> None:
    """Write OpenFace's failed-tracking rows in place: zeros, or garbage landmarks."""
    if not fails.any():
        return
    idx = np.flatnonzero(fails)
    v[idx, _COL["success"]] = 0
    v[idx, _COL["confidence"]] = rng.uniform(0.0, 0.45, len(idx))
    first = _COL["gaze_0_x"]
    starts = idx[np.r_[True, np.diff(idx) > 1]]
    ends = np.r_[idx[np.r_[np.diff(idx) > 1, False]], idx[-1]] + 1
    for s, e in zip(starts, ends):
        keep = v[s:e].copy()
        v[s:e, first:] = 0.0
        if rng.random() < 0.4:                             # garbage: collapsed, displaced
            xs, ys = _COL["x_0"], _COL["y_0"]
            shift = rng.uniform(-150, 150, 2)
            for c0, d in ((xs, shift[0]), (ys, shift[1])):
                pts = keep[:, c0:c0 + 68]
                v[s:e, c0:c0 + 68] = (pts.mean(1, keepdims=True) + 0.3
                                      * (pts - pts.mean(1, keepdims=True)) + d)


# ----------------------------------------------------------------------------- formatting

def column_decimals() -> np.ndarray:
    """OpenFace 2.x decimals per column (0 = integer)."""
    dec = np.zeros(len(OPENFACE_COLUMNS), dtype=np.int64)
    for name, i in _COL.items():
        if name in ("frame", "face_id", "success"):
            d = 0
        elif name == "timestamp":
            d = 3
        elif name == "confidence" or name.startswith("AU"):
            d = 2
        elif name.startswith("gaze_angle"):
            d = 3
        elif name.startswith("gaze"):
            d = 6
        elif name in ("pose_Rx", "pose_Ry", "pose_Rz") or name.startswith("p_"):
            d = 3
        else:                                      # eye landmarks, pose T, 2-D, 3-D
            d = 1
        dec[i] = d
    return dec


def format_rows(values: np.ndarray, decimals: np.ndarray, sep: bytes = b", ") -> bytes:
    """Fixed-decimal CSV text for a float matrix, vectorised (no per-cell Python).

    Each cell is rounded to its column's decimals and written, digit by digit over
    the whole matrix, right-aligned into a fixed-width byte grid (unused bytes 0);
    dropping the zero bytes leaves ``"cell, cell, ..., cell\\n"`` rows.
    """
    n, c = values.shape
    decimals = np.asarray(decimals, dtype=np.int64)
    q = np.rint(values * 10.0 ** decimals).astype(np.int64).reshape(-1)
    neg = np.flatnonzero(q < 0)
    q = np.abs(q)
    dec = np.tile(decimals, n)
    dot = (dec > 0).astype(np.int64)
    max_digits = max(int(decimals.max()) + 1, len(str(int(q.max()))) if q.size else 1)
    n_digits = np.maximum(dec + 1, 1)                        # "0.00" has 3 digits
    for i in range(1, max_digits):
        n_digits = np.maximum(n_digits, np.where(q >= 10 ** i, i + 1, 0))
    width = max_digits + 2                                   # digits, dot, minus
    grid = np.zeros((n * c, width + len(sep)), dtype=np.uint8)
    grid[:, width:] = np.frombuffer(sep, dtype=np.uint8)
    last = np.arange(n) * c + (c - 1)
    grid[last, width:] = 0
    grid[last, width] = ord("\n")
    for j in range(max_digits):
        q, d = np.divmod(q, 10)
        live = np.flatnonzero(j < n_digits)
        pos = j + dot[live] * (j >= dec[live])
        grid[live, width - 1 - pos] = 48 + d[live].astype(np.uint8)
    has_dot = np.flatnonzero(dot)
    grid[has_dot, width - 1 - dec[has_dot]] = ord(".")
    grid[neg, width - 1 - (n_digits[neg] + dot[neg])] = ord("-")
    flat = grid.reshape(-1)
    return flat[flat != 0].tobytes()


def openface_header() -> bytes:
    """The header line, ", "-separated as OpenFace writes it."""
    return (", ".join(OPENFACE_COLUMNS) + "\n").encode()


# ----------------------------------------------------------------------------- corpus

def _check_args(n_subjects, duration_s, fps, label_noise_sd, failed_frame_rate,
                second_session_frac, splits, seed=None, cue="dynamic"):
    """Raise ValueError for parameters that cannot make a corpus."""
    if cue not in CUES:
        raise ValueError(f"cue must be one of {sorted(CUES)}, got {cue!r}")
    if n_subjects < 3:
        raise ValueError(f"n_subjects must be >= 3 (one per split), got {n_subjects}")
    if len(duration_s) != 2 or not 1 <= duration_s[0] <= duration_s[1]:
        raise ValueError(f"duration_s must be (lo, hi) seconds with 1 <= lo <= hi, got {duration_s}")
    if fps <= 0 or label_noise_sd < 0 or not 0 <= failed_frame_rate < 0.5:
        raise ValueError("need fps > 0, label_noise_sd >= 0 and 0 <= failed_frame_rate < 0.5")
    if not 0 <= second_session_frac <= 1:
        raise ValueError(f"second_session_frac must be in [0, 1], got {second_session_frac}")
    if len(splits) != 3 or min(splits) <= 0:
        raise ValueError(f"splits must be three positive fractions, got {splits}")


def iter_recordings(*, n_subjects=80, seed=0, duration_s=(12, 24), fps=30,
                    label_noise_sd=3.0, failed_frame_rate=0.03, second_session_frac=0.4,
                    splits=(0.6, 0.2, 0.2), cue="dynamic"):
    """Yield ``(meta, values)`` per recording, exactly what :func:`generate_corpus` writes.

    ``cue`` (see :data:`CUES`) says where the score enters the data.

    ``meta`` has rec, subject, session, split, true_score, label, n_frames, n_failed;
    ``values`` is the unrounded (n_frames, 714) matrix in schema order.
    """
    _check_args(n_subjects, duration_s, fps, label_noise_sd, failed_frame_rate,
                second_session_frac, splits, cue=cue)
    for subj in plan_subjects(seed, n_subjects, splits, second_session_frac):
        rng = np.random.default_rng(subj.seed)
        nuis = draw_nuisance(rng)
        free_score = None
        if cue != "dynamic":      # label-free channels: the subject's own prior draw
            free_rng = np.random.default_rng(subj.seed.spawn(1)[0])
            free_score = float(sample_true_scores(free_rng, 1)[0])
        for session in range(1, subj.n_sessions + 1):
            true = subj.true_score if session == 1 else float(
                np.clip(subj.true_score + rng.uniform(-2, 2), 0, 63))
            label = int(np.rint(np.clip(true + rng.normal(0, label_noise_sd), 0, 63)))
            n = int(round(rng.uniform(*duration_s) * fps))
            values, n_failed = simulate_recording(rng, nuis, true, n, fps, failed_frame_rate,
                                                  cue=cue, free_score=free_score)
            meta = {"rec": f"{subj.sid}_{session}", "subject": subj.sid, "session": session,
                    "split": subj.split, "true_score": round(true, 3), "label": label,
                    "n_frames": n, "n_failed": n_failed}
            yield meta, values


def _rmse(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.sqrt(np.mean((a - b) ** 2))) if len(a) else float("nan")


def noise_floor(recordings: list[dict]) -> tuple[dict, dict]:
    """(noise floor, mean-predictor RMSE) per split and overall, from manifest rows."""
    floor, mean_pred = {}, {}
    train_mean = float(np.mean([r["label"] for r in recordings if r["split"] == "train"]))
    for split in (*SPLITS, "all"):
        rows = [r for r in recordings if split == "all" or r["split"] == split]
        true = [r["true_score"] for r in rows]
        lab = [r["label"] for r in rows]
        floor[split] = {"rmse": round(_rmse(true, lab), 4),
                        "mae": round(float(np.mean(np.abs(np.subtract(true, lab)))), 4),
                        "n": len(rows)}
        mean_pred[split] = {"rmse": round(_rmse([train_mean] * len(lab), lab), 4),
                            "n": len(rows)}
    mean_pred["train_label_mean"] = round(train_mean, 4)
    return floor, mean_pred


def signal_description(cue: str = "dynamic") -> dict:
    """The generative story in machine-readable form (also in the module docstring)."""
    if cue != "dynamic":
        return {"cue": cue, "where": CUES[cue],
                "score_prior": "85% gamma(k=1.8, theta=6.5) + 15% normal(33, 9), clipped "
                               "0..63; second session = first + U(-2, 2)",
                "label": "round(clip(true + N(0, label_noise_sd), 0, 63))",
                "label_free_channels": "set by a per-subject draw from the score prior, "
                                       "independent of the label",
                "static_shift_at_45": STATIC_SHIFT if cue in ("static", "mixed") else {},
                "frame_size": [FRAME_WIDTH, FRAME_HEIGHT], "focal_px": FOCAL_PX}
    return {"cue": "dynamic",
        "score_prior": "85% gamma(k=1.8, theta=6.5) + 15% normal(33, 9), clipped 0..63; "
                       "second session = first + U(-2, 2)",
        "label": "round(clip(true + N(0, label_noise_sd), 0, 63))",
        "expressivity": "E = 1 - 0.75 * min(true, 45) / 45",
        "expression_axes": list(AXIS_NAMES),
        "event_rate_hz": f"{EVENT_RATE_HZ} * (0.35 + 0.65 E) * subject log-normal(0, 0.12)",
        "event_amplitude_au": f"{EVENT_AMPLITUDE} * E * subject log-normal(0, 0.12) "
                              "* recording log-normal(0, 0.08) * event log-normal(0, 0.35)",
        "event_duration_s": f"{EVENT_DURATION_S} / (0.5 + 0.5 E) * event log-normal(0, 0.3)",
        "carriers": ["temporal spread and speed of AUxx_r",
                     "rate of AUxx_c activations (fraction of frames present is label-free)",
                     "brow, eyelid, mouth and jaw keypoint motion amplitude and speed"],
        "label_free": ["mean AU intensities (re-centred to subject baselines)",
                       "mean landmark positions, face width, position, head pose",
                       "frame counts, tracking failures, confidence", "gaze, PDM non-rigid",
                       "subject ids (random 3-digit), file names", "blinks (AU45)"],
        "frame_size": [FRAME_WIDTH, FRAME_HEIGHT], "focal_px": FOCAL_PX,
    }


def _existing_manifest(out: Path, params: dict, force: bool) -> dict | None:
    """The manifest of an identical corpus already at ``out``, or None to generate.

    Raises :class:`DataError` for a file, or a non-empty folder holding anything
    else, unless ``force``.
    """
    if out.exists() and not out.is_dir():
        raise DataError(out, "exists and is not a folder")
    if force or not out.is_dir() or not any(out.iterdir()):
        return None
    try:
        manifest = json.loads((out / "manifest.json").read_text())
        if (manifest.get("generator") == "depressionmlp.synth"
                and manifest.get("parameters") == params):
            return manifest
    except (OSError, ValueError):
        pass
    raise DataError(out, "folder is not empty and holds no synthetic corpus with these "
                         "parameters; pass --force (force=True) to replace it")


def generate_corpus(out_dir, *, n_subjects=80, seed=0, duration_s=(12, 24), fps=30,
                    label_noise_sd=3.0, failed_frame_rate=0.03, second_session_frac=0.4,
                    splits=(0.6, 0.2, 0.2), cue="dynamic", force=False,
                    verbose=False) -> dict:
    """Write the synthetic corpus to ``out_dir`` and return its manifest.

    The corpus is written into a temporary sibling folder and renamed into place at
    the end, so an interrupted run leaves nothing half-written. If ``out_dir``
    already holds the corpus of the same parameters, its manifest is returned and
    nothing is written (same arguments give identical bytes); any other non-empty
    ``out_dir`` is refused with :class:`DataError` unless ``force``, which replaces it.
    """
    out = Path(out_dir)
    params = {"n_subjects": n_subjects, "seed": seed, "duration_s": list(duration_s),
              "fps": fps, "label_noise_sd": label_noise_sd,
              "failed_frame_rate": failed_frame_rate,
              "second_session_frac": second_session_frac, "splits": list(splits),
              "cue": cue}
    _check_args(**params)
    params["generator_version"] = GENERATOR_VERSION
    existing = _existing_manifest(out, params, force)
    if existing is not None:
        return existing
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        recs = _write_all(tmp, params, verbose)
        floor, mean_pred = noise_floor(recs)
        manifest = {"corpus": "synthetic", "generator": "depressionmlp.synth", "seed": seed,
                    "parameters": params, "frame_size": [FRAME_WIDTH, FRAME_HEIGHT],
                    "signal": signal_description(cue), "noise_floor": floor,
                    "mean_predictor_rmse": mean_pred, "recordings": recs}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _write_all(root: Path, params: dict, verbose: bool) -> list[dict]:
    dec = column_decimals()
    header = openface_header()
    for split in SPLITS:
        (root / "openface" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
    recs = []
    for meta, values in iter_recordings(**{k: v for k, v in params.items()
                                          if k != "generator_version"}):
        split = meta["split"]
        with open(root / "openface" / split / f"{meta['rec']}.csv", "wb") as f:
            f.write(header)
            f.write(format_rows(values, dec))
        (root / "labels" / split / f"{meta['rec']}_Depression.csv").write_text(
            f"{meta['label']}\n")
        recs.append({k: meta[k] for k in ("rec", "subject", "session", "split",
                                          "true_score", "label", "n_frames", "n_failed")})
        if verbose:
            print(f"  {split:5s} {meta['rec']}: {meta['n_frames']} frames", flush=True)
    return recs


def summary_lines(manifest: dict, seconds: float | None = None) -> list[str]:
    """Human summary; the last line is the noise floor."""
    recs = manifest["recordings"]
    lines = []
    for split in SPLITS:
        rows = [r for r in recs if r["split"] == split]
        labels = [r["label"] for r in rows]
        lines.append(f"{split:>5}: {len(rows):3d} recordings, "
                     f"{len({r['subject'] for r in rows}):3d} subjects, labels "
                     f"{min(labels)}..{max(labels)} (mean {np.mean(labels):.1f}), "
                     f"{sum(r['n_frames'] for r in rows)} frames, "
                     f"{sum(r['n_failed'] for r in rows)} failed")
    if seconds is not None:
        lines.append(f"generated in {seconds:.1f} s")
    mp = manifest["mean_predictor_rmse"]
    lines.append("mean-predictor RMSE (train-label mean): " + ", ".join(
        f"{s} {mp[s]['rmse']:.2f}" for s in SPLITS))
    nf = manifest["noise_floor"]
    lines.append("noise floor RMSE (true latent score vs label): " + ", ".join(
        f"{s} {nf[s]['rmse']:.2f}" for s in (*SPLITS, "all")))
    return lines


def main(argv=None) -> int:
    """``python -m depressionmlp.synth --out DIR [--subjects N] [--seed S] [--small] [--force]``."""
    ap = argparse.ArgumentParser(prog="python -m depressionmlp.synth",
                                 description="write the bundled synthetic OpenFace corpus")
    ap.add_argument("--out", default="data/synthetic")
    ap.add_argument("--subjects", type=int)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--small", action="store_true",
                    help=f"{SMALL['n_subjects']} subjects of {SMALL['duration_s'][0]}-"
                         f"{SMALL['duration_s'][1]} s, for tests")
    ap.add_argument("--force", action="store_true", help="replace a non-empty --out")
    ap.add_argument("--cue", default="dynamic", choices=sorted(CUES),
                    help="where the score enters the data (default: %(default)s)")
    args = ap.parse_args(argv)
    kw = {"seed": args.seed, "force": args.force, "cue": args.cue}
    if args.small:
        kw.update(n_subjects=SMALL["n_subjects"], duration_s=SMALL["duration_s"])
    if args.subjects is not None:
        kw["n_subjects"] = args.subjects
    t0 = time.perf_counter()
    try:
        manifest = generate_corpus(args.out, **kw)
    except (DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"synthetic corpus in {args.out}")
    for line in summary_lines(manifest, time.perf_counter() - t0):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
