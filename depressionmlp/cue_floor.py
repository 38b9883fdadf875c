"""The cue floor: how well the score can be read off a corpus's cue at all.

The noise floor (true latent score against label) counts only label noise. A cue
is also read from a finite recording: a 40 s recording of a severe subject may
hold two blinks, and a subject's own blink rate varies 4.5-fold. The cue floor
measures that limit. It simulates many recordings with the corpus's generator
settings (:data:`depressionmlp.learnability.SIZES`), keeps each recording's
*latent* signals (:func:`depressionmlp.synth.latent_signals`: the expression
axes, blinks and resting AU levels before rendering, head pose, tracking noise
and identity are added) and fits a regressor on statistics of them:

- ``floor``: a gradient-boosted regressor fitted on ``n_sim`` recordings, tested on
  held-out ones (test RMSE against the noisy labels): what the cue allows with
  ample data and noise-free features;
- ``floor_at_size``: ridge regression fitted on as many recordings as the corpus
  trains on, on the statistics of the channel that carries the cue
  (:data:`CHANNELS`) and their logarithms: what noise-free features of the right
  channel give with the corpus's training size. The median over ``n_draws`` random
  training sets (with their interquartile range): with 35-56 recordings a draw now
  and then picks a ridge penalty that fails, and the mean would follow those;
- ``floor_at_pooled`` (with ``n_pooled``): the same with the train + dev recordings,
  what the default protocol's cross-fitted models learn from together.

Compare a model with these as ratios to ``mean_predictor`` (the RMSE of the training
mean on the same simulated recordings): a corpus's 20-28 test recordings give its own
mean predictor, which differs from the simulation's by a point or more.

Both are estimates from one regressor, not proofs: a better estimator could go a
little lower, and the rendered OpenFace values are noisier than the latent
signals, so a model trained on the corpus should expect to stay above them.
"""

from __future__ import annotations

import numpy as np

from depressionmlp import synth

#: |axis| above this (expression units) counts as an active frame
ACTIVE = 0.1
#: Column blocks of :func:`latent_features`: keypoint-axis and AU-axis statistics
#: (4 x N_AXES each), AU event rates (N_AXES), blink statistics (4), resting AUs (17).
_K = synth.N_AXES
BLOCKS = {"keypoints": range(0, 4 * _K), "aus": range(4 * _K, 8 * _K),
          "au_events": range(8 * _K, 9 * _K), "blinks": range(9 * _K, 9 * _K + 4),
          "resting": range(9 * _K + 4, 9 * _K + 4 + len(synth.AU_INTENSITY))}
#: The columns each cue's score reaches (see :func:`depressionmlp.synth.cue_plan`).
CHANNELS = {
    "dynamic": [*BLOCKS["keypoints"], *BLOCKS["aus"], *BLOCKS["au_events"]],
    "motion": list(BLOCKS["keypoints"]),
    "au_variability": [*BLOCKS["aus"], *BLOCKS["au_events"]],
    "static": list(BLOCKS["resting"]),
    "region": [synth.BROW_AXIS + j * _K for j in range(4)],
    "blink": list(BLOCKS["blinks"]),
    "mixed": [*BLOCKS["keypoints"], *BLOCKS["aus"], *BLOCKS["au_events"],
              *BLOCKS["blinks"], *BLOCKS["resting"]],
}


def axis_statistics(x: np.ndarray, fps: float) -> np.ndarray:
    """(n, k) latent series -> (4 k,): sd, mean |speed|, active fraction, 95th |x|."""
    speed = np.abs(np.diff(x, axis=0)).mean(axis=0) * fps
    return np.concatenate([x.std(axis=0), speed, (np.abs(x) > ACTIVE).mean(axis=0),
                           np.percentile(np.abs(x), 95, axis=0)])


def latent_features(lat: dict, fps: float) -> np.ndarray:
    """Statistics of one recording's :func:`~depressionmlp.synth.latent_signals`."""
    n = len(lat["blink"])
    seconds = n / fps
    counts = np.array([len(c) for c, _ in lat["events_au"]]) / seconds
    blink = lat["blink"]
    n_blinks = len(lat["blink_events"])
    closed = float((blink > 0.5).mean())
    blink_stats = [n_blinks / seconds, closed, closed * seconds / max(n_blinks, 1),
                   float(np.abs(np.diff(blink)).mean() * fps)]
    return np.concatenate([axis_statistics(lat["keypoint_axes"], fps),
                           axis_statistics(lat["axes_au"], fps), counts, blink_stats,
                           lat["au_base"]])


