"""Corpus layouts (AVEC 2013/2014, DAIC-WOZ, synthetic), labels, leakage, load_corpus."""

import numpy as np
import pytest

from depressionmlp.data.corpora import (check_leakage, default_settings, discover,
                                        label_range, load_corpus, resolve_corpus_dir)
from depressionmlp.errors import DataError

try:
    from tests.data_fixtures import (make_avec2013, make_avec2014, make_daic,
                                     write_daic_recording, write_label, write_openface_csv)
except ImportError:  # pragma: no cover
    from data_fixtures import (make_avec2013, make_avec2014, make_daic, write_daic_recording,
                               write_label, write_openface_csv)

AVEC13 = {"train": {"203_1": 12, "205_2": 30}, "dev": {"310_1": 0}, "test": {"400_1": 63}}


def _err(fn, *a, **kw):
    with pytest.raises(DataError) as e:
        fn(*a, **kw)
    return e.value


# ----------------------------------------------------------------------------- root

def test_resolve_missing_corpus_says_where_and_what(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_ROOT", str(tmp_path / "x"))
    e = _err(resolve_corpus_dir, "avec2013")
    msg = str(e)
    assert f"no avec2013 corpus at {tmp_path / 'x' / 'avec2013'} (from DATA_ROOT)" in msg
    assert "README 'Data layouts'" in msg and "make synth" in msg and "\n" not in msg
    assert "from data_root" in str(_err(resolve_corpus_dir, "daic", tmp_path))
    monkeypatch.delenv("DATA_ROOT")
    monkeypatch.chdir(tmp_path)
    assert "DATA_ROOT is not set" in str(_err(resolve_corpus_dir, "synthetic"))
    (tmp_path / "data" / "synthetic").mkdir(parents=True)
    assert resolve_corpus_dir("synthetic") == tmp_path / "data" / "synthetic"
    assert "unknown corpus" in str(_err(resolve_corpus_dir, "avec2015"))


def test_settings_and_ranges():
    assert default_settings("avec2013").frame_size == (480, 480)
    assert default_settings("avec2014").frame_size == (480, 480)
    assert default_settings("daic").frame_size == (480, 640)
    s = default_settings("synthetic")
    assert (s.fps_in, s.fps, s.segment_length, s.stride) == (30, 6, 18, 9)
    assert label_range("avec2013") == (0, 63) and label_range("daic") == (0, 24)


# ----------------------------------------------------------------------------- AVEC 2013

def test_avec2013_discover(tmp_path):
    make_avec2013(tmp_path, AVEC13)
    src = discover("avec2013", tmp_path)
    got = [(s.split, s.recording_id, s.subject_id, s.label) for s in src]
    assert got == [("train", "203_1", "203", 12), ("train", "205_2", "205", 30),
                   ("dev", "310_1", "310", 0), ("test", "400_1", "400", 63)]
    assert src[0].path.endswith("openface/train/203_1.csv")
    assert src[0].label_path.endswith("labels/train/203_1_Depression.csv")
    assert [s.split for s in discover("avec2013", tmp_path, splits=("dev",))] == ["dev"]


def test_avec_split_folder_aliases(tmp_path):
    make_avec2013(tmp_path, AVEC13, corpus="synthetic",
                  split_names={"train": "Training", "dev": "Development", "test": "Testing"})
    src = discover("synthetic", tmp_path)
    assert [s.split for s in src] == ["train", "train", "dev", "test"]


@pytest.mark.parametrize("content, problem", [
    ("64\n", "label 64 is outside the BDI-II range 0..63"),
    ("-1", "label -1 is outside the BDI-II range 0..63"),
    ("abc\n", "label 'abc' is not a number"),
    ("", "label file is empty; expected one number"),
    ("12\n13\n", "label file holds 2 values (12 13); expected one number"),
    ("12, 13", "label file holds 2 values"),
])
def test_bad_label_names_file(tmp_path, content, problem):
    cdir = make_avec2013(tmp_path, AVEC13)
    lab = cdir / "labels" / "dev" / "310_1_Depression.csv"
    lab.write_text(content)
    e = _err(discover, "avec2013", tmp_path)
    assert e.path == str(lab) and problem in str(e)


def test_label_float_and_bom_accepted(tmp_path):
    cdir = make_avec2013(tmp_path, {"train": {"203_1": 1}})
    (cdir / "labels" / "train" / "203_1_Depression.csv").write_text("\ufeff17.0\r\n")
    assert discover("avec2013", tmp_path, ("train",))[0].label == 17.0


def test_recording_without_label_and_label_without_recording(tmp_path):
    cdir = make_avec2013(tmp_path, AVEC13)
    extra = write_openface_csv(cdir / "openface" / "train" / "207_1.csv", 10)
    e = _err(discover, "avec2013", tmp_path)
    assert e.path == str(extra) and "recording without label" in str(e)
    assert "207_1_Depression.csv" in str(e)
    extra.unlink()
    orphan = write_label(cdir / "labels" / "test" / "401_2_Depression.csv", 5)
    e = _err(discover, "avec2013", tmp_path)
    assert e.path == str(orphan) and "label without recording" in str(e)


def test_missing_split_folder(tmp_path):
    make_avec2013(tmp_path, {"train": {"203_1": 3}})
    e = _err(discover, "avec2013", tmp_path, ("train", "dev"))
    assert "no folder for split 'dev'" in str(e) and "development" in str(e)


# ----------------------------------------------------------------------------- AVEC 2014

def test_avec2014_merges_tasks(tmp_path):
    make_avec2014(tmp_path, {"train": {"203_1": 12, "205_2": 7}, "dev": {"310_1": 40},
                             "test": {"401_1": 2}})
    src = discover("avec2014", tmp_path)
    got = [(s.split, s.recording_id, s.subject_id, s.label) for s in src]
    assert got == [("train", "203_1_Freeform", "203", 12), ("train", "203_1_Northwind", "203", 12),
                   ("train", "205_2_Freeform", "205", 7), ("train", "205_2_Northwind", "205", 7),
                   ("dev", "310_1_Freeform", "310", 40), ("dev", "310_1_Northwind", "310", 40),
                   ("test", "401_1_Freeform", "401", 2), ("test", "401_1_Northwind", "401", 2)]
    assert src[1].path.endswith("openface/train/Northwind/203_1_Northwind.csv")
    assert check_leakage(src) == {}           # one subject's two tasks share a split


def test_avec2014_per_task_labels(tmp_path):
    cdir = make_avec2014(tmp_path, {"train": {"203_1": 9}}, per_task_labels=True)
    src = discover("avec2014", tmp_path, ("train",))
    assert [(s.recording_id, s.label) for s in src] == [("203_1_Freeform", 9),
                                                        ("203_1_Northwind", 9)]
    assert src[0].label_path.endswith("203_1_Freeform_Depression.csv")
    write_label(cdir / "labels" / "train" / "203_1_Depression.csv", 10)
    assert "disagrees" in str(_err(discover, "avec2014", tmp_path, ("train",)))
    (cdir / "labels" / "train" / "203_1_Depression.csv").unlink()
    (cdir / "labels" / "train" / "203_1_Northwind_Depression.csv").unlink()
    e = _err(discover, "avec2014", tmp_path, ("train",))
    assert "recording without label" in str(e) and e.path.endswith("203_1_Northwind.csv")


# ----------------------------------------------------------------------------- DAIC-WOZ

DAIC = {"train": {"303": 0, "304": 6}, "dev": {"302": 12}, "test": {"300": 24}}


def test_daic_splits(tmp_path):
    make_daic(tmp_path, DAIC, n_frames=20)
    src = discover("daic", tmp_path)
    got = [(s.split, s.recording_id, s.subject_id, s.label) for s in src]
    assert got == [("train", "303", "303", 0), ("train", "304", "304", 6),
                   ("dev", "302", "302", 12), ("test", "300", "300", 24)]
    assert src[0].path.endswith("daic/303_P/303_CLNF_features.txt")
    assert src[3].label_path.endswith("full_test_split.csv")


def test_daic_unlabelled_test_split_only_fails_when_asked(tmp_path):
    make_daic(tmp_path, DAIC, n_frames=20, full_test=False)
    assert len(discover("daic", tmp_path, ("train", "dev"))) == 3
    e = _err(discover, "daic", tmp_path, ("test",))
    assert e.path.endswith("test_split_Depression_AVEC2017.csv")
    assert "has no PHQ-8 scores" in str(e) and "full_test_split.csv" in str(e)


def test_daic_bad_score_and_missing_folder(tmp_path):
    cdir = make_daic(tmp_path, DAIC, n_frames=20)
    split = cdir / "dev_split_Depression_AVEC2017.csv"
    split.write_text("Participant_ID,PHQ8_Binary,PHQ8_Score,Gender\n302,1,25,1\n")
    e = _err(discover, "daic", tmp_path, ("dev",))
    assert e.path == str(split) and e.row == 2 and e.column == "PHQ8_Score"
    assert "outside the PHQ-8 range 0..24" in str(e)
    split.write_text("Participant_ID,PHQ8_Binary,PHQ8_Score,Gender\n302,1,12,1\n309,0,3,0\n")
    e = _err(discover, "daic", tmp_path, ("dev",))
    assert "label without recording: participant 309" in str(e)


def test_daic_folder_in_no_split(tmp_path):
    cdir = make_daic(tmp_path, DAIC, n_frames=20)
    write_daic_recording(cdir, 499, 20)
    e = _err(discover, "daic", tmp_path, ("train",))
    assert "recording without label: participant 499" in str(e)


# ----------------------------------------------------------------------------- loading

def test_leakage_warns_or_raises(tmp_path):
    recs = {"train": {"203_1": 12, "205_1": 30}, "dev": {"203_2": 14}, "test": {"400_1": 5}}
    make_avec2013(tmp_path, recs, n_frames=100)
    assert check_leakage(discover("avec2013", tmp_path)) == {"203": ["train", "dev"]}
    warnings = []
    data = load_corpus("avec2013", tmp_path, warn=warnings.append)
    assert len(warnings) == 1 and "203 (train, dev)" in warnings[0]
    assert "1 subject(s) appear in more than one split" in warnings[0]
    assert sorted(data) == ["dev", "test", "train"]
    r = data["train"][1]
    assert (r.recording_id, r.subject_id, r.split, r.label) == ("205_1", "205", "train", 30.0)
    assert r.R_X.shape == r.R_AU.shape == (1, 18, 68) and r.R_X.dtype == np.float32
    e = _err(load_corpus, "avec2013", tmp_path, strict=True, warn=warnings.append)
    assert "203 (train, dev)" in str(e) and "strict" in str(e)


def test_load_corpus_skips_short_recordings_with_warning(tmp_path):
    cdir = make_avec2013(tmp_path, {"train": {"203_1": 12, "205_1": 30}}, n_frames=100)
    write_openface_csv(cdir / "openface" / "train" / "205_1.csv", 40)
    warnings = []
    data = load_corpus("avec2013", tmp_path, ("train",), warn=warnings.append,
                       cache_dir=tmp_path / "cache")
    assert [r.recording_id for r in data["train"]] == ["203_1"]
    assert "left out 1 recording(s)" in warnings[0] and "train/205_1" in warnings[0]
    e = _err(load_corpus, "avec2013", tmp_path, ("train",), skip_short=False)
    assert "only 8 usable frames at 6 fps, a segment needs 18" in str(e)


def test_load_corpus_threads_give_the_same_result_and_the_first_error(tmp_path):
    recs = {"train": {f"{200 + i}_1": i for i in range(8)}, "dev": {"310_1": 0}}
    cdir = make_avec2013(tmp_path, recs, n_frames=150)
    one = load_corpus("avec2013", tmp_path, ("train", "dev"), workers=1)
    four = load_corpus("avec2013", tmp_path, ("train", "dev"), workers=4)
    for split in ("train", "dev"):
        assert [r.recording_id for r in four[split]] == [r.recording_id for r in one[split]]
        for a, b in zip(one[split], four[split]):
            for s in ("R_X", "R_Y", "R_AU"):
                np.testing.assert_array_equal(getattr(a, s), getattr(b, s))
    # two broken files: the one discovered first is reported, whatever the threads do
    for rid in ("203_1", "206_1"):
        (cdir / "openface" / "train" / f"{rid}.csv").write_text("frame, success\n1, x\n")
    for workers in (1, 4):
        e = _err(load_corpus, "avec2013", tmp_path, ("train",), workers=workers)
        assert "203_1.csv" in str(e), workers
    with pytest.raises(ValueError, match="workers"):
        load_corpus("avec2013", tmp_path, ("train",), workers=0)


def test_load_daic_uses_640_divisor_and_20_aus(tmp_path):
    make_daic(tmp_path, {"train": {"303": 4}, "dev": {"302": 12}, "test": {"300": 20}},
              n_frames=100)
    data = load_corpus("daic", tmp_path, ("train",), warn=lambda m: None)
    r = data["train"][0]
    assert r.R_AU.shape == (1, 18, 68) and r.label == 4.0
    assert 150 / 640 - 1e-6 <= r.R_X.min() and r.R_X.max() <= 500 / 640 + 1e-6


def test_cli_train_strict_leakage_is_one_line_exit_2(tmp_path, capsys):
    from depressionmlp.cli import main
    recs = {"train": {"203_1": 12, "205_1": 30}, "dev": {"203_2": 14}, "test": {"400_1": 5}}
    make_avec2013(tmp_path, recs, n_frames=100)
    cfg = tmp_path / "c.toml"
    cfg.write_text('[data]\ncorpus = "avec2013"\n[train]\nepochs = 1\nverbose = 0\n')
    out = tmp_path / "runs"
    code = main(["train", "--config", str(cfg), "--data-root", str(tmp_path),
                 "--out", str(out), "--strict"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "203 (train, dev)" in err[0] and "strict" in err[0]
    assert not out.exists()                     # nothing written half-way
