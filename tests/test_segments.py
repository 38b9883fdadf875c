"""Eq. 1-3: down-sampling, Eq. 2, Eq. 3, gap-aware segmenting, and the .npz cache."""

import os

import numpy as np
import pytest

import depressionmlp.data.segments as seg
from depressionmlp.data.segments import (downsample, load_segmented, normalise_landmarks,
                                         segment_recording, widen_aus)
from depressionmlp.data.sampler import SegmentTable
from depressionmlp.data.types import (OpenFaceFrames, RecordingSource, SegmentedRecording,
                                      SegmentSettings)
from depressionmlp.errors import DataError

try:
    from tests.data_fixtures import write_openface_csv
except ImportError:  # pragma: no cover
    from data_fixtures import write_openface_csv


def frames_of(t, p=35, seed=0, success=None, confidence=None, path="mem.csv"):
    rng = np.random.default_rng(seed)
    return OpenFaceFrames(
        path=path, frame=np.arange(1, t + 1), timestamp=np.arange(t) / 30.0,
        success=np.ones(t, bool) if success is None else np.asarray(success, bool),
        confidence=np.full(t, 0.95, np.float32) if confidence is None else
        np.asarray(confidence, np.float32),
        x=rng.uniform(0, 480, (t, 68)).astype(np.float32),
        y=rng.uniform(0, 480, (t, 68)).astype(np.float32),
        au=rng.uniform(0, 5, (t, p)).astype(np.float32),
        au_names=[f"AU{i:02d}_r" for i in range(p)])


# ----------------------------------------------------------------------------- Eq. 1-3

def test_downsample_every_fifth_by_position():
    a = np.arange(23)
    np.testing.assert_array_equal(downsample(a, 30, 6), [0, 5, 10, 15, 20])
    np.testing.assert_array_equal(downsample(a, 25, 6), np.arange(0, 23, 4))   # round(4.17)
    f = downsample(frames_of(12), 30, 6)
    np.testing.assert_array_equal(f.frame, [1, 6, 11])
    assert f.x.shape == (3, 68)


def test_eq2_divides_by_max_of_height_and_width():
    v = np.array([[240.0, 480.0, 640.0]])
    np.testing.assert_allclose(normalise_landmarks(v, (480, 640)), [[0.375, 0.75, 1.0]])
    np.testing.assert_allclose(normalise_landmarks(v, (480, 480)), [[0.5, 1.0, 4 / 3]])
    assert normalise_landmarks(v, (480, 480)).dtype == np.float32


def test_eq3_hand_computed_for_35_aus():
    a = (np.arange(1, 36, dtype=np.float32) ** 2)[None, :]      # column k (1-based) = k^2
    w = widen_aus(a, 68)[0]
    assert w.shape == (68,)
    # odd j -> column (j+1)/2; even j -> mean of columns j/2 and j/2+1
    assert w[0] == 1                      # j=1: a_1
    assert w[1] == (1 + 4) / 2            # j=2: (a_1 + a_2)/2
    assert w[2] == 4                      # j=3: a_2
    assert w[3] == (4 + 9) / 2            # j=4
    assert w[66] == 34 ** 2               # j=67: a_34
    assert w[67] == (34 ** 2 + 35 ** 2) / 2   # j=68: (a_34 + a_35)/2 = 1190.5
    lin = widen_aus(np.arange(1, 36, dtype=np.float32), 68)
    np.testing.assert_allclose(lin, np.arange(2, 70) / 2)        # (j+1)/2 for every j


