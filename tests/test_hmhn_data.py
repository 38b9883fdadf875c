"""hmhn.data: frame sampling, video reading, dlib alignment, corpus layouts, synthetic faces.

Alignment is checked on a real photograph shipped with scikit-image (the astronaut
Eileen Collins), and on short mp4 videos written from it with OpenCV.
"""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest
import skimage.data

from depressionmlp.errors import DataError
from hmhn.data import (FaceAligner, FaceVideo, align_video, load_faces, read_video_frames,
                       resolve_corpus_dir, sample_frame_indices)
from hmhn.data.align import cache_path, eye_centres
from hmhn.data.synth import generate_faces, main as synth_main

SPLITS = ("train", "dev", "test")


@pytest.fixture(scope="module")
def aligner():
    return FaceAligner()


@pytest.fixture(scope="module")
def astronaut():
    return skimage.data.astronaut()


def write_video(path, frames_rgb, fps=10):
    """mp4v video from RGB frames (all the same size)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames_rgb[0].shape[:2]
    vw = cv2.VideoWriter(os.fspath(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert vw.isOpened()
    for f in frames_rgb:
        vw.write(np.ascontiguousarray(f[:, :, ::-1]))
    vw.release()
    return path


def face_frames(img, n):
    return [np.roll(img, 3 * i, axis=1) for i in range(n)]


def blank(img):
    return np.full_like(img, 128)


# ----------------------------------------------------------------------------- sampling

@pytest.mark.parametrize("n, count, expected", [
    (10, 4, [1, 3, 6, 8]),            # centres of 4 segments of 2.5 frames
    (100, 5, [10, 30, 50, 70, 90]),
    (4, 4, [0, 1, 2, 3]),
    (7, 1, [3]),
    (3, 5, [0, 0, 1, 2, 2]),          # more wanted than there are: every frame, some twice
    (1, 3, [0, 0, 0]),
    (0, 3, []),
])
def test_sample_frame_indices_hand_computed(n, count, expected):
    assert sample_frame_indices(n, count).tolist() == expected


def test_sample_frame_indices_sorted_unique_in_range():
    for n in range(1, 60):
        for count in range(1, 70):
            idx = sample_frame_indices(n, count)
            assert len(idx) == count and idx.min() >= 0 and idx.max() < n
            assert np.all(np.diff(idx) >= 0)
            if count <= n:
                assert len(set(idx.tolist())) == count
            else:
                assert set(idx.tolist()) == set(range(n))
    with pytest.raises(ValueError):
        sample_frame_indices(10, 0)


# ----------------------------------------------------------------------------- alignment

def test_align_astronaut_puts_eyes_on_targets(aligner, astronaut):
    pts = aligner.landmarks(astronaut)
    assert pts.shape == (68, 2)
    left, right = eye_centres(pts)
    assert 180 < left[0] < right[0] < 270 and 80 < left[1] < 130   # her eyes in the photo
    crop = aligner.align(astronaut)
    assert crop.shape == (224, 224, 3) and crop.dtype == np.uint8
    again = aligner.landmarks(crop)
    assert again is not None
    (lx, ly), (rx, ry) = eye_centres(again)
    (tlx, tly), (trx, try_) = aligner.target_eyes()
    assert np.hypot(lx - tlx, ly - tly) < 6 and np.hypot(rx - trx, ry - try_) < 6
    assert abs(ly - ry) < 3                                           # level
    assert abs((rx - lx) - 0.36 * 224) < 6                            # eye distance


def test_target_eyes_and_transform_exact(aligner, astronaut):
    np.testing.assert_allclose(aligner.target_eyes(), [(71.68, 85.12), (152.32, 85.12)])
    small = FaceAligner(size=112, eye_y=0.4, eye_dist=0.3)
    pts = aligner.landmarks(astronaut)
    m = small.transform(pts)
    moved = [m[:, :2] @ e + m[:, 2] for e in eye_centres(pts)]
    np.testing.assert_allclose(moved, small.target_eyes(), atol=1e-9)
    assert small.align(astronaut).shape == (112, 112, 3)


def test_no_face_gives_none(aligner, astronaut):
    assert aligner.landmarks(blank(astronaut)) is None
    assert aligner.align(blank(astronaut)) is None


# ----------------------------------------------------------------------------- videos

@pytest.fixture(scope="module")
def face_video(tmp_path_factory, astronaut):
    """8 frames: 6 of the astronaut (shifted), 2 blank (frames 2 and 5)."""
    frames = face_frames(astronaut, 8)
    frames[2] = frames[5] = blank(astronaut)
    return write_video(tmp_path_factory.mktemp("vid") / "rec_1.mp4", frames)


def test_read_video_frames_rgb(face_video, astronaut):
    frames = read_video_frames(face_video, 4)
    assert frames.shape == (4, 512, 512, 3) and frames.dtype == np.uint8
    # RGB order (not OpenCV's BGR): channel means match the photo's
    np.testing.assert_allclose(frames[0].reshape(-1, 3).mean(0),
                               astronaut.reshape(-1, 3).mean(0), atol=6)


def test_read_video_frames_picks_the_sampled_frames(tmp_path, monkeypatch):
    """Frame i is grey level 20 i; decoding from the start and seeking agree."""
    import hmhn.data.video as video
    path = write_video(tmp_path / "grey.mp4",
                       [np.full((64, 64, 3), 20 * i, np.uint8) for i in range(10)])
    levels = read_video_frames(path, 4)[:, 32, 32, 0].astype(int)
    np.testing.assert_allclose(levels, [20, 60, 120, 160], atol=8)   # frames 1, 3, 6, 8
    monkeypatch.setattr(video, "SEEK_ABOVE_FRAMES", 1)
    np.testing.assert_allclose(read_video_frames(path, 4)[:, 32, 32, 0], levels, atol=2)


def test_align_video_counts_skipped_and_caches(face_video, aligner, tmp_path, monkeypatch):
    frames, skipped = align_video(face_video, 8, aligner, cache_dir=tmp_path)
    assert frames.shape == (6, 224, 224, 3) and frames.dtype == np.uint8
    assert skipped == 2
    cached = list(tmp_path.glob("*.npz"))
    assert len(cached) == 1 and cached[0] == cache_path(face_video, 8, aligner, tmp_path)

    def boom(*a, **k):
        raise AssertionError("aligner called on a cache hit")
    monkeypatch.setattr(aligner, "align", boom)
    again, skipped2 = align_video(face_video, 8, aligner, cache_dir=tmp_path)
    np.testing.assert_array_equal(again, frames)
    assert skipped2 == 2
    # a different count is a different cache entry
    assert cache_path(face_video, 4, aligner, tmp_path) != cached[0]


def test_align_video_errors(tmp_path, aligner, astronaut):
    empty = write_video(tmp_path / "blank.mp4", [blank(astronaut)] * 3)
    with pytest.raises(DataError, match="blank.mp4.*no face"):
        align_video(empty, 3, aligner)
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(DataError, match="corrupt.mp4"):
        align_video(bad, 3, aligner)
    with pytest.raises(DataError, match="corrupt.mp4"):
        read_video_frames(bad, 3)
    with pytest.raises(DataError, match="missing.mp4.*not found"):
        read_video_frames(tmp_path / "missing.mp4", 3)


# ----------------------------------------------------------------------------- corpora

def write_label(root, corpus, split, name, value):
    d = root / corpus / "labels" / split
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{name}_Depression.csv").write_text(f"{value}\n")


def write_faces(folder, n=3, shape=(50, 60)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(folder)))
    for i in range(n):
        cv2.imwrite(os.fspath(folder / f"f{i:03d}.png"),
                    rng.integers(0, 255, (*shape, 3), dtype=np.uint8))


def test_resolve_corpus_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("DATA_ROOT", raising=False)
    with pytest.raises(DataError, match="avec2013.*not found.*DATA_ROOT"):
        resolve_corpus_dir("avec2013", tmp_path)
    with pytest.raises(DataError, match="`hmhn synth --out "):
        resolve_corpus_dir("synthetic-faces", tmp_path)
    (tmp_path / "avec2013").mkdir()
    assert resolve_corpus_dir("avec2013", tmp_path) == tmp_path / "avec2013"
    monkeypatch.setenv("DATA_ROOT", os.fspath(tmp_path))
    assert resolve_corpus_dir("avec2013") == tmp_path / "avec2013"


def test_avec2014_videos_train_merges_train_dev_both_tasks(tmp_path, aligner, astronaut):
    v = tmp_path / "avec2014" / "video"
    frames = face_frames(astronaut, 2)
    write_video(v / "Training" / "Freeform" / "203_1_Freeform_video.mp4", frames)
    write_video(v / "Training" / "Northwind" / "203_1_Northwind_video.mp4", frames)
    write_video(v / "Development" / "Freeform" / "205_2_Freeform_video.mp4", frames)
    write_video(v / "Testing" / "Northwind" / "207_1_Northwind_video.mp4", frames)
    write_label(tmp_path, "avec2014", "Training", "203_1", 12)
    write_label(tmp_path, "avec2014", "Development", "205_2", 20)
    write_label(tmp_path, "avec2014", "Development", "205_2_Freeform", 30)   # per task wins
    write_label(tmp_path, "avec2014", "Testing", "207_1", 5)
    train = load_faces("avec2014", tmp_path, "train", frames_per_video=2, aligner=aligner)
    got = {x.video_id: (x.subject_id, x.split, x.label, x.frames.shape, x.n_skipped)
           for x in train}
    assert got == {"203_1_Freeform": ("203", "train", 12.0, (2, 224, 224, 3), 0),
                   "203_1_Northwind": ("203", "train", 12.0, (2, 224, 224, 3), 0),
                   "205_2_Freeform": ("205", "dev", 30.0, (2, 224, 224, 3), 0)}
    assert all(isinstance(x, FaceVideo) for x in train)
    assert [x.video_id for x in load_faces("avec2014", tmp_path, "test", 2,
                                           aligner=aligner)] == ["207_1_Northwind"]
    assert [x.video_id for x in load_faces("avec2014", tmp_path, "dev", 2,
                                           aligner=aligner)] == ["205_2_Freeform"]
    assert list((tmp_path / "avec2014" / ".cache" / "aligned").glob("*.npz"))


def test_avec2013_video_default_aligner(tmp_path, astronaut):
    write_video(tmp_path / "avec2013" / "video" / "train" / "203_1_cut_video.mp4",
                face_frames(astronaut, 2))
    write_label(tmp_path, "avec2013", "train", "203_1", 17)
    (x,) = load_faces("avec2013", tmp_path, "train", frames_per_video=3, size=112,
                      cache_dir=False)
    assert (x.video_id, x.subject_id, x.label) == ("203_1", "203", 17.0)
    assert x.frames.shape == (3, 112, 112, 3)   # 2-frame video, 3 asked: one repeats
    assert not (tmp_path / "avec2013" / ".cache").exists()


def test_avec2014_faces_form(tmp_path):
    f = tmp_path / "avec2014" / "faces"
    write_faces(f / "train" / "203_1_Freeform", n=5)
    write_faces(f / "dev" / "Northwind" / "205_2", n=2)
    write_label(tmp_path, "avec2014", "train", "203_1", 12)
    write_label(tmp_path, "avec2014", "dev", "205_2", 40.5)
    vids = load_faces("avec2014", tmp_path, "train", frames_per_video=3, size=32)
    assert [(x.video_id, x.split, x.label, x.frames.shape) for x in vids] == [
        ("203_1_Freeform", "train", 12.0, (3, 32, 32, 3)),
        ("205_2_Northwind", "dev", 40.5, (3, 32, 32, 3))]
    # evenly sampled, sorted by file name: 5 files, 3 wanted -> files 0, 2, 4
    want = [cv2.resize(cv2.imread(os.fspath(f / "train" / "203_1_Freeform" / f"f{i:03d}.png")),
                       (32, 32), interpolation=cv2.INTER_AREA)[:, :, ::-1] for i in (0, 2, 4)]
    np.testing.assert_array_equal(vids[0].frames, np.stack(want))


@pytest.mark.parametrize("content, problem", [
    ("abc", "not a number"), ("70", "outside the BDI-II range"), ("-1", "outside"),
    ("", "exactly one number"), ("3\n4", "exactly one number"), ("nan", "outside"),
])
def test_label_errors_name_the_file(tmp_path, content, problem):
    write_faces(tmp_path / "avec2013" / "faces" / "train" / "301_1")
    write_label(tmp_path, "avec2013", "train", "301_1", content)
    with pytest.raises(DataError, match=f"301_1_Depression.csv: .*{problem}"):
        load_faces("avec2013", tmp_path, "train", frames_per_video=2, size=16)


def test_missing_labels_and_recordings(tmp_path):
    write_faces(tmp_path / "avec2013" / "faces" / "train" / "301_1")
    with pytest.raises(DataError, match="no labels folder"):
        load_faces("avec2013", tmp_path, "train", frames_per_video=2, size=16)
    write_label(tmp_path, "avec2013", "train", "302_1", 3)
    with pytest.raises(DataError, match="301_1.*no label file"):
        load_faces("avec2013", tmp_path, "train", frames_per_video=2, size=16)
    with pytest.raises(DataError, match="no recordings for split 'test'"):
        load_faces("avec2013", tmp_path, "test", frames_per_video=2, size=16)
    (tmp_path / "avec2013" / "faces" / "train" / "303_1").mkdir()
    write_label(tmp_path, "avec2013", "train", "301_1", 3)
    write_label(tmp_path, "avec2013", "train", "303_1", 4)
    with pytest.raises(DataError, match="303_1.*no face images"):
        load_faces("avec2013", tmp_path, "train", frames_per_video=2, size=16)


# ----------------------------------------------------------------------------- synthetic

@pytest.fixture(scope="module")
def small_synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    manifest = generate_faces(root / "synthetic-faces", n_subjects=9, frames_per_video=4, size=64)
    return root, manifest


def test_synthetic_loads_with_manifest_labels(small_synth):
    root, manifest = small_synth
    by_id = {v["video_id"]: v for v in manifest["videos"]}
    subjects = {}
    for split in SPLITS:
        vids = load_faces("synthetic-faces", root, split, frames_per_video=4, size=64)
        assert vids
        for x in vids:
            assert x.frames.shape == (4, 64, 64, 3) and x.frames.dtype == np.uint8
            assert x.label == by_id[x.video_id]["label"] and x.split == split
            assert x.subject_id == by_id[x.video_id]["subject"]
        subjects[split] = {x.subject_id for x in vids}
    assert not (subjects["train"] & subjects["dev"] or subjects["train"] & subjects["test"]
                or subjects["dev"] & subjects["test"])
    up = load_faces("synthetic-faces", root, "dev", frames_per_video=2, size=96)
    assert up[0].frames.shape == (2, 96, 96, 3)
    assert sorted(p.name for p in (root / "synthetic-faces").iterdir()) == [
        "faces", "labels", "manifest.json"]


def test_synthetic_deterministic_and_refuses_foreign_folder(small_synth, tmp_path):
    _, manifest = small_synth
    again = generate_faces(tmp_path / "a", n_subjects=9, frames_per_video=4, size=64)
    assert json.dumps(again, sort_keys=True) == json.dumps(manifest, sort_keys=True)
    generate_faces(tmp_path / "a", n_subjects=9, frames_per_video=4, size=64, seed=1)  # replaces
    assert json.loads((tmp_path / "a" / "manifest.json").read_text())["seed"] == 1
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        generate_faces(tmp_path / "b", n_subjects=3)
    assert (tmp_path / "b" / "keep.txt").read_text() == "mine"


def test_synth_main_small(tmp_path, capsys):
    assert synth_main(["--out", os.fspath(tmp_path / "s"), "--small"]) == 0
    m = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert m["parameters"]["size"] == 64 and m["parameters"]["n_subjects"] == 9
    assert "noise floor" in capsys.readouterr().out


def _box(frames, x0, x1, y0, y1):
    s = frames.shape[1]
    return frames[:, int(y0 * s):int(y1 * s), int(x0 * s):int(x1 * s)].astype(np.float64)


def cheek_colour(frames):
    """Median RGB of two cheek patches (below the eyes, beside the nose): skin only."""
    patches = [_box(frames, x - 0.025, x + 0.025, 0.50, 0.54).reshape(-1, 3)
               for x in (0.34, 0.66)]
    return np.median(np.concatenate(patches), axis=0)


def eye_pixels(frames):
    """Pixels per frame in the two eye boxes that differ clearly from the cheek skin."""
    skin = cheek_colour(frames)
    total = sum((np.abs(_box(frames, x - 0.07, x + 0.07, 0.34, 0.42) - skin).sum(-1) > 60).sum()
                for x in (0.32, 0.68))
    return total / len(frames)


def mouth_droop(frames):
    """Mean row of lip pixels at the mouth corners minus at its middle (pixels, + = down)."""
    skin = cheek_colour(frames)
    out = []
    for f in frames:
        region = _box(f[None], 0.36, 0.64, 0.59, 0.76)[0]
        lip = (np.abs(region - skin).sum(-1) > 40).astype(np.float64)
        rows = np.arange(region.shape[0])[:, None]
        has = lip.sum(0) > 0
        centre = (lip * rows).sum(0) / np.maximum(lip.sum(0), 1e-9)
        dx = np.abs(np.arange(region.shape[1]) - region.shape[1] / 2) / region.shape[1]
        mid, corner = has & (dx < 0.1), has & (dx > 0.22)
        out.append(centre[corner].mean() - centre[mid].mean())
    return float(np.mean(out))


def test_synthetic_honesty(tmp_path):
    manifest = generate_faces(tmp_path / "synthetic-faces", n_subjects=40, frames_per_video=6,
                              size=128)
    vids = [x for s in SPLITS for x in load_faces("synthetic-faces", tmp_path, s, 6, 128)]
    labels = np.array([x.label for x in vids])
    skin = np.array([cheek_colour(x.frames) for x in vids])
    skin_r = [abs(np.corrcoef(skin[:, c], labels)[0, 1]) for c in range(3)]
    eyes_r = np.corrcoef([eye_pixels(x.frames) for x in vids], labels)[0, 1]
    droop_r = np.corrcoef([mouth_droop(x.frames) for x in vids], labels)[0, 1]
    assert max(skin_r) < 0.3, skin_r                  # identity: no label signal
    assert eyes_r < -0.4 and droop_r > 0.4, (eyes_r, droop_r)   # cues: signal
    # the noise floor in the manifest is RMSE(true, label) recomputed per split
    rows = manifest["videos"]
    for split in (*SPLITS, "all"):
        sel = [r for r in rows if split == "all" or r["split"] == split]
        rmse = np.sqrt(np.mean([(r["true_score"] - r["label"]) ** 2 for r in sel]))
        assert manifest["noise_floor"][split]["rmse"] == pytest.approx(rmse, abs=1e-4)
        assert manifest["noise_floor"][split]["n"] == len(sel)
    assert 1.5 < manifest["noise_floor"]["all"]["rmse"] < 4.5          # label_noise_sd 3
    assert manifest["mean_predictor_rmse"]["test"]["rmse"] > manifest["noise_floor"]["test"]["rmse"]
    assert np.median(labels) < 20                                      # skewed low
