"""Small NumPy readings of Eq. 4-20 (and cross-attention), one sample at a time.

Written straight from the shape-by-shape design page with explicit ``.T`` and
``@``, independent of the Keras code, to check the layers against. "C1_{a->b}
on X" is ``X @ W + b`` with W of shape (a, b). Weights come in a dict keyed by
path inside the layer, e.g. ``"clg/location_proj/kernel"`` (see
:func:`weights_of`).
"""

from __future__ import annotations

import math

import numpy as np


def weights_of(layer) -> dict:
    """``{path relative to the layer: np.ndarray}`` for every weight of ``layer``."""
    return {w.path.split("/", 1)[1]: np.asarray(w.numpy(), dtype=np.float64)
            for w in layer.weights}


def relu(x):
    return np.maximum(x, 0.0)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def gelu(x):
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def layer_norm(x, gamma, beta, eps):
    mu = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * gamma + beta


def c1(x, w, prefix):
    """C1 / Dense: ``x @ kernel + bias`` with the weights under ``prefix``."""
    return x @ w[f"{prefix}/kernel"] + w[f"{prefix}/bias"]


def batched(fn):
    """Apply a one-sample function over the leading batch axis of its arrays."""
    def wrapper(*arrays, **kwargs):
        arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
        outs = [fn(*(a[i] for a in arrays), **kwargs) for i in range(arrays[0].shape[0])]
        if isinstance(outs[0], (list, tuple)):
            return [np.stack(o) for o in zip(*outs)]
        return np.stack(outs)
    return wrapper


# ----- Dual Gating ---------------------------------------------------------

