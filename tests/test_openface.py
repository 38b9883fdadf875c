"""Readers for OpenFace 2.x CSV and DAIC-WOZ CLNF files, bad input, and inspect."""

import numpy as np
import pytest

from depressionmlp.data.inspect import inspect_recording
from depressionmlp.data.openface import read_daic_clnf, read_openface_csv, read_recording
from depressionmlp.data.schema import AU_COLUMNS, OPENFACE_COLUMNS
from depressionmlp.errors import DataError

try:
    from tests.data_fixtures import (DAIC_AU_COLUMNS, openface_matrix, write_daic_recording,
                                     write_openface_csv)
except ImportError:  # pragma: no cover - depends on how pytest sets sys.path
    from data_fixtures import (DAIC_AU_COLUMNS, openface_matrix, write_daic_recording,
                               write_openface_csv)


def _grid(t, n, base):
    """Distinct values that survive %.6g: base + row + col / 100."""
    return base + np.arange(t)[:, None] + np.arange(n)[None, :] / 100


def _lines(path):
    return path.read_text().splitlines()


# ----------------------------------------------------------------------------- OpenFace

def test_reads_2d_landmarks_aus_success_confidence(tmp_path):
    t = 40
    x, y, au = _grid(t, 68, 100), _grid(t, 68, 300), _grid(t, 35, 0) / 10
    succ = np.ones(t)
    succ[3] = 0
    conf = np.linspace(0.5, 0.99, t).round(2)
    p = write_openface_csv(tmp_path / "203_1.csv", t, x=x, y=y, au=au, success=succ,
                           confidence=conf)
    assert _lines(p)[0].startswith("frame, face_id, timestamp, confidence, success, gaze_0_x")
    f = read_openface_csv(p)
    assert f.n_frames == t and f.x.shape == (t, 68) and f.au.shape == (t, 35)
    np.testing.assert_allclose(f.x, x, rtol=1e-6)     # x_i, not X_i (1000+) nor eye_lmk (2000+)
    np.testing.assert_allclose(f.y, y, rtol=1e-6)
    np.testing.assert_allclose(f.au, au, rtol=1e-5)
    assert f.au_names == AU_COLUMNS and len(f.au_names) == 35
    assert f.success.dtype == bool and f.success.sum() == t - 1 and not f.success[3]
    np.testing.assert_allclose(f.confidence, conf, rtol=1e-6)
    np.testing.assert_array_equal(f.frame, np.arange(1, t + 1))
    np.testing.assert_allclose(f.timestamp[:3], [0, 1 / 30, 2 / 30], rtol=1e-5)


def test_au_columns_r_then_c_in_file_order(tmp_path):
    names = (["frame", "timestamp", "confidence", "success"] + [f"x_{i}" for i in range(68)]
             + [f"y_{i}" for i in range(68)] + ["AU12_c", "AU01_r", "AU45_c", "AU12_r"])
    row = [1, 0, 0.9, 1] + [10.0] * 136 + [1, 2.5, 0, 3.5]
    p = tmp_path / "r.csv"
    p.write_text(", ".join(names) + "\n" + ", ".join(map(str, row)) + "\n")
    f = read_openface_csv(p)
    assert f.au_names == ["AU01_r", "AU12_r", "AU12_c", "AU45_c"]
    np.testing.assert_allclose(f.au[0], [2.5, 3.5, 1, 0])


# ----------------------------------------------------------------------------- DAIC-WOZ

def test_daic_join_on_frame(tmp_path):
    t = 30
    x, y, au = _grid(t, 68, 200), _grid(t, 68, 50), _grid(t, 20, 0) / 10
    succ = np.ones(t)
    succ[5] = 0
    feat = write_daic_recording(tmp_path, 303, t, x=x, y=y, au=au, success=succ,
                                aus_frames=np.arange(3, 28))      # frames 3..27
    assert _lines(feat)[0].startswith("frame, timestamp, confidence, success, x0, x1")
    f = read_daic_clnf(feat)
    assert f.n_frames == 25 and f.au.shape == (25, 20) and f.au_names == DAIC_AU_COLUMNS
    np.testing.assert_array_equal(f.frame, np.arange(3, 28))
    np.testing.assert_allclose(f.x, x[2:27], rtol=1e-6)
    np.testing.assert_allclose(f.au, au[2:27], rtol=1e-5)
    assert f.success.sum() == 24 and not f.success[5 - 2]
    # dispatch on the file name, from either file of the pair
    g = read_recording(feat)
    h = read_recording(feat.with_name("303_CLNF_AUs.txt"))
    np.testing.assert_array_equal(g.x, f.x)
    np.testing.assert_array_equal(h.au, f.au)


