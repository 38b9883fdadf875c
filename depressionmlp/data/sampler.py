"""`tf.data` pipelines: the paper's balanced training epoch and ordered evaluation.

Fig. 5 stores segments as ``BDI_II_Score_XX/subject_ID_session/segments`` and each
epoch draws 4 segments from every recording under every score. Every recording
has one score, so that is 4 segments from every recording, drawn afresh each
epoch: long recordings do not dominate, and every recording (so every subject
session) weighs the same. It does not balance the scores themselves: a score
held by many recordings is drawn as often as it has recordings.

The draw is stateless: epoch ``e`` under seed ``s`` always gives the same
segments in the same order, and different epochs give different draws.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from depressionmlp.data.types import SegmentedRecording

STREAMS = ("R_X", "R_Y", "R_AU")


@dataclass
class SegmentTable:
    """Every segment of a list of recordings, concatenated.

    Attributes:
        arrays: stream name -> (S, M, N) float32, S = total segments.
        labels: (S,) float32, the recording label of each segment.
        recording: (S,) int32 index into ``recording_ids``.
        offsets, counts: (R,) first segment and number of segments per recording.
        recording_ids, subject_ids: (R,) str.
        recording_labels: (R,) float32.
        phases: (R,) int, the down-sampling phases each recording was cut at
            (``SegmentSettings.phases``; its segments start ``stride / phases``
            frames apart on average), or None where unknown.
    """

    arrays: dict
    labels: np.ndarray
    recording: np.ndarray
    offsets: np.ndarray
    counts: np.ndarray
    recording_ids: np.ndarray
    subject_ids: np.ndarray
    recording_labels: np.ndarray
    phases: np.ndarray | None = None

    @classmethod
    def from_recordings(cls, recordings: list[SegmentedRecording], streams=STREAMS):
        if not recordings:
            raise ValueError("no recordings to sample from")
        empty = [r.recording_id for r in recordings if r.n_segments == 0]
        if empty:
            raise ValueError(f"recordings without segments: {empty[:5]}")
        counts = np.array([r.n_segments for r in recordings], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        arrays = {s: np.concatenate([getattr(r, s) for r in recordings]).astype(np.float32)
                  for s in streams}
        rec_labels = np.array([r.label for r in recordings], dtype=np.float32)
        recording = np.repeat(np.arange(len(recordings), dtype=np.int32), counts)
        return cls(arrays=arrays, labels=rec_labels[recording], recording=recording,
                   offsets=offsets, counts=counts,
                   recording_ids=np.array([r.recording_id for r in recordings]),
                   subject_ids=np.array([r.subject_id for r in recordings]),
                   recording_labels=rec_labels,
                   phases=np.array([int(r.meta.get("phases", 1)) for r in recordings]))

    @classmethod
    def concat(cls, tables: list["SegmentTable"]) -> "SegmentTable":
        """The recordings of several tables, in order, as one table."""
        if len(tables) == 1:
            return tables[0]
        counts = np.concatenate([tb.counts for tb in tables])
        rec_base = np.cumsum([0] + [tb.n_recordings for tb in tables[:-1]])
        return cls(
            arrays={k: np.concatenate([tb.arrays[k] for tb in tables]) for k in tables[0].arrays},
            labels=np.concatenate([tb.labels for tb in tables]),
            recording=np.concatenate([tb.recording + b for tb, b in zip(tables, rec_base)]
                                     ).astype(np.int32),
            offsets=np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64),
            counts=counts,
            recording_ids=np.concatenate([tb.recording_ids for tb in tables]),
            subject_ids=np.concatenate([tb.subject_ids for tb in tables]),
            recording_labels=np.concatenate([tb.recording_labels for tb in tables]),
            phases=(None if any(tb.phases is None for tb in tables)
                    else np.concatenate([tb.phases for tb in tables])))

    def subset(self, recordings) -> "SegmentTable":
        """The table of the recordings at indices ``recordings`` (in that order)."""
        idx = np.asarray(recordings, dtype=np.int64).reshape(-1)
        if idx.size == 0:
            raise ValueError("no recordings to sample from")
        seg = np.concatenate([np.arange(o, o + c) for o, c in
                              zip(self.offsets[idx], self.counts[idx])])
        counts = self.counts[idx]
        return SegmentTable(
            arrays={k: v[seg] for k, v in self.arrays.items()}, labels=self.labels[seg],
            recording=np.repeat(np.arange(idx.size, dtype=np.int32), counts),
            offsets=np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64),
            counts=counts, recording_ids=self.recording_ids[idx],
            subject_ids=self.subject_ids[idx], recording_labels=self.recording_labels[idx],
            phases=None if self.phases is None else self.phases[idx])

    @property
    def n_segments(self) -> int:
        return int(self.labels.shape[0])

    @property
    def n_recordings(self) -> int:
        return int(self.counts.shape[0])


def subject_folds(table: SegmentTable, k: int, seed: int = 0) -> np.ndarray:
    """(R,) fold index in ``[0, k)`` of each recording: a subject's recordings share a
    fold, and the folds are stratified by score (subjects sorted by their mean
    recording label, each run of ``k`` consecutive subjects dealt one to each fold in
    a random order under ``seed``), so every fold spans the range of scores."""
    subjects, inverse = np.unique(table.subject_ids, return_inverse=True)
    if subjects.size < k:
        raise ValueError(f"{k} folds need at least {k} subjects, got {subjects.size}")
    mean_label = (np.bincount(inverse, weights=table.recording_labels.astype(np.float64))
                  / np.bincount(inverse))
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(subjects.size), mean_label))   # ties broken at random
    fold_of_subject = np.empty(subjects.size, dtype=np.int64)
    for start in range(0, subjects.size, k):
        block = order[start:start + k]
        fold_of_subject[block] = rng.permutation(k)[:block.size]
    return fold_of_subject[inverse]


def epoch_indices(table: SegmentTable, epoch, seed: int, per_recording: int = 4,
                  grouped: bool = False) -> tf.Tensor:
    """Segment indices of one balanced epoch, shuffled: (R * per_recording,) int64.

    Each recording contributes exactly ``per_recording`` segments, drawn without
    replacement when it has that many (with repeats, evenly, when it has fewer).
    With ``grouped`` the recordings are shuffled and each one's segments stay
    together (``per_recording`` consecutive indices), for the recording loss.
    """
    seed_pair = tf.stack([tf.cast(seed, tf.int64), tf.cast(epoch, tf.int64)])
    u = tf.random.stateless_uniform([table.n_segments], seed=seed_pair, dtype=tf.float64)
    # Sort by (recording, random key): each recording's segments stay in its own
    # block [offset, offset + count) but in a fresh random order.
    order = tf.argsort(tf.constant(table.recording, tf.float64) + 0.5 * u, stable=True)
    j = tf.range(per_recording, dtype=tf.int64)
    counts = tf.constant(table.counts)
    pos = tf.constant(table.offsets)[:, None] + j[None, :] % counts[:, None]   # (R, k)
    picked = tf.gather(order, pos)                                              # (R, k)
    shuffle_seed = tf.stack([seed_pair[0] + 1, seed_pair[1]])
    if grouped:
        rows = tf.random.experimental.stateless_shuffle(
            tf.range(table.n_recordings, dtype=tf.int64), seed=shuffle_seed)
        return tf.cast(tf.reshape(tf.gather(picked, rows), [-1]), tf.int64)
    picked = tf.reshape(picked, [-1])
    return tf.cast(tf.random.experimental.stateless_shuffle(picked, seed=shuffle_seed), tf.int64)


def balanced_dataset(table: SegmentTable, streams=STREAMS, *, per_recording: int = 4,
                     batch_size: int = 8, seed: int = 0, epochs: int | None = None,
                     start_epoch: int = 0, grouped: bool = False,
                     replicas: int = 1, full_batches: bool = False) -> tf.data.Dataset:
    """Training pipeline: balanced epochs, shuffled, batched, prefetched.

    Yields ``({stream: (b, M, N)}, label (b, 1))``. Each epoch is
    ``ceil(R * per_recording / batch_size)`` batches (see :func:`steps_per_epoch`)
    and batches never straddle two epochs. ``epochs=None`` repeats forever; give
    Keras ``steps_per_epoch`` then. ``grouped`` (see :func:`epoch_indices`) needs
    ``batch_size`` to be a multiple of ``per_recording``, so that every batch holds
    whole recordings. ``replicas`` > 1 (a distribution strategy splits each batch
    evenly among its replicas): with ``grouped``, each epoch's last, partial batch keeps
    a multiple of ``replicas`` recordings, so that every replica gets whole recordings;
    the one to ``replicas - 1`` recordings left out of that epoch are drawn again in
    the next. ``full_batches`` drops each epoch's last, partial batch instead (its
    draws are left out of that epoch; the next epoch draws afresh), so that every
    batch has one shape: XLA compiles one program per input shape. Each epoch is
    then ``floor(R * per_recording / batch_size)`` batches.
    """
    if full_batches and table.n_recordings * per_recording < batch_size:
        raise ValueError(f"full batches of {batch_size} need at least that many draws per "
                         f"epoch; {table.n_recordings} recordings x {per_recording} give "
                         f"{table.n_recordings * per_recording}")
    if grouped and batch_size % per_recording:
        raise ValueError(f"grouped batches need batch_size ({batch_size}) to be a "
                         f"multiple of per_recording ({per_recording})")
    keep = None
    if grouped and replicas > 1:
        if table.n_recordings < replicas:
            raise ValueError(f"{table.n_recordings} training recordings cannot be split "
                             f"among {replicas} replicas")
        tail = table.n_recordings % (batch_size // per_recording)
        keep = (table.n_recordings - tail % replicas) * per_recording
    arrays = {s: tf.constant(table.arrays[s]) for s in streams}
    labels = tf.constant(table.labels[:, None])
    stop = None if epochs is None else start_epoch + epochs
    epochs_ds = (tf.data.Dataset.range(start_epoch, stop) if stop is not None
                 else tf.data.Dataset.range(start_epoch, np.iinfo(np.int64).max))

    def one_epoch(e):
        idx = epoch_indices(table, e, seed, per_recording, grouped)
        if keep is not None:
            idx = idx[:keep]
        return tf.data.Dataset.from_tensor_slices(idx).batch(batch_size,
                                                             drop_remainder=full_batches)

    def gather(idx):
        return {s: tf.gather(a, idx) for s, a in arrays.items()}, tf.gather(labels, idx)

    return (epochs_ds.flat_map(one_epoch)
            .map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .prefetch(tf.data.AUTOTUNE))


def steps_per_epoch(table: SegmentTable, per_recording: int = 4, batch_size: int = 8,
                    full_batches: bool = False) -> int:
    draws = table.n_recordings * per_recording
    return draws // batch_size if full_batches else int(np.ceil(draws / batch_size))


def eval_dataset(table: SegmentTable, streams=STREAMS, batch_size: int = 256) -> tf.data.Dataset:
    """Every segment once, in table order (recording by recording), inputs only.

    Pair the predictions with ``table.recording_ids[table.recording]`` and
    ``table.labels`` to aggregate per recording.
    """
    ds = tf.data.Dataset.from_tensor_slices({s: table.arrays[s] for s in streams})
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
