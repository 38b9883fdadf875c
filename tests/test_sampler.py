from collections import Counter

import numpy as np
import pytest

from depressionmlp.data.sampler import (SegmentTable, balanced_dataset, epoch_indices,
                                        eval_dataset, steps_per_epoch, subject_folds)
from depressionmlp.data.types import SegmentedRecording


def _recordings(counts=(3, 10, 25, 7, 12), labels=(0, 5, 5, 30, 12)):
    recs = []
    for i, (n, lab) in enumerate(zip(counts, labels)):
        # segment j of recording i carries the value 1000*i + j everywhere
        a = (1000.0 * i + np.arange(n, dtype=np.float32))[:, None, None] * np.ones((1, 18, 68),
                                                                                   np.float32)
        recs.append(SegmentedRecording(f"{100 + i}_1", f"{100 + i}", "train", float(lab),
                                       a, a + 0.25, a + 0.5))
    return recs


def _epoch_values(ds, steps):
    vals, labels = [], []
    for x, y in ds.take(steps):
        vals.append(x["R_X"].numpy()[:, 0, 0])
        labels.append(y.numpy()[:, 0])
        np.testing.assert_allclose(x["R_Y"].numpy() - x["R_X"].numpy(), 0.25)
        np.testing.assert_allclose(x["R_AU"].numpy() - x["R_X"].numpy(), 0.5)
    return np.concatenate(vals), np.concatenate(labels)


