"""Where the blink cue is lost: a probe outside the package (docs/learnability.md,
"Where the blink cue is lost").

For each suite corpus named on the command line (e.g. ``blink-long-s0``, built by
``make learnability`` under ``data/learnability``), with train + dev pooled for fitting
and test held out, as the default protocol's cross-fitted members pool them:

1. ``events``: AU45 at the model's own 6 fps (every 5th frame, tracked frames only),
   its activations (runs above the recording's median + 1), their rate per frame and
   mean length; an ordinary least-squares fit of the label on log rate and log length.
2. ``segment net``: segments of M = 18 frames (stride 9) of AU45 alone or of all 17 AU
   intensities, standardised with pooled statistics; Dense(32, gelu) x 2 -> one score
   per segment; a recording's score is the mean of its segments' scores (as the
   package scores recordings). Trained as the default protocol trains: 4 recordings
   per step, 8 segment draws each, the loss on each recording's mean, a training-only
   offset per column and recording (sd ``JITTER`` standardised units, shared by its
   draws; the default's column jitter), Adam 1e-3, 150 passes; two training seeds.
   With ``SHARED=K`` the segment net instead reads each AU column's M frames with one
   MLP shared by the columns (``HIDDEN`` GELU units, default 16, then K outputs; with
   ``HIDDEN=0`` one Dense(K, relu), the shape of Eq. 19 at K = 1) and scores the
   segment with one Dense over the F x K outputs. ``POOL`` sets what comes after the
   segments: ``score`` (default) the mean of segment scores as above; ``link`` that mean
   through a small trained function of it (x + Dense(8, gelu) -> 1); ``features`` the
   mean of 8 segment features through Dense(16, gelu) -> 1 (plus a linear term);
   ``logmean`` a linear function of the logs of the recording means of ``LOGMEAN_K``
   (default 2) softplus segment features: a ratio of two means (a blink's mean length
   is closed frames over blinks) is a difference of logs, which no function of one
   mean of segment scores can form.
   ``POSTLINK=1`` passes the test scores through the package's recording link
   (``train.recording_link = "quadratic"``) fitted to the pooled recordings' scores
   after training (in sample, where the package fits it out of fold); with
   ``POOL=link`` the trained link is then used in training only and dropped after.
   ``EVENTS=linear`` fits the events line on rate and length instead of their logs.

Run: ``.venv/bin/python docs/probes/blink_probe.py blink-long-s0 blink-s0 ...``
(about 1 minute per corpus on 2 CPU cores).
"""
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from depressionmlp.data.corpora import discover  # noqa: E402
from depressionmlp.data.openface import read_recording  # noqa: E402

ROOT = Path(os.environ.get("SUITE_ROOT", "data/learnability"))
JITTER = float(os.environ.get("JITTER", "1.0"))
SHARED = int(os.environ.get("SHARED", "0"))
HIDDEN = int(os.environ.get("HIDDEN", "16"))
POOL = os.environ.get("POOL", "score")
LOGMEAN_K = int(os.environ.get("LOGMEAN_K", "2"))
POSTLINK = os.environ.get("POSTLINK", "0") == "1"
EVENTS_LOG = os.environ.get("EVENTS", "log") == "log"
M, STRIDE, STEP = 18, 9, 5


def recordings(name):
    """[(split, label, (T, 17) AU intensities at 6 fps, index of AU45)]."""
    out = []
    for src in discover("synthetic", ROOT / name):
        fr = read_recording(src.path)
        cols = [i for i, n in enumerate(fr.au_names) if n.endswith("_r")]
        au = fr.au[:, cols].astype(np.float32)[::STEP][fr.success.astype(bool)[::STEP]]
        out.append((src.split, float(src.label), au, [fr.au_names[i] for i in cols].index("AU45_r")))
    return out


def rmse(p, y):
    return float(np.sqrt(np.mean((np.clip(p, 0, 63) - y) ** 2)))


def events(recs):
    def feats(a):
        on = np.diff(np.r_[0, (a > np.median(a) + 1.0).astype(int), 0])
        runs = np.flatnonzero(on == -1) - np.flatnonzero(on == 1)
        rate, length = len(runs) / len(a), runs.mean() if len(runs) else 0.0
        return [np.log(rate + 1e-3), np.log(length + 1)] if EVENTS_LOG else [rate, length]
    X = np.array([[1.0, *feats(a[:, j])] for _, _, a, j in recs])
    y = np.array([r[1] for r in recs]); fit = np.array([r[0] != "test" for r in recs])
    b = np.linalg.lstsq(X[fit], y[fit], rcond=None)[0]
    return rmse(X[~fit] @ b, y[~fit])


class RecordingJitter(keras.layers.Layer):
    """Training-only offset per (recording, column), shared by the recording's segments."""

    def __init__(self, sd, **kwargs):
        super().__init__(**kwargs)
        self.sd = sd

    def call(self, x, training=False):
        if not training or not self.sd:
            return x
        return x + self.sd * keras.random.normal((ops.shape(x)[0], 1, 1, ops.shape(x)[-1]))