def test_daic_aus_file_missing(tmp_path):
    feat = write_daic_recording(tmp_path, 310, 20, write_aus=False)
    with pytest.raises(DataError) as e:
        read_recording(feat)
    assert "310_CLNF_AUs.txt" in str(e.value) and "AUs file missing" in str(e.value)


def test_read_recording_openface_by_default(tmp_path):
    p = write_openface_csv(tmp_path / "x_Freeform.csv", 12)
    assert read_recording(p).au.shape == (12, 35)


# ----------------------------------------------------------------------------- bad input

def _err(path):
    with pytest.raises(DataError) as e:
        read_recording(path)
    return e.value


def test_missing_file(tmp_path):
    e = _err(tmp_path / "nope.csv")
    assert "nope.csv" in str(e) and "not found" in str(e)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.csv"
    p.write_text("")
    e = _err(p)
    assert str(e) == f"{p}: file is empty"


def test_header_only(tmp_path):
    p = tmp_path / "h.csv"
    p.write_text(", ".join(OPENFACE_COLUMNS) + "\n")
    e = _err(p)
    assert str(p) in str(e) and "header only" in str(e)


def test_missing_columns_named(tmp_path):
    keep = [c for c in OPENFACE_COLUMNS if not c.startswith("x_")]
    p = tmp_path / "m.csv"
    p.write_text(", ".join(keep) + "\n" + ", ".join(["1"] * len(keep)) + "\n")
    e = _err(p)
    assert "missing required column(s) x_0, x_1, x_2, x_3, x_4 and 63 more" in str(e)
    assert str(p) in str(e)


def test_no_au_columns(tmp_path):
    keep = [c for c in OPENFACE_COLUMNS if not c.startswith("AU")]
    p = tmp_path / "noau.csv"
    p.write_text(", ".join(keep) + "\n" + ", ".join(["1"] * len(keep)) + "\n")
    assert "no AU columns" in str(_err(p))


def _rewrite_cell(path, line_no, column, value):
    lines = _lines(path)
    cells = lines[line_no - 1].split(", ")
    cells[OPENFACE_COLUMNS.index(column)] = value
    lines[line_no - 1] = ", ".join(cells)
    path.write_text("\n".join(lines) + "\n")


def test_non_numeric_cell_row_and_column(tmp_path):
    p = write_openface_csv(tmp_path / "bad.csv", 10)
    _rewrite_cell(p, 5, "y_7", "abc")
    e = _err(p)
    assert e.row == 5 and e.column == "y_7"
    assert str(e) == f"{p} (row 5, column 'y_7'): not a number: 'abc'"


def test_non_numeric_cell_on_failed_frame_is_dropped_not_fatal(tmp_path):
    succ = np.ones(10)
    succ[3] = 0
    p = write_openface_csv(tmp_path / "ind.csv", 10, success=succ)
    _rewrite_cell(p, 5, "x_3", "-1.#IND")                # data row 4 = line 5
    f = read_recording(p)
    assert np.isnan(f.x[3, 3]) and not f.success[3] and np.isfinite(f.x[4]).all()


def test_empty_cell(tmp_path):
    p = write_openface_csv(tmp_path / "gap.csv", 10)
    _rewrite_cell(p, 4, "AU12_r", "")
    e = _err(p)
    assert e.row == 4 and e.column == "AU12_r" and "empty or missing" in str(e)


def test_no_successful_frames(tmp_path):
    p = write_openface_csv(tmp_path / "fail.csv", 10, success=np.zeros(10))
    e = _err(p)
    assert "OpenFace tracking failed on every frame" in str(e) and str(p) in str(e)


