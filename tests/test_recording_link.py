"""The recording link (``train.recording_link = "quadratic"``): a nondecreasing
quadratic of a cross ensemble's recording score, fitted to the pooled out-of-fold
scores and applied wherever a recording is scored (end to end: the fitted-views test
in test_ensemble.py)."""

import numpy as np
import pytest
from scipy.optimize import minimize

from depressionmlp import metrics, train
from depressionmlp.errors import DataError


def _sse(coef, u, y):
    a, b, c = coef
    return float(np.sum((a + b * u + c * u * u - y) ** 2))


@pytest.mark.parametrize("shape", ["convex", "concave", "u", "falling", "line"])
def test_fit_is_the_nondecreasing_least_squares_quadratic(shape):
    """Against SLSQP with g' >= 0 at both ends of the range (a quadratic's derivative is
    linear, so that is g' >= 0 on all of it), from several starts: the same least
    squared error, and a fit that does not decrease anywhere in the range."""
    rng = np.random.default_rng({"convex": 1, "concave": 2, "u": 3, "falling": 4,
                                 "line": 5}[shape])
    z = rng.uniform(0, 30, 60)
    truth = {"convex": 5 + 0.04 * z ** 2, "concave": 40 - 0.04 * (30 - z) ** 2,
             "u": 0.08 * (z - 12) ** 2, "falling": 30 - 0.8 * z, "line": 3 + 0.9 * z}[shape]
    y = truth + rng.normal(0, 2, 60)
    link = train.fit_recording_link(z, y)
    assert link["kind"] == "quadratic" and link["fitted_on"] == 60
    u = (z - link["center"]) / link["scale"]
    lo, hi = link["range"]
    assert (lo, hi) == pytest.approx((u.min(), u.max()))
    cons = [{"type": "ineq", "fun": lambda c, e=e: c[1] + 2 * c[2] * e} for e in (lo, hi)]
    ref = min(_sse(minimize(_sse, x0, args=(u, y), constraints=cons, method="SLSQP",
                            options={"ftol": 1e-12, "maxiter": 500}).x, u, y)
              for x0 in ([y.mean(), 0, 0], [y.mean(), 5, 1], [y.mean(), 5, -1]))
    assert _sse(link["coef"], u, y) == pytest.approx(ref, rel=1e-5, abs=1e-6)
    grid = np.linspace(z.min(), z.max(), 400)
    assert np.diff(metrics.apply_recording_link(link, grid)).min() >= -1e-9
    np.testing.assert_allclose(metrics.apply_recording_link(link, z),
                               np.polyval(link["coef"][::-1], u), atol=1e-9)
    if shape == "convex":                 # the unconstrained fit is already nondecreasing
        np.testing.assert_allclose(link["coef"], np.polyfit(u, y, 2)[::-1], atol=1e-8)
        assert link["coef"][2] > 0.5
    if shape == "falling":                # the best nondecreasing fit is the mean
        np.testing.assert_allclose(link["coef"], [y.mean(), 0, 0], atol=1e-8)


def test_apply_continues_along_the_tangent_outside_the_range():
    link = {"kind": "quadratic", "center": 10.0, "scale": 2.0, "coef": [1.0, 2.0, 0.5],
            "range": [-1.0, 3.0]}
    g = lambda u: 1 + 2 * u + 0.5 * u * u          # noqa: E731
    z = np.array([0.0, 8.0, 10.0, 16.0, 30.0])      # u = -5, -1, 0, 3, 10
    want = [g(-1) + (2 - 1) * (-4), g(-1), g(0), g(3), g(3) + (2 + 3) * 7]
    np.testing.assert_allclose(metrics.apply_recording_link(link, z), want)
    for identity in (None, {}, {"kind": "identity"}):
        np.testing.assert_array_equal(metrics.apply_recording_link(identity, z), z)
    assert train.fit_recording_link([5.0] * 40, range(40)) == {"kind": "identity"}
    assert train.fit_recording_link([], [])["kind"] == "identity"


def test_too_few_recordings_keep_the_identity_and_say_why():
    """Below RECORDING_LINK_MIN (30) pooled out-of-fold recordings three numbers fit
    noise (docs/learnability.md): the record is the identity, with the count."""
    rng = np.random.default_rng(0)
    z = rng.uniform(0, 30, 30)
    y = 5 + 0.04 * z ** 2 + rng.normal(0, 2, 30)
    assert train.RECORDING_LINK_MIN == 30
    assert train.fit_recording_link(z, y)["kind"] == "quadratic"
    few = train.fit_recording_link(z[:29], y[:29])
    assert few == {"kind": "identity", "fitted_on": 29,
                   "reason": "29 recordings out of fold, fewer than 30"}
    np.testing.assert_array_equal(metrics.apply_recording_link(few, z), z)
    assert train.fit_recording_link(z[:10], y[:10], min_recordings=5)["kind"] == "quadratic"


def test_recording_link_is_checked():
    with pytest.raises(DataError, match="must be one of \\['identity', 'quadratic'\\]"):
        train.resolve_config({"train": {"recording_link": "cubic"}}, "x.toml")
    with pytest.raises(DataError, match="needs train.member_split = 'cross'"):
        train.resolve_config({"train": {"recording_link": "quadratic",
                                        "member_split": "fixed"}}, "x.toml")
    single = train.resolve_config({"train": {"ensemble": 1}}, "x.toml")
    assert single["train"]["recording_link"] == "identity"   # nothing out of fold
    paper = train.resolve_config({}, "x.toml", protocol="paper")
    assert paper["train"]["recording_link"] == "identity"
