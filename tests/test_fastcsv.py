"""The vectorised CSV reader: same numbers as pandas, and it declines what it cannot read."""

import numpy as np
import pytest

from depressionmlp.data.fastcsv import parse_cells, read_plain_columns
from depressionmlp.data.openface import read_header, read_numeric_table
from depressionmlp.errors import DataError


def _cells(strings):
    body = ",".join(strings).encode()
    starts, ends, at = [], [], 0
    for s in strings:
        starts.append(at)
        ends.append(at + len(s))
        at += len(s) + 1
    return np.frombuffer(body, np.uint8), np.array(starts), np.array(ends)


def test_numbers_match_python_float():
    rng = np.random.default_rng(0)
    vals = np.concatenate([rng.normal(0, 300, 400), rng.uniform(-1, 1, 300),
                           rng.integers(0, 10**7, 100), rng.normal(0, 1e5, 100)])
    strings = []
    for i, v in enumerate(vals):
        fmt = ["%.1f", "%.2f", "%.3f", "%.6f", "%d", "%.0f", "%.4f"][i % 7]
        strings.append((" " if i % 3 else "") + (fmt % v))
    strings += [" 0", "-0.000", " 12345678", "1234567.8", " -1234567.8901", "99999999999999",
                "0.0000000000001", "-123456789.12", "7", "-7"]
    body, s, e = _cells(strings)
    got = parse_cells(body, s, e)
    want = np.array([float(x) for x in strings])
    np.testing.assert_array_equal(got, want)          # bit-exact: correctly rounded


def test_dot_position_without_bitwise_count(monkeypatch):
    """numpy < 2 has no bitwise_count: the frexp route gives the same numbers and the
    same refusals."""
    strings = [" 0.5", "-12.25", "3", " 100", "-0.001", "1234.5", " 7.0625", "0.1"]
    body, s, e = _cells(strings)
    want = parse_cells(body, s, e)
    monkeypatch.delattr(np, "bitwise_count", raising=False)
    np.testing.assert_array_equal(parse_cells(body, s, e), want)
    np.testing.assert_array_equal(want, [float(x) for x in strings])
    for bad in ("5.", ".5", "1.2.3", "-.5"):
        assert parse_cells(*_cells([bad])) is None, bad


@pytest.mark.parametrize("bad", ["1.2.3", "-", ".5", "5.", "1-2", "1e5", "nan", "inf", " ",
                                 "+1", "--1", "1 2", "1 ", "  1", "-.5", "", "0x10",
                                 "1234567890123456", "1,5"])
def test_declines_anything_but_plain_decimals(bad):
    body, s, e = _cells(["1.5", bad, "2"])
    if bad == "1,5":                                  # a comma inside: a different split
        body, s, e = _cells(["1.5", "2"])
        body = np.frombuffer(b"1.5,1,5", np.uint8)
        s, e = np.array([0, 4]), np.array([3, 7])
    assert parse_cells(body, s, e) is None


def _write(path, header, rows, newline="\n"):
    path.write_bytes((newline.join([", ".join(header)] + [", ".join(r) for r in rows])
                      + newline).encode())
    return path


def test_table_same_as_pandas_and_columns_contiguous(tmp_path):
    rng = np.random.default_rng(1)
    header = [f"c{i}" for i in range(30)]
    rows = [[f"{v:.3f}" for v in rng.normal(0, 50, 30)] for _ in range(200)]
    p = _write(tmp_path / "t.csv", header, rows)
    pos = [0, 3, 4, 5, 17, 29]
    block = read_plain_columns(p, 30, pos)
    assert block.shape == (6, 200) and block.flags.c_contiguous
    names = read_header(p)
    want = read_numeric_table(p, names, [names[i] for i in pos], engine="pandas")
    for i, k in enumerate(pos):
        np.testing.assert_array_equal(block[i], want[names[k]])
    for cells in (1, 13, 599, 6 * 200):          # blocks of 1, 2, 99 and all 200 lines
        for threads in (1, 3):                   # blocks one after the other, or 3 at once
            np.testing.assert_array_equal(
                read_plain_columns(p, 30, pos, block_cells=cells, threads=threads), block)
    # no newline at the end is fine too
    p.write_bytes(p.read_bytes().rstrip(b"\n"))
    np.testing.assert_array_equal(read_plain_columns(p, 30, pos), block)
    np.testing.assert_array_equal(read_plain_columns(p, 30, pos, block_cells=13), block)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("cells", [3, 6, 9, 1000])     # blocks of 1, 2, 3 and all lines
@pytest.mark.parametrize("line", [0, 1, 2, 3])
def test_declines_a_comma_moved_between_lines_at_any_block_boundary(tmp_path, line, cells,
                                                                    threads):
    """One line with an extra field and the next with one too few: the file's (and a
    block's) comma count is right; declined wherever the blocks of lines split."""
    rows = [[str(r), str(r + 0.5), str(r + 1)] for r in range(6)]
    rows[line] = rows[line] + ["0"]
    rows[line + 1] = rows[line + 1][:2]
    p = _write(tmp_path / "t.csv", ["a", "b", "c"], rows)
    assert read_plain_columns(p, 3, [0, 1, 2], block_cells=cells, threads=threads) is None