def test_truncated_last_line(tmp_path):
    p = write_openface_csv(tmp_path / "trunc.csv", 10)
    text = p.read_text()
    p.write_text(text[: len(text) - 1500])             # cut the last row mid-way, no newline
    e = _err(p)
    assert e.row == 11 and "truncated" in str(e) and "of 714 fields" in str(e)


def test_ragged_line_in_the_middle(tmp_path):
    p = write_openface_csv(tmp_path / "rag.csv", 10)
    lines = _lines(p)
    lines[6] += ", 7"                                   # line 7 has 715 fields
    p.write_text("\n".join(lines) + "\n")
    e = _err(p)
    assert e.row == 7 and "715 fields" in str(e) and "714" in str(e)


def test_daic_non_numeric_names_file(tmp_path):
    feat = write_daic_recording(tmp_path, 320, 10)
    aus = feat.with_name("320_CLNF_AUs.txt")
    lines = _lines(aus)
    cells = lines[2].split(", ")
    cells[4] = "oops"
    lines[2] = ", ".join(cells)
    aus.write_text("\n".join(lines) + "\n")
    e = _err(feat)
    assert e.path == str(aus) and e.row == 3 and e.column == "AU01_r"


# ----------------------------------------------------------------------------- inspect

def test_inspect_openface(tmp_path):
    t = 300
    x = np.full((t, 68), 200.0)
    x[:, 0] = 50.5
    x[:, 1] = 410.25
    y = np.full((t, 68), 100.0)
    y[:, 5] = 333.0
    succ = np.ones(t)
    succ[[7, 125]] = 0
    x[[7, 125]] = 9999.0                      # failed frames must not enter the ranges
    conf = np.full(t, 0.95)
    conf[250] = 0.5
    p = write_openface_csv(tmp_path / "203_1.csv", t, x=x, y=y, success=succ, confidence=conf)
    info = inspect_recording(p)
    assert info["file"] == str(p)
    assert (info["frames"], info["frames_ok"], info["frames_dropped"]) == (300, 297, 3)
    assert info["aus"] == 35 and info["au_names"] == AU_COLUMNS
    assert info["fps_in"] == 30.0
    assert info["segments"] == 2                # hand-count in test_segments
    # "auto": phase 0 has 2 (< 40), so all five: phases 1, 3, 4 have 60 frames (5 each),
    # phase 2 loses row 7 (58 frames: 5)
    assert (info["default_phases"], info["default_segments"]) == (5, 22)
    assert info["x_px_range"] == [50.5, 410.25]
    assert info["y_px_range"] == [100.0, 333.0]
    assert "note" not in info


def test_inspect_daic_finds_aus_and_refuses_short(tmp_path):
    from depressionmlp.data.segments import ShortRecordingError
    feat = write_daic_recording(tmp_path, 300, 60)
    with pytest.raises(ShortRecordingError, match="only 12 usable frames at 6 fps, a "
                                                  "segment needs 18"):
        inspect_recording(feat)
    info = inspect_recording(write_daic_recording(tmp_path, 301, 120))
    assert info["aus"] == 20 and info["frames"] == 120 and info["segments"] >= 1


def test_fixture_matrix_has_schema_width():
    assert openface_matrix(3).shape == (3, 714)


def test_field_count_scan_across_block_boundaries(tmp_path):
    from depressionmlp.data.openface import check_field_counts
    p = write_openface_csv(tmp_path / "blocks.csv", 12)
    check_field_counts(p, 714, block=777)                 # valid: no error at any block size
    lines = _lines(p)
    lines[9] = lines[9].replace(", ", ", , ", 1)          # line 10 gets an extra field
    p.write_text("\n".join(lines) + "\n\n")
    for block in (500, 4096, 1 << 24):
        with pytest.raises(DataError) as e:
            check_field_counts(p, 714, block=block)
        assert e.value.row == 10 and "715 fields" in str(e.value)


def test_truncated_last_line_with_newline(tmp_path):
    p = write_openface_csv(tmp_path / "t2.csv", 6)
    lines = _lines(p)
    lines[-1] = lines[-1][:200]
    p.write_text("\n".join(lines) + "\n")
    e = _err(p)
    assert e.row == 7 and str(e).endswith(f"truncated last line: {lines[-1].count(',') + 1} "
                                          "of 714 fields")