def clg(r, w, prefix="", softmax_over="locations"):
    """Eq. 7-10 on one R (M, N) -> R_FL (M, N)."""
    n = r.shape[1]
    r_l = relu(c1(r, w, prefix + "location_proj"))               # Eq. 7  (M, N)
    r_l1, r_l2 = r_l[:, : n // 2], r_l[:, n // 2:]               # (M, N/2)
    m_f2 = sigmoid(c1(r_l2.T, w, prefix + "frame_gate"))         # Eq. 8  (N/2, M)
    g_fl = m_f2.T * r_l1                                         # Eq. 9  (M, N/2)
    logits = c1(g_fl, w, prefix + "embed_proj")                  # (M, N)
    return softmax(logits, axis=1 if softmax_over == "locations" else 0) * r   # Eq. 10


def cfg(r, w, prefix="", softmax_over="frames"):
    """Eq. 11-12 and the L->F embedding on one R (M, N) -> R_LF (M, N)."""
    m = r.shape[0]
    r_f = relu(c1(r.T, w, prefix + "frame_proj"))                # Eq. 11 (N, M)
    r_f1, r_f2 = r_f[:, : m // 2], r_f[:, m // 2:]               # (N, M/2)
    m_l2 = sigmoid(c1(r_f2.T, w, prefix + "location_gate"))      # (M/2, N)
    g_lf = m_l2.T * r_f1                                         # Eq. 12 (N, M/2)
    logits = c1(g_lf, w, prefix + "embed_proj")                  # (N, M)
    return softmax(logits, axis=1 if softmax_over == "frames" else 0).T * r


def dual_gating(r, w, branches="both", clg_softmax_over="locations",
                cfg_softmax_over="frames", single_branch_conv=False):
    """Eq. 13 on one R: ``Q = ReLU(C2([R_FL, R_LF])) + R``."""
    maps = []
    if branches in ("both", "clg"):
        maps.append(clg(r, w, "clg/", clg_softmax_over))
    if branches in ("both", "cfg"):
        maps.append(cfg(r, w, "cfg/", cfg_softmax_over))
    if branches == "both" or single_branch_conv:
        k, b = w["fuse/kernel"][:, 0], w["fuse/bias"][0]
        fused = sum(k[i] * maps[i] for i in range(len(maps))) + b   # 1x1 Conv2D
    else:
        fused = maps[0]
    return relu(fused) + r


# ----- Mutual Guidance and score head --------------------------------------

def mutual_guidance(q_x, q_y, q_au, w, guide_au=True, guide_keypoints=True):
    """Eq. 14-18 on one sample -> [D_UX, D_UY, D_PU]."""
    d_x, d_y, d_au = q_x, q_y, q_au
    if guide_au:
        s_x = relu(c1(q_x.T, w, "summarize_x"))                    # Eq. 14 (N, 1)
        s_y = relu(c1(q_y.T, w, "summarize_y"))                    # Eq. 14 (N, 1)
        stacked = np.concatenate([s_x, s_y], axis=0)               # (2N, 1)
        q_xy = relu(w["keypoint_dense/kernel"].T @ stacked
                    + w["keypoint_dense/bias"][:, None])           # Eq. 15 (M, 1)
        d_au = sigmoid(c1(q_xy, w, "au_mask")) * q_au              # Eq. 16 (M, N)
    if guide_keypoints:
        s_au = relu(c1(q_au.T, w, "summarize_au"))                 # (N, 1)
        q_a = relu(w["au_dense/kernel"].T @ s_au + w["au_dense/bias"][:, None])  # Eq. 17 (M, 1)
        mask = sigmoid(c1(q_a, w, "keypoint_mask"))                # (M, N)
        d_x, d_y = mask * q_x, mask * q_y                          # Eq. 18
    return [d_x, d_y, d_au]


def score_head(*streams, w, output_activation="relu", score_scale=1.0, hidden=False):
    """Eq. 19-20 on one sample's k streams -> (1,); ``hidden``: Eq. 19's read-out
    with a GELU layer (``C1_{M->H}``) before its ``C1_{H->K}``; K (the read-out's
    outputs per column) is read off the weights."""
    def read(d, i):                                                # (M, N) -> (N, M or H)
        return gelu(c1(d.T, w, f"stream_hidden_{i}")) if hidden else d.T
    scores = [relu(c1(read(d, i), w, f"stream_score_{i}"))         # Eq. 19 (N, K)
              for i, d in enumerate(streams)]
    stacked = np.concatenate([s.reshape(-1, 1) for s in scores], axis=0)  # (kNK, 1), row by row
    s = score_scale * (w["out/kernel"].T @ stacked + w["out/bias"][:, None])  # Eq. 20 (1, 1)
    s = relu(s) if output_activation == "relu" else s
    return s[:, 0]


# ----- Baselines -----------------------------------------------------------

def gmlp(r, w, eps=1e-6, spatial_norm=False):
    """Eq. 4-6 on one R (M, N) -> G (M, N)."""
    x = layer_norm(r, w["norm/gamma"], w["norm/beta"], eps)
    z = gelu(c1(x, w, "channel_proj"))                             # Eq. 4 (M, D)
    d = z.shape[1]
    z1, z2 = z[:, : d // 2], z[:, d // 2:]
    if spatial_norm:
        z2 = layer_norm(z2, w["spatial_norm/gamma"], w["spatial_norm/beta"], eps)
    w2, b2 = w["spatial_proj/kernel"].T, w["spatial_proj/bias"]    # W2 (M, M): rows = output token
    z_hat = z1 * (w2 @ z2 + b2[:, None])                           # Eq. 5 (M, D/2)
    return r + c1(z_hat, w, "out_proj")                            # Eq. 6


def multi_head_attention(query, value, w, prefix):
    """Scaled dot-product MHA (Keras' weight layout), one sample: (Tq, dq), (Tv, dv)."""
    q = np.einsum("td,dhe->the", query, w[f"{prefix}/query/kernel"]) + w[f"{prefix}/query/bias"]
    k = np.einsum("td,dhe->the", value, w[f"{prefix}/key/kernel"]) + w[f"{prefix}/key/bias"]
    v = np.einsum("td,dhe->the", value, w[f"{prefix}/value/kernel"]) + w[f"{prefix}/value/bias"]
    scores = np.einsum("qhe,khe->hqk", q, k) / math.sqrt(q.shape[-1])
    attn = softmax(scores, axis=-1)
    ctx = np.einsum("hqk,khe->qhe", attn, v)
    return (np.einsum("qhe,heo->qo", ctx, w[f"{prefix}/attention_output/kernel"])
            + w[f"{prefix}/attention_output/bias"])


def cross_attention_fusion(q_x, q_y, q_au, w, residual=True):
    """CA baseline on one sample -> [D_X, D_Y, D_AU], as documented in the layer."""
    n = q_x.shape[1]
    k = np.concatenate([q_x, q_y], axis=1)                         # (M, 2N)
    k_new = multi_head_attention(k, q_au, w, "keypoints_from_au")
    au_new = multi_head_attention(q_au, k, w, "au_from_keypoints")
    if residual:
        k_new, au_new = k + k_new, q_au + au_new
    return [k_new[:, :n], k_new[:, n:], au_new]