@pytest.mark.parametrize("damage", ["ragged", "blank", "crlf", "quote", "bom", "text", "utf8",
                                    "header_only", "short_last"])
def test_declines_files_the_careful_path_must_see(tmp_path, damage):
    header = ["a", "b", "c"]
    rows = [["1", "2.5", "3"], ["4", "5.5", "6"], ["7", "8.5", "9"]]
    newline = "\r\n" if damage == "crlf" else "\n"
    if damage == "ragged":
        rows[1] = ["4", "5.5", "6", "0"]
    if damage == "short_last":
        rows[2] = ["7", "8.5"]
    if damage == "blank":
        rows.insert(1, [""])
    if damage == "quote":
        rows[1][1] = '"5.5"'
    if damage == "text":
        rows[1][2] = "x"
    if damage == "utf8":
        rows[1][2] = "é"
    if damage == "header_only":
        rows = []
    p = _write(tmp_path / "t.csv", header, rows, newline)
    if damage == "bom":
        p.write_bytes(b"\xef\xbb\xbf" + p.read_bytes())
    assert read_plain_columns(p, 3, [0, 1, 2]) is None


@pytest.mark.parametrize("damage", ["crlf", "lone_cr", "quote", "quoted_comma", "nul"])
def test_damage_outside_the_wanted_columns_reads_as_pandas_does(tmp_path, damage):
    """Bytes in a column that is not read: a NUL changes nothing, so the reader keeps
    the file; pandas reads a \\r as a line end and a quote as the start of a field
    that may hold commas, so those files go to its path, and both engines agree."""
    header = ["a", "skip", "b"]
    rows = [["1", "x", "2.5"], ["4", "y", "5.5"], ["7", "z", "8.5"]]
    newline = "\r\n" if damage == "crlf" else "\n"
    rows[1][1] = {"lone_cr": "y\ry", "quote": '"q', "quoted_comma": '"q,r"'}.get(damage, "y")
    p = _write(tmp_path / "t.csv", header, rows, newline)
    if damage == "nul":
        p.write_bytes(p.read_bytes().replace(b"y", b"\0"))
    fast = read_plain_columns(p, 3, [0])
    if damage == "nul":
        np.testing.assert_array_equal(fast, [[1.0, 4.0, 7.0]])
    else:
        assert fast is None

    def outcome(engine):
        try:
            t = read_numeric_table(p, read_header(p), ["a", "b"], engine=engine)
            return [t["a"].tolist(), t["b"].tolist()]
        except DataError as e:                       # the careful path's own verdict
            return str(e)
    assert outcome("auto") == outcome("pandas")


def test_random_damage_reads_as_pandas_does(tmp_path):
    """Small files with one or two stray bytes anywhere below the header (quotes,
    \\r, NUL, commas, newlines, signs, letters, non-ASCII): the default engine gives
    exactly the pandas path's values, or its error message."""
    rng = np.random.default_rng(0)
    stray = [b'"', b"\r", b"\0", b",", b"\n", b" ", b"-", b".", b"e", b"x",
             "\u00e9".encode(), b"1", b"\r\n", b'","', b"nan"]
    compared = 0
    for case in range(300):
        n_cols, n_rows = int(rng.integers(2, 7)), int(rng.integers(1, 8))
        header = ["frame", "success"] + [f"c{i}" for i in range(n_cols - 2)]
        rows = [[str(r + 1), "1"] + [(" " if rng.random() < 0.7 else "")
                                     + f"{rng.normal(0, 50):.{int(rng.integers(0, 4))}f}"
                                     for _ in range(n_cols - 2)] for r in range(n_rows)]
        text = _write(tmp_path / "t.csv", header, rows).read_bytes().replace(b", ", b",")
        head = text.index(b"\n") + 1
        for _ in range(int(rng.integers(1, 3))):
            at = int(rng.integers(head, len(text) + 1))
            text = text[:at] + stray[int(rng.integers(len(stray)))] + text[at:]
        p = tmp_path / f"c{case}.csv"
        p.write_bytes(text)
        try:
            names = read_header(p)               # the header line is never damaged
        except DataError:                        # but a NUL in a file's first 8 KB is
            continue                             # refused before any engine reads it
        k = int(rng.integers(1, n_cols + 1))
        wanted = [names[i] for i in sorted(rng.choice(n_cols, size=k, replace=False))]

        def outcome(engine):
            try:
                t = read_numeric_table(p, names, wanted, engine=engine)
                return {c: v.tobytes() for c, v in t.items()}    # bit for bit, NaN too
            except DataError as e:
                return str(e)
        assert outcome("auto") == outcome("pandas"), text
        compared += 1
    assert compared > 250


@pytest.mark.parametrize("cell,message", [("x", "not a number: 'x'"),
                                          ("", "empty or missing value")])
def test_errors_unchanged_through_auto(tmp_path, cell, message):
    header = ["frame", "success", "v"]
    rows = [["1", "1", "2.5"], ["2", "1", cell], ["3", "1", "1"]]
    p = _write(tmp_path / "t.csv", header, rows)
    names = read_header(p)
    errs = []
    for engine in ("auto", "pandas"):
        with pytest.raises(DataError) as ei:
            read_numeric_table(p, names, names, engine=engine)
        errs.append(str(ei.value))
    assert errs[0] == errs[1] and message in errs[0] and "row 3" in errs[0]