def simulate(cue: str, n_sim: int, duration_s=(30, 50), fps: float = 30.0,
             label_noise_sd: float = 3.0, seed: int = 0) -> tuple[np.ndarray, ...]:
    """(features (n_sim, F), labels (n_sim,), true scores (n_sim,)) of independent
    simulated subjects.

    Subjects, nuisance and labels are drawn as :func:`synth.iter_recordings` draws
    them (one recording per subject).
    """
    rng = np.random.default_rng(seed)
    truth = synth.sample_true_scores(rng, n_sim)
    free = synth.sample_true_scores(rng, n_sim)
    feats = []
    for true, free_score in zip(truth, free):
        nuis = synth.draw_nuisance(rng)
        n = int(round(rng.uniform(*duration_s) * fps))
        lat = synth.latent_signals(rng, nuis, float(true), n, fps, cue,
                                   None if cue == "dynamic" else float(free_score))
        feats.append(latent_features(lat, fps))
    labels = np.rint(np.clip(truth + rng.normal(0, label_noise_sd, n_sim), 0, 63))
    return np.array(feats), labels, truth


def cue_floor(cue: str, n_train: int, *, duration_s=(30, 50), label_noise_sd: float = 3.0,
              n_sim: int = 3000, n_draws: int = 30, seed: int = 0,
              n_pooled: int | None = None) -> dict:
    """The cue floor of one cue at one corpus size (see the module docstring).

    ``n_train`` is the corpus's number of training recordings, ``n_pooled`` (optional)
    its train + dev recordings. Returns ``floor``, ``floor_at_size`` (with its
    interquartile range over training draws), ``floor_at_pooled`` with ``n_pooled``,
    ``mean_predictor`` and ``noise_floor`` on the same held-out recordings, and the
    settings.
    """
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y, truth = simulate(cue, n_sim, duration_s, label_noise_sd=label_noise_sd, seed=seed)
    n_test = n_sim // 4
    x_fit, y_fit, x_test, y_test = x[n_test:], y[n_test:], x[:n_test], y[:n_test]

    def rmse(pred):
        return float(np.sqrt(np.mean((pred - y_test) ** 2)))

    gbr = HistGradientBoostingRegressor(max_iter=300, learning_rate=0.05,
                                        min_samples_leaf=20, random_state=seed)
    floor = rmse(gbr.fit(x_fit, y_fit).predict(x_test))
    chan = x[:, CHANNELS[cue]]
    # logarithms offset by a tenth of the typical value: a recording with no blink
    # (rate 0) must not become an outlier
    chan = np.concatenate([chan, np.log(chan + 0.1 * np.median(chan, axis=0) + 1e-9)], axis=1)
    c_fit, c_test = chan[n_test:], chan[:n_test]

    def ridge_at(n, draw_seed):
        """Median test RMSE (and interquartile range) of the ridge over n_draws
        random training sets of n recordings."""
        rng = np.random.default_rng(draw_seed)
        out = []
        for _ in range(n_draws):
            idx = rng.choice(len(y_fit), n, replace=False)
            ridge = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13)))
            out.append(rmse(ridge.fit(c_fit[idx], y_fit[idx]).predict(c_test)))
        return (round(float(np.median(out)), 3),
                [round(float(q), 3) for q in np.percentile(out, [25, 75])])

    result = {"cue": cue, "floor": round(floor, 3)}
    result["floor_at_size"], result["floor_at_size_iqr"] = ridge_at(n_train, seed + 1)
    if n_pooled is not None:
        result["floor_at_pooled"], result["floor_at_pooled_iqr"] = ridge_at(n_pooled, seed + 2)
    return {**result, "mean_predictor": round(rmse(np.full(n_test, y_fit.mean())), 3),
            "noise_floor": round(rmse(truth[:n_test]), 3),
            "n_sim": n_sim, "n_test": n_test, "n_train": n_train, "n_pooled": n_pooled,
            "duration_s": list(duration_s), "label_noise_sd": label_noise_sd}