def test_epoch_counts_four_per_recording_and_score():
    recs = _recordings()
    table = SegmentTable.from_recordings(recs)
    steps = steps_per_epoch(table, 4, 8)
    assert steps == 3          # 5 recordings * 4 = 20 segments -> 8 + 8 + 4
    vals, labels = _epoch_values(balanced_dataset(table, seed=3, epochs=1), steps)
    assert len(vals) == 20
    per_rec = Counter((vals // 1000).astype(int))
    assert per_rec == {0: 4, 1: 4, 2: 4, 3: 4, 4: 4}
    # every (score, recording) pair holds exactly 4 segments; labels follow the segment
    pairs = Counter(zip(labels.astype(int), (vals // 1000).astype(int)))
    assert pairs == {(0, 0): 4, (5, 1): 4, (5, 2): 4, (30, 3): 4, (12, 4): 4}
    # without replacement where a recording has >= 4 segments
    for r in (1, 2, 3, 4):
        seg = vals[(vals // 1000).astype(int) == r]
        assert len(set(seg)) == 4
    # a 3-segment recording uses all three, one twice
    seg0 = vals[(vals // 1000).astype(int) == 0]
    assert set(seg0) == {0.0, 1.0, 2.0}


def test_epochs_redraw_and_seed_is_deterministic():
    table = SegmentTable.from_recordings(_recordings())
    e0 = epoch_indices(table, 0, seed=7).numpy()
    e1 = epoch_indices(table, 1, seed=7).numpy()
    assert not np.array_equal(np.sort(e0), np.sort(e1))       # fresh draw each epoch
    np.testing.assert_array_equal(e0, epoch_indices(table, 0, seed=7).numpy())
    assert not np.array_equal(e0, epoch_indices(table, 0, seed=8).numpy())
    a, _ = _epoch_values(balanced_dataset(table, seed=1, epochs=2), 6)
    b, _ = _epoch_values(balanced_dataset(table, seed=1, epochs=2), 6)
    np.testing.assert_array_equal(a, b)
    # batches never straddle epochs: epoch 2 starts a new batch and again has 4 per recording
    assert Counter((a[20:] // 1000).astype(int)) == {0: 4, 1: 4, 2: 4, 3: 4, 4: 4}


def test_draws_cover_long_recordings_over_many_epochs():
    table = SegmentTable.from_recordings(_recordings())
    seen = set()
    for e in range(40):
        idx = epoch_indices(table, e, seed=0).numpy()
        seen.update(int(i) for i in idx if table.recording[i] == 2)
    assert len(seen) >= 24          # of 25 segments of recording 2


def test_eval_dataset_in_order_every_segment_once():
    recs = _recordings()
    table = SegmentTable.from_recordings(recs)
    got = np.concatenate([x["R_X"].numpy()[:, 0, 0] for x in eval_dataset(table, batch_size=16)])
    want = np.concatenate([r.R_X[:, 0, 0] for r in recs])
    np.testing.assert_array_equal(got, want)
    assert list(table.recording_ids[table.recording][:4]) == ["100_1"] * 3 + ["101_1"]
    only_au = next(iter(eval_dataset(table, ("R_AU",))))
    assert set(only_au) == {"R_AU"}


def test_empty_inputs_rejected():
    with pytest.raises(ValueError, match="no recordings"):
        SegmentTable.from_recordings([])
    empty = np.zeros((0, 18, 68), np.float32)
    with pytest.raises(ValueError, match="without segments"):
        SegmentTable.from_recordings([SegmentedRecording("x", "x", "train", 1.0, empty, empty, empty)])


def test_grouped_epochs_keep_each_recordings_draws_together():
    table = SegmentTable.from_recordings(_recordings())
    idx = epoch_indices(table, 0, seed=7, per_recording=4, grouped=True).numpy()
    groups = table.recording[idx].reshape(-1, 4)
    assert (groups == groups[:, :1]).all()                         # one recording per group
    assert sorted(groups[:, 0]) == list(range(5))                  # each recording once
    flat = epoch_indices(table, 0, seed=7, per_recording=4).numpy()
    np.testing.assert_array_equal(np.sort(idx), np.sort(flat))     # the same draw
    orders = {tuple(epoch_indices(table, e, seed=7, per_recording=4, grouped=True)
                    .numpy()[::4] // 1) for e in range(4)}
    assert len(orders) > 1                                         # recordings reshuffled
    vals, labels = _epoch_values(balanced_dataset(table, seed=3, epochs=1, grouped=True), 3)
    assert ((vals // 1000).astype(int).reshape(-1, 4) == (vals // 1000).astype(int)
            .reshape(-1, 4)[:, :1]).all()
    with pytest.raises(ValueError, match="multiple of per_recording"):
        balanced_dataset(table, batch_size=6, grouped=True)


def test_grouped_epochs_split_evenly_among_replicas():
    """Five recordings, 2 per batch of 8 (per_recording 4), two replicas: each epoch is
    two full batches and no 1-recording tail (a replica would get half a recording and
    the recording loss could not reshape it); one replica keeps the tail."""
    table = SegmentTable.from_recordings(_recordings())
    one = [y.shape[0] for y in (b[1] for b in
                                balanced_dataset(table, batch_size=8, per_recording=4,
                                                 epochs=2, grouped=True))]
    assert one == [8, 8, 4, 8, 8, 4]
    ds = balanced_dataset(table, batch_size=8, per_recording=4, epochs=3, grouped=True,
                          replicas=2)
    batches = [(x["R_X"].numpy()[:, 0, 0] // 1000).astype(int) for x, _ in ds]
    assert [len(b) for b in batches] == [8, 8] * 3
    for b in batches:                                  # each replica's half: one recording
        assert (b.reshape(-1, 4) == b.reshape(-1, 4)[:, :1]).all()
    seen = [set(np.concatenate(batches[2 * e:2 * e + 2])) for e in range(3)]
    assert all(len(s) == 4 for s in seen) and set().union(*seen) == set(range(5))
    with pytest.raises(ValueError, match="cannot be split among 8 replicas"):
        balanced_dataset(table, batch_size=8, per_recording=4, grouped=True, replicas=8)


def test_full_batches_drop_each_epochs_partial_batch():
    """Five recordings x 4 draws in batches of 8: 8 + 8 + 4 per epoch, or with
    full_batches 8 + 8, the left-out recording a different one from epoch to epoch
    (the epoch's draws are those of the default, minus its last batch)."""
    table = SegmentTable.from_recordings(_recordings())
    assert steps_per_epoch(table, 4, 8, full_batches=True) == 2
    keep = [(x["R_X"].numpy()[:, 0, 0] // 1000).astype(int) for x, _ in
            balanced_dataset(table, batch_size=8, epochs=4, grouped=True, seed=5)]
    full = [(x["R_X"].numpy()[:, 0, 0] // 1000).astype(int) for x, _ in
            balanced_dataset(table, batch_size=8, epochs=4, grouped=True, seed=5,
                             full_batches=True)]
    assert [len(b) for b in keep] == [8, 8, 4] * 4 and [len(b) for b in full] == [8] * 8
    for e in range(4):
        np.testing.assert_array_equal(full[2 * e], keep[3 * e])
        np.testing.assert_array_equal(full[2 * e + 1], keep[3 * e + 1])
    left_out = {int(keep[3 * e + 2][0]) for e in range(4)}
    assert len(left_out) > 1
    with pytest.raises(ValueError, match="full batches of 32 need at least that many draws"):
        balanced_dataset(table, batch_size=32, full_batches=True)


def test_subset_and_concat_keep_each_recordings_segments_and_labels():
    table = SegmentTable.from_recordings(_recordings())
    part = table.subset([3, 1])
    assert list(part.recording_ids) == ["103_1", "101_1"]
    assert list(part.counts) == [7, 10] and list(part.offsets) == [0, 7]
    np.testing.assert_array_equal(part.arrays["R_X"][:, 0, 0],
                                  np.r_[3000 + np.arange(7), 1000 + np.arange(10)])
    np.testing.assert_array_equal(part.labels, [30] * 7 + [5] * 10)
    np.testing.assert_array_equal(part.recording, [0] * 7 + [1] * 10)
    back = SegmentTable.concat([table.subset([0, 1]), table.subset([2, 3, 4])])
    for field in ("labels", "recording", "offsets", "counts", "recording_ids",
                  "subject_ids", "recording_labels"):
        np.testing.assert_array_equal(getattr(back, field), getattr(table, field), field)
    np.testing.assert_array_equal(back.arrays["R_AU"], table.arrays["R_AU"])
    with pytest.raises(ValueError, match="no recordings"):
        table.subset([])


def _subjects_table(n_subjects=31, per_subject=(1, 2)):
    """Subjects with 1 or 2 recordings each, labels 0..n_subjects-1 (one per subject)."""
    recs, a = [], np.zeros((2, 18, 68), np.float32)
    for i in range(n_subjects):
        for j in range(per_subject[i % len(per_subject)]):
            recs.append(SegmentedRecording(f"{i}_{j}", f"s{i}", "train", float(i), a, a, a))
    return SegmentTable.from_recordings(recs)


def test_subject_folds_keep_subjects_together_and_span_the_scores():
    table = _subjects_table()
    folds = subject_folds(table, 3, seed=0)
    assert folds.shape == (table.n_recordings,) and set(folds) == {0, 1, 2}
    for s in set(table.subject_ids):                                # a subject, one fold
        assert len(set(folds[table.subject_ids == s])) == 1
    subj_fold = {s: folds[table.subject_ids == s][0] for s in set(table.subject_ids)}
    sizes = Counter(subj_fold.values())
    assert sorted(sizes.values()) == [10, 10, 11]                   # 31 subjects
    # stratified: each run of 3 subjects by score is dealt one to each fold, so the
    # folds' i-th lowest scores are within 2 of each other
    labels_by_fold = [sorted({float(v) for v in table.recording_labels[folds == k]})
                      for k in range(3)]
    for a, b, c in zip(*labels_by_fold):
        assert max(a, b, c) - min(a, b, c) <= 2
    np.testing.assert_array_equal(folds, subject_folds(table, 3, seed=0))   # deterministic
    assert not np.array_equal(folds, subject_folds(table, 3, seed=1))
    with pytest.raises(ValueError, match="3 folds need at least 3 subjects"):
        subject_folds(table.subset([0, 1]), 3)