def segment_net(recs, au45_only, seed):
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    segs = []
    for _, _, a, j in recs:
        a = a[:, [j]] if au45_only else a
        segs.append(np.stack([a[s:s + M] for s in range(0, len(a) - M + 1, STRIDE)]))
    fit = np.array([r[0] != "test" for r in recs])
    pooled = np.concatenate([s for s, f in zip(segs, fit) if f])
    mu, sd = pooled.mean((0, 1)), pooled.std((0, 1))
    S, F = max(len(s) for s in segs), segs[0].shape[-1]
    X = np.zeros((len(recs), S, M, F), np.float32); mask = np.zeros((len(recs), S), np.float32)
    for i, s in enumerate(segs):
        X[i, :len(s)], mask[i, :len(s)] = (s - mu) / sd, 1
    y = np.array([r[1] for r in recs], np.float32)
    y_mean, y_sd = y[fit].mean(), y[fit].std()
    x_in, m_in = keras.Input((S, M, F)), keras.Input((S,))
    x = RecordingJitter(JITTER)(x_in)
    if SHARED:                                      # one read-out for every column
        h = ops.transpose(x, (0, 1, 3, 2))          # (batch, S, F, M)
        if HIDDEN:
            h = keras.layers.Dense(SHARED)(keras.layers.Dense(HIDDEN, activation="gelu")(h))
        else:
            h = keras.layers.Dense(SHARED, activation="relu")(h)
        h = keras.layers.Reshape((S, F * SHARED))(h)
    else:
        h = keras.layers.Reshape((S, M * F))(x)
        h = keras.layers.Dense(32, activation="gelu")(h)
        h = keras.layers.Dense(32, activation="gelu")(h)
    w = m_in / ops.sum(m_in, axis=1, keepdims=True)           # mean over the segments
    if POOL == "logmean":                       # log of the mean of K positive features
        f = ops.sum(w[..., None] * keras.layers.Dense(LOGMEAN_K, activation="softplus")(h), axis=1)
        s = keras.layers.Dense(1)(ops.log(f + 1e-3))[:, 0]
    elif POOL == "features":
        f = ops.sum(w[..., None] * keras.layers.Dense(8)(h), axis=1)
        s = (keras.layers.Dense(1)(keras.layers.Dense(16, activation="gelu")(f))
             + keras.layers.Dense(1)(f))[:, 0]
    else:
        s = ops.sum(w * keras.layers.Dense(1)(h)[..., 0], axis=1)
        pre_link = s
        if POOL == "link":
            z = s[:, None]
            s = (keras.layers.Dense(1)(z)
                 + keras.layers.Dense(1)(keras.layers.Dense(8, activation="gelu")(z)))[:, 0]
    out = s * y_sd + y_mean
    model = keras.Model([x_in, m_in], out)
    model.compile(keras.optimizers.Adam(1e-3), loss="mse")
    train = np.flatnonzero(fit)
    for _ in range(150 * ((len(train) + 3) // 4)):
        idx = rng.choice(train, 4, replace=False)
        draws = np.zeros((4, S), np.float32)
        for k, i in enumerate(idx):
            draws[k, rng.choice(int(mask[i].sum()), 8)] = 1
        model.train_on_batch([X[idx], draws], y[idx])
    test = np.flatnonzero(~fit)
    if POOL == "link" and POSTLINK:             # the trained link only in training
        model = keras.Model([x_in, m_in], pre_link * y_sd + y_mean)
    pred = model.predict([X[test], mask[test]], verbose=0)
    if POSTLINK:                                # the package's link, fitted after training
        from depressionmlp.metrics import apply_recording_link
        from depressionmlp.train import fit_recording_link
        z = model.predict([X[train], mask[train]], verbose=0).reshape(-1)
        sign = 1.0 if np.corrcoef(z, y[train])[0, 1] >= 0 else -1.0   # a trained link
        link = fit_recording_link(sign * z, y[train])                  # may decrease
        pred = apply_recording_link(link, sign * pred.reshape(-1))
    return rmse(pred, y[test])


if __name__ == "__main__":
    print(f"{'corpus':<16} {'mean pred.':>10} {'events':>7} {'AU45 net':>13} {'17-AU net':>13}")
    for name in sys.argv[1:]:
        recs = recordings(name)
        y = np.array([r[1] for r in recs]); fit = np.array([r[0] != "test" for r in recs])
        nets = [[segment_net(recs, only, seed) for seed in (0, 1)] for only in (True, False)]
        print(f"{name:<16} {rmse(np.full((~fit).sum(), y[fit].mean()), y[~fit]):>10.2f} "
              f"{events(recs):>7.2f} " + " ".join(f"{a:>6.2f}/{b:<6.2f}" for a, b in nets),
              flush=True)
