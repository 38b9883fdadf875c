"""What one mean of segment scores can carry of the blink cue (a probe outside the
package; docs/learnability.md, "The blink cue through one mean of segment scores").

The paper scores a recording by the mean of its segment scores, and the default
protocol passes that mean (of the views' weighted scores) through one nondecreasing
quadratic (``train.recording_link``). A segment's score can depend on the blinks in
it, so the most such a recording score can use of the blink cue is a function of
one linear combination of per-blink means: ``sum_k a_k mean_t h_k(blinks in t)``,
i.e. of the rate of blinks weighted by any function of their length. This simulates
the blink corpora's generator without rendering (the label, the subject's own blink
rate, the Poisson count and each blink's length, as :mod:`depressionmlp.synth`
draws them) and fits, on noise-free per-recording values:

- ``one mean, quadratic``: ridge on 9 per-blink means (rate; length, length^2 and
  log length per second; the rate of blinks longer than 0.3-0.8 s), then a
  quadratic of the ridge's score: the default's read-out with perfect features;
- ``one mean, best monotone link``: the direction and an isotonic link fitted
  together (Powell search, 4 starts), on ample data only: the most one mean allows;
- ``two means, logs``: ridge on rate, closed time, their logs and the log of their
  ratio (a blink's mean length): what a recording score built from two means can use.

Test RMSE against noisy labels on 1,000 held-out recordings, as a ratio to the mean
predictor on them; at the corpus's train + dev size (median of 30 draws) and with
ample data (3,000 recordings), with the interquartile range over the draws.

Run: ``.venv/bin/python docs/probes/pooling_bound.py short 84`` (and ``long 50``;
about a minute each on 2 CPU cores).
"""
import sys

import numpy as np
from scipy.optimize import minimize
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from depressionmlp import synth
from depressionmlp.learnability import SIZES

TAUS = (0.3, 0.4, 0.5, 0.6, 0.8)            # seconds: rates of blinks longer than these


def simulate(size: str, n: int, seed: int = 0):
    """(per-blink means (n, 9), labels (n,), true scores (n,)) of n recordings."""
    spec = SIZES[size]
    rng = np.random.default_rng(seed)
    truth = synth.sample_true_scores(rng, n)
    feats = []
    for s in truth:
        free = float(synth.sample_true_scores(rng, 1)[0])
        plan = synth.cue_plan("blink", float(s), free)
        nuis = synth.draw_nuisance(rng)
        seconds = rng.uniform(*spec["duration_s"])
        count = rng.poisson(nuis["blink_hz"] * plan["blink_rate_mult"] * seconds)
        # each blink's length as synth.event_train draws it
        length = np.maximum(0.25 * plan["blink_dur_mult"] * rng.lognormal(0, 0.3, count), 0.25)
        per_blink = [np.ones(count), length, length ** 2, np.log(length)]
        per_blink += [(length > t).astype(float) for t in TAUS]
        feats.append([v.sum() / seconds for v in per_blink])
    labels = np.rint(np.clip(truth + rng.normal(0, spec.get("label_noise_sd", 3.0), n), 0, 63))
    return np.array(feats), labels, truth


def quadratic(z, y, z_test):
    mu, sd = z.mean(), z.std()
    c = np.linalg.lstsq(np.c_[np.ones_like(z), (z - mu) / sd, ((z - mu) / sd) ** 2], y,
                        rcond=None)[0]
    u = (z_test - mu) / sd
    return c[0] + c[1] * u + c[2] * u ** 2


def log1(a, ref):
    return np.log(a + 0.1 * np.median(ref, axis=0) + 1e-9)


def main(size: str, n_pooled: int, n_sim: int = 4000, n_test: int = 1000):
    F, y, truth = simulate(size, n_sim)
    test, pool = np.arange(n_test), np.arange(n_test, n_sim)
    mp = float(np.sqrt(np.mean((y[test] - y[pool].mean()) ** 2)))
    two = np.c_[F[:, :2], log1(F[:, :2], F[pool, :2]),
                log1(F[:, [1]] / np.maximum(F[:, [0]], 1e-9), F[pool, 1:2])]

    def ridge(x, idx):
        return make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13))).fit(
            x[idx], y[idx])

    def rmse(p):
        return float(np.sqrt(np.mean((p - y[test]) ** 2)))

    def one_quadratic(idx):
        m = ridge(F, idx)
        return rmse(quadratic(m.predict(F[idx]), y[idx], m.predict(F[test])))

    def two_logs(idx):
        return rmse(ridge(two, idx).predict(two[test]))

    def one_monotone(idx, starts=4):
        Fs = (F - F[idx].mean(0)) / F[idx].std(0)

        def loss(a):
            z = Fs[idx] @ a
            iso = IsotonicRegression(out_of_bounds="clip", increasing="auto").fit(z, y[idx])
            return float(np.mean((iso.predict(z) - y[idx]) ** 2))
        r0, best = np.random.default_rng(5), None
        for k in range(starts):
            a0 = (r0.normal(size=Fs.shape[1]) if k else
                  np.linalg.lstsq(Fs[idx], y[idx] - y[idx].mean(), rcond=None)[0])
            r = minimize(loss, a0, method="Powell",
                         options={"maxiter": 4000, "xtol": 1e-3, "ftol": 1e-4})
            best = r if best is None or r.fun < best.fun else best
        iso = IsotonicRegression(out_of_bounds="clip", increasing="auto").fit(
            Fs[idx] @ best.x, y[idx])
        return rmse(iso.predict(Fs[test] @ best.x))

    rng = np.random.default_rng(1)
    draws = [rng.choice(pool, n_pooled, replace=False) for _ in range(30)]
    print(f"blink, {size}: mean predictor {mp:.2f}, noise floor "
          f"{np.sqrt(np.mean((truth[test] - y[test]) ** 2)):.2f}")
    print(f"{'':34s} {'at ' + str(n_pooled) + ' recordings (median of 30)':>34s} "
          f"{'ample (3,000)':>16s}")
    for name, fit, at_size in (("one mean, quadratic", one_quadratic, True),
                               ("one mean, best monotone link", one_monotone, False),
                               ("two means, logs", two_logs, True)):
        cells = ["-"]
        if at_size:
            r = [fit(d) for d in draws]
            q1, med, q3 = np.percentile(r, [25, 50, 75])
            cells = [f"{med:6.2f} ({med / mp:.2f}x; IQR {q1:.2f}-{q3:.2f})"]
        ample = fit(pool)
        cells.append(f"{ample:6.2f} ({ample / mp:.2f}x)")
        print(f"{name:34s} {cells[0]:>34s} {cells[1]:>16s}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