def test_eq3_equals_linear_interpolation_for_35_aus():
    a = np.random.default_rng(3).uniform(0, 5, (7, 18, 35)).astype(np.float32)
    eq3 = seg._widen_eq3(a)
    interp = seg._widen_interp(a, 68)
    np.testing.assert_allclose(interp, eq3, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(widen_aus(a, 68), eq3)
    # and the same thing with numpy's own interpolation, row by row
    pos = np.arange(68) * 34 / 68
    ref = np.apply_along_axis(lambda r: np.interp(pos, np.arange(35), r), -1, a)
    np.testing.assert_allclose(eq3, ref, rtol=1e-5, atol=1e-5)


def test_widen_20_daic_aus_is_interpolation():
    a = np.random.default_rng(4).uniform(0, 5, (5, 20)).astype(np.float32)
    w = widen_aus(a, 68)
    pos = np.arange(68) * 19 / 68
    ref = np.stack([np.interp(pos, np.arange(20), r) for r in a])
    np.testing.assert_allclose(w, ref, rtol=1e-5, atol=1e-5)
    assert w.shape == (5, 68)
    np.testing.assert_allclose(w[:, 0], a[:, 0])
    # column 4 sits at 4 * 19/68 = 1.1176...: between AU columns 1 and 2
    f = 4 * 19 / 68 - 1
    np.testing.assert_allclose(w[:, 4], a[:, 1] * (1 - f) + a[:, 2] * f, rtol=1e-5)


# ----------------------------------------------------------------------------- segmenting

def test_segment_counts_with_gaps_hand_computed():
    # 300 frames -> 60 at 6 fps (rows 0, 5, ..., 295).
    # row 7: failed but not sampled; row 125 (sampled #25): failed;
    # row 250 (sampled #50): confidence 0.5 < 0.8.
    # Runs of kept sampled frames: #0-24 (25), #26-49 (24), #51-59 (9).
    # M=18, stride 9: 1 + 1 + 0 = 2 segments, starting at #0 and #26.
    t = 300
    succ = np.ones(t, bool)
    succ[[7, 125]] = False
    conf = np.full(t, 0.95)
    conf[250] = 0.5
    f = frames_of(t, success=succ, confidence=conf)
    r_x, r_y, r_au, info = segment_recording(f, SegmentSettings())
    assert info == {"frames_total": 300, "frames_dropped": 3, "frames_sampled": 60,
                    "frames_kept": 58, "segments": 2, "step": 5, "fps": 6.0, "phases": 1}
    assert r_x.shape == r_y.shape == r_au.shape == (2, 18, 68)
    assert r_x.dtype == r_y.dtype == r_au.dtype == np.float32
    rows = [np.arange(0, 90, 5), np.arange(130, 220, 5)]
    for s, rr in enumerate(rows):
        np.testing.assert_allclose(r_x[s], f.x[rr] / 480, rtol=1e-6)
        np.testing.assert_allclose(r_y[s], f.y[rr] / 480, rtol=1e-6)
        np.testing.assert_allclose(r_au[s], widen_aus(f.au[rr]), rtol=1e-6)


def test_segment_stride_in_one_long_run():
    # 600 frames -> 120 sampled, one run: starts 0, 9, ..., 99 -> (120-18)//9 + 1 = 12
    f = frames_of(600)
    r_x, _, _, info = segment_recording(f, SegmentSettings(frame_size=(480, 640)))
    assert info["segments"] == 12 and r_x.shape == (12, 18, 68)
    np.testing.assert_allclose(r_x[1, 0], f.x[45] / 640, rtol=1e-6)   # start #9 = row 45


def test_phases_cut_the_same_segments_from_every_offset_in_time_order():
    """data.segment.phases = k: phase p's segments are phase 0's segments of the video
    from its row p on (rows p, p + 5, ...), merged in order of their first row; a
    failed frame in one phase ends only that phase's run."""
    success = np.ones(600, bool)
    success[302] = False                      # phase 2 only (row 302 = 2 + 5 * 60)
    f = frames_of(600, success=success)
    settings = SegmentSettings(frame_size=(480, 640), phases=5)
    r_x, r_y, r_au, info = segment_recording(f, settings)
    want, firsts = [], []
    for p in range(5):
        g = OpenFaceFrames(f.path, f.frame[p:], f.timestamp[p:], f.success[p:],
                           f.confidence[p:], f.x[p:], f.y[p:], f.au[p:], f.au_names)
        part = segment_recording(g, SegmentSettings(frame_size=(480, 640)))
        want.append(np.concatenate(part[:3], axis=-1))
        firsts += [p + 45 * k for k in range(len(part[0]))] if p != 2 else []
    assert [len(w) for w in want] == [12, 12, 10, 12, 12]       # phase 2: a run broken at 60
    assert info["segments"] == len(r_x) == 58
    got = np.concatenate([r_x, r_y, r_au], axis=-1)
    firsts_2 = [2 + 5 * s for s in (0, 9, 18, 27, 36, 61, 70, 79, 88, 97)]
    order = np.argsort(np.r_[firsts, firsts_2], kind="stable")
    pooled = np.concatenate([w for p, w in enumerate(want) if p != 2] + [want[2]])[order]
    np.testing.assert_array_equal(got, pooled)
    np.testing.assert_allclose(r_x[1, 0], f.x[1] / 640, rtol=1e-6)   # phase 1's first
    assert "phases" not in SegmentSettings().to_dict()           # caches of 1 unchanged
    assert SegmentSettings.from_dict(settings.to_dict()) == settings
    for bad in (0, 6, 2.5, True, "all"):
        with pytest.raises(ValueError, match="phases must be \"auto\" or an integer from 1 to 5"):
            segment_recording(f, SegmentSettings(phases=bad))


def test_auto_phases_cut_every_phase_of_short_recordings_only():
    """phases = "auto": a recording whose phase 0 gives fewer than ``phases_below``
    segments is cut exactly as at phases = 5; one with at least that many exactly as
    at phases = 1; the choice is in ``info["phases"]`` and reaches the SegmentTable."""
    f = frames_of(600)                                  # 12 segments at phase 0
    size = (480, 640)
    for below, want in ((13, 5), (12, 1), (40, 5)):
        auto = SegmentSettings(frame_size=size, phases="auto", phases_below=below)
        got = segment_recording(f, auto)
        ref = segment_recording(f, SegmentSettings(frame_size=size, phases=want))
        assert got[3]["phases"] == want
        assert got[3]["segments"] == len(got[0]) == (60 if want == 5 else 12)
        for a, b in zip(got[:3], ref[:3]):
            np.testing.assert_array_equal(a, b)
    auto = SegmentSettings(frame_size=size, phases="auto")
    assert auto.to_dict()["phases"] == "auto" and auto.to_dict()["phases_below"] == 40
    assert "phases_below" not in SegmentSettings(phases=5).to_dict()
    assert SegmentSettings.from_dict(auto.to_dict()) == auto
    with pytest.raises(ValueError, match="phases_below must be a positive integer"):
        segment_recording(f, SegmentSettings(phases="auto", phases_below=0))
    recs = [SegmentedRecording(str(i), str(i), "train", 1.0, *segment_recording(g, auto)[:3],
                               meta=segment_recording(g, auto)[3])
            for i, g in enumerate((frames_of(600), frames_of(2000)))]
    table = SegmentTable.from_recordings(recs)
    assert table.phases.tolist() == [5, 1] and table.counts.tolist() == [60, 43]
    assert table.subset([1]).phases.tolist() == [1]
    assert SegmentTable.concat([table, table.subset([0])]).phases.tolist() == [5, 1, 5]


def test_missing_rows_in_the_file_break_a_run():
    f = frames_of(200)
    cut = np.r_[0:100, 150:200]               # rows for frames 101..150 missing from the file
    g = OpenFaceFrames(f.path, f.frame[cut], f.timestamp[cut], f.success[cut],
                       f.confidence[cut], f.x[cut], f.y[cut], f.au[cut], f.au_names)
    # sampled: frames 1..96 (20, one run) then 151..196 (10): only the first holds a segment
    assert segment_recording(g, SegmentSettings())[3]["segments"] == 1


def test_too_few_frames():
    with pytest.raises(DataError) as e:
        segment_recording(frames_of(60, path="short.csv"), SegmentSettings())
    assert str(e.value).startswith("short.csv: only 12 usable frames at 6 fps, "
                                   "a segment needs 18")


def test_enough_frames_but_gaps_everywhere():
    succ = np.ones(300, bool)
    succ[np.arange(0, 300, 5 * 15)] = False           # a dropped sampled frame every 15
    with pytest.raises(DataError) as e:
        segment_recording(frames_of(300, success=succ), SegmentSettings())
    assert "a segment needs 18 consecutive" in str(e.value) and "at most 14" in str(e.value)


# ----------------------------------------------------------------------------- cache

def _source(path):
    return RecordingSource("203_1", "203", "train", 12.0, str(path), None)


def test_recording_centering_subtracts_the_mean_of_kept_frames():
    success = np.ones(300, bool)
    success[40:60] = False                            # failed frames stay out of the mean
    f = frames_of(300, success=success, seed=3)
    plain = segment_recording(f, SegmentSettings())
    cent = segment_recording(f, SegmentSettings(center="recording"))
    kept = np.flatnonzero(success[::5]) * 5           # the 6-fps frames used
    np.testing.assert_allclose(cent[0], plain[0] - f.x[kept].mean(0) / 480, atol=1e-6)
    np.testing.assert_allclose(cent[1], plain[1] - f.y[kept].mean(0) / 480, atol=1e-6)
    au_mean = widen_aus(f.au[kept], 68).mean(0)
    np.testing.assert_allclose(cent[2], plain[2] - au_mean, atol=1e-5)
    assert cent[3]["segments"] == plain[3]["segments"]
    # a constant offset of the whole face (where it sits in the frame) disappears
    moved = frames_of(300, success=success, seed=3)
    moved.x = moved.x + 37.0
    np.testing.assert_allclose(segment_recording(moved, SegmentSettings(center="recording"))[0],
                               cent[0], atol=1e-5)
    with pytest.raises(ValueError, match="center"):
        segment_recording(f, SegmentSettings(center="subject"))


def test_cache_hit_does_not_reparse(tmp_path, monkeypatch):
    p = write_openface_csv(tmp_path / "203_1.csv", 150)
    cache = tmp_path / "cache"
    a = load_segmented(_source(p), SegmentSettings(), cache_dir=cache)
    assert not a.meta["cached"] and a.n_segments == 2 and a.label == 12.0
    files = os.listdir(cache)
    assert len(files) == 1 and files[0].startswith("203_1-") and files[0].endswith(".npz")

    def boom(path):
        raise AssertionError("re-parsed despite the cache")
    monkeypatch.setattr(seg, "read_recording", boom)
    b = load_segmented(_source(p), SegmentSettings(), cache_dir=cache)
    assert b.meta["cached"]
    for k in ("R_X", "R_Y", "R_AU"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
    assert (b.frames_total, b.frames_dropped, b.subject_id) == (150, 0, "203")

    # other settings -> another key -> parse again
    with pytest.raises(AssertionError):
        load_segmented(_source(p), SegmentSettings(stride=3), cache_dir=cache)


def test_cache_invalidated_by_file_change_and_survives_corruption(tmp_path, monkeypatch):
    p = write_openface_csv(tmp_path / "r.csv", 150)
    cache = tmp_path / "cache"
    load_segmented(_source(p), cache_dir=cache)
    calls = []
    real = seg.read_recording
    monkeypatch.setattr(seg, "read_recording", lambda q: calls.append(q) or real(q))
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    load_segmented(_source(p), cache_dir=cache)
    assert len(calls) == 1
    for f in cache.iterdir():
        f.write_bytes(b"not a zip")
    r = load_segmented(_source(p), cache_dir=cache)
    assert len(calls) == 2 and r.n_segments == 2
    assert not [f for f in os.listdir(cache) if f.endswith(".tmp")]


def test_short_recording_error_is_a_data_error():
    assert issubclass(seg.ShortRecordingError, DataError)
