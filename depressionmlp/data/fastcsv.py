"""A vectorised reader for the common case of a ", "-separated all-number table.

:func:`read_plain_columns` handles only well-formed files: ASCII, no quotes, no
``\\r``, every line with the header's field count, no blank line, and every wanted
cell a plain decimal ``[spaces][-]digits[.digits]`` with at most 14 digits. For
anything else it returns ``None`` and the caller falls back to the careful pandas
path, which finds and names the problem (so error messages do not depend on this
module). For the files it accepts it returns exactly what pandas' C parser returns:
the digits are summed as an exact integer and divided once by a power of ten, a
correctly rounded result, as pandas' ``precise_xstrtod`` does for such numbers. (A
NUL byte needs no scan of its own: in a wanted cell it fails the cell check, in a
column that is not read it changes nothing pandas reads.)

On OpenFace's 714-column files this is 2.3-3.1x the speed of the pandas path it
sits in front of (``make bench``: parse_mb_per_s against parse_mb_per_s_pandas):
the newlines are located with memchr, then, block by block of lines, the commas
(one vectorised scan); each wanted cell is read as one unaligned 8-byte word, and
the words are checked and converted with a few dozen integer array operations.
Working in blocks of about 1 MB keeps every temporary small: whole-file
temporaries cost about as much in page faults as in arithmetic. The blocks are
independent, so several threads parse them at once (numpy releases the GIL in the
array work; 1.2x with two threads on a 2-vCPU machine).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

_MAX_DIGITS = 14                     # digit sum stays below 2**53: exact in float64
_SPACE, _MINUS, _DOT, _COMMA, _NL = 32, 45, 46, 44, 10
_POW10 = 10.0 ** np.arange(_MAX_DIGITS + 1)
_CHUNK = 1 << 14                     # cells per _parse_words call
_BLOCK = 1 << 15                     # cells per block of lines in read_plain_columns


def read_plain_columns(path, n_cols: int, pos, block_cells: int = _BLOCK,
                       threads: int | None = None) -> np.ndarray | None:
    """Columns ``pos`` (0-based, increasing) of a file with ``n_cols`` fields per line.

    Returns (len(pos), rows) float64, one contiguous row per column, or None when
    the file is not of the plain kind described in the module docstring (the
    caller then reads it carefully). ``block_cells``: wanted cells per block of
    lines (at least one line per block); ``threads``: blocks parsed at once (None:
    the usable cores, at most 4; numpy releases the GIL in the array work). The
    result depends on neither.
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        buf = bytearray(size + 9)                # + a newline and 8 bytes for word reads
        size = f.readinto(memoryview(buf)[:size])
    if not buf.isascii():                        # the padding is NUL bytes: ASCII
        return None
    # pandas reads a lone \r as a line end and a quote as the start of a field that may
    # hold commas and newlines: where either appears, even in a column not read, pandas
    # can split the lines differently (or fail), so such files take its path
    if buf.find(b'"', 0, size) >= 0 or buf.find(b"\r", 0, size) >= 0:
        return None
    hdr = buf.find(b"\n", 0, size) + 1
    if hdr <= 0 or hdr >= size or n_cols < 2:
        return None
    if buf[size - 1] != _NL:
        buf[size] = _NL
        size += 1
    full = np.frombuffer(buf, np.uint8)
    body = full[hdr:size]
    nl, i = [], buf.find(b"\n", hdr, size)
    while i >= 0:                                 # memchr per line: cheaper than a scan
        nl.append(i - hdr)
        i = buf.find(b"\n", i + 1, size)
    nl = np.array(nl, np.int64)
    rows = nl.size
    pos = np.asarray(pos, np.int64)
    before = np.maximum(pos - 1, 0)                  # the commas around each wanted cell
    after = np.minimum(pos, n_cols - 2)
    out = np.empty((pos.size, rows))
    data = full[hdr:]
    step = max(1, int(block_cells) // pos.size)

    def parse_block(r0: int) -> bool:
        """Lines r0 .. r0 + step into ``out``; False if they are not plain."""
        # blocks of lines: the temporaries stay small (fresh whole-file arrays cost
        # page faults), and blocks are independent, so threads can share them out
        r1 = min(rows, r0 + step)
        a = int(nl[r0 - 1]) + 1 if r0 else 0         # the block's first byte
        line_end = nl[r0:r1] - a                      # offsets within the block
        b = a + int(line_end[-1]) + 1
        commas = np.flatnonzero(body[a:b] == _COMMA)
        if commas.size != (r1 - r0) * (n_cols - 1):
            return False
        sep = commas.reshape(r1 - r0, n_cols - 1)
        # exactly n_cols - 1 commas on each line: the last before its newline, the
        # first after the previous newline (together with the block's count above)
        if (sep[:, -1] > line_end).any() or (sep[1:, 0] < line_end[:-1]).any():
            return False
        first = sep[:, before]                        # (lines, cells) line by line
        first += 1
        last = sep[:, after]
        if pos[0] == 0:
            first[:, 0] = np.r_[0, line_end[:-1] + 1]
        if pos[-1] == n_cols - 1:
            last[:, -1] = line_end
        vals = parse_cells(data[a:], first.ravel(), last.ravel(), size - hdr - a)
        if vals is None:
            return False
        out[:, r0:r1] = vals.reshape(r1 - r0, pos.size).T      # one row per column
        return True

    starts = range(0, rows, step)
    threads = min(len(starts), usable_cores(4) if threads is None else int(threads))
    if threads <= 1:
        ok = all(parse_block(r0) for r0 in starts)
    else:
        with ThreadPoolExecutor(threads) as pool:
            ok = all(list(pool.map(parse_block, starts)))
    return out if ok else None


def usable_cores(limit: int) -> int:
    """The cores this process may run on (its CPU affinity), at most ``limit``."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:                        # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(int(limit), n))


def parse_cells(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                n: int | None = None) -> np.ndarray | None:
    """float64 of the cells ``buf[starts[i]:ends[i]]``; None unless all are plain decimals.

    One leading space is allowed; what follows must be ``[-]digits[.digits]`` of at
    most 14 characters. Cells of up to 8 characters, the space included (nearly all),
    are read as one 8-byte word each, longer ones in groups of equal length. ``n``: the
    valid length of ``buf`` when at least 8 more bytes follow it (saves a copy).
    """
    if starts.size == 0:
        return None
    if n is None or buf.size < n + 8:
        n = buf.size
        buf = np.concatenate([buf, np.zeros(8, np.uint8)])
    width = ends - starts
    if width.min() < 1 or width.max() > _MAX_DIGITS + 1:
        return None
    # every byte offset of buf as the start of an 8-byte word (one gather per cell)
    words = np.ndarray((n,), np.uint64, buffer=buf, strides=(1,))
    w = words[starts]
    lead = (w & _K["ff"]) == _K["space"]
    np.right_shift(w, _K["8"], out=w, where=lead)
    lens = width - lead
    out = np.empty(lens.size)
    long_ = np.flatnonzero(width > 8)             # not all inside the word read
    short = slice(None)
    if long_.size:
        short = np.flatnonzero(width <= 8)
        first = starts + lead
        for k in np.unique(lens[long_]):
            idx = long_[lens[long_] == k]
            val = _parse_fixed(buf[first[idx] + np.arange(k)[:, None]])
            if val is None:
                return None
            out[idx] = val
    w, lens = w[short], lens[short]
    val = np.empty(w.size)
    for i in range(0, w.size, _CHUNK):          # chunks: the temporaries stay in cache
        v = _parse_words(w[i:i + _CHUNK], lens[i:i + _CHUNK])
        if v is None:
            return None
        val[i:i + _CHUNK] = v
    out[short] = val
    return out


_ONES = 0x0101010101010101
_HIGH = 0x8080808080808080
_ZEROS = 0x3030303030303030
# _CELL_MASK[n]: the low n bytes; _ZERO_FILL[n]: '0' in the low n bytes
_CELL_MASK = np.array([(1 << (8 * n)) - 1 for n in range(9)], np.uint64)
_ZERO_FILL = np.array([_ZEROS & ((1 << (8 * n)) - 1) for n in range(9)], np.uint64)
_ALIGN_SHIFT = np.array([8 * (8 - n) for n in range(9)], np.uint64)   # n digits -> the top
#: the uint64 constants of _parse_words (numpy scalars made once, not per call)
_K = {k: np.uint64(v) for k, v in {
    "ff": 0xFF, "space": _SPACE, "minus": _MINUS, "minus_to_0": _MINUS ^ 0x30,
    "dots": 0x2E2E2E2E2E2E2E2E, "ones": _ONES, "high": _HIGH, "zeros": _ZEROS,
    "f0": 0xF0F0F0F0F0F0F0F0,
    "six": 0x0606060606060606, "m8": 0x00FF00FF00FF00FF, "m16": 0x0000FFFF0000FFFF,
    "m32": 0xFFFFFFFF, "1": 1, "7": 7, "8": 8, "10": 10, "16": 16, "32": 32, "100": 100,
    "10000": 10000}.items()}


def _parse_words(w: np.ndarray, lens: np.ndarray) -> np.ndarray | None:
    """float64 of cells of 1-8 characters, each read as a little-endian 8-byte word.

    The sign byte becomes '0', the dot is cut out, the digits are right-aligned
    into 8 with '0's in front, every byte is checked to be a digit, and the 8 digits
    become an integer with three multiply-shift steps (the SWAR method of
    simdjson's ``parse_eight_digits_unrolled``). Operations write into arrays whose
    value is no longer needed (``out=``, ``&=``): a fresh temporary per operation
    cost about 5 % of the whole reader.
    """
    k = _K
    c = _CELL_MASK[lens]
    c &= w
    t = c & k["ff"]
    neg = t == k["minus"]                                 # '-'
    np.bitwise_xor(c, k["minus_to_0"], out=c, where=neg)  # '-' -> '0'
    x = c ^ k["dots"]                                     # '.' bytes become 0
    z = x - k["ones"]
    np.invert(x, out=x)
    z &= x
    z &= k["high"]
    low = np.invert(z, out=x)
    low += k["1"]
    low &= z                                              # the first '.', exactly
    has_dot = low != 0
    below = np.right_shift(low, k["7"], out=t)
    below -= k["1"]                                       # the bytes before it (no dot: all)
    p = _bytes_below(below, low)                          # the dot's byte
    digits = c & below
    np.right_shift(c, k["8"], out=c)
    c &= np.invert(below, out=z)
    digits |= c                                           # the dot cut out
    nd = lens - has_dot                                   # digit characters (with the sign)
    frac = lens - 1 - p
    frac *= has_dot
    if ((nd - neg) < 1).any() or (has_dot & ((p < 1 + neg) | (frac < 1))).any():
        return None                                        # no digit, or none by the dot
    aligned = np.left_shift(digits, _ALIGN_SHIFT[nd], out=digits)
    aligned |= _ZERO_FILL[8 - nd]
    v = aligned + k["six"]
    v &= k["f0"]
    t = np.bitwise_and(aligned, k["f0"], out=t)
    ok = (t == k["zeros"])
    ok &= v == k["zeros"]
    if not ok.all():
        return None
    v = np.subtract(aligned, k["zeros"], out=v)
    t = np.multiply(v, k["10"], out=t)
    v >>= k["8"]
    v += t
    v &= k["m8"]
    t = np.multiply(v, k["100"], out=t)
    v >>= k["16"]
    v += t
    v &= k["m16"]
    t = np.multiply(v, k["10000"], out=t)
    v >>= k["32"]
    v += t
    v &= k["m32"]
    out = v.astype(np.float64)
    out /= _POW10[frac]                                    # one correctly rounded division
    np.negative(out, out=out, where=neg)
    return out


def _bytes_below(below: np.ndarray, low: np.ndarray) -> np.ndarray:
    """The byte index p of a word's first dot (``below``: its 8 p low bits set)."""
    if hasattr(np, "bitwise_count"):                       # numpy >= 2.0
        return (np.bitwise_count(below) >> 3).astype(np.int64)
    # bit 8 p + 7 of `low` is set: frexp gives 8 p + 8 (0 without a dot)
    return (np.frexp(low.astype(np.float64))[1] - 8) >> 3


def _parse_fixed(m: np.ndarray) -> np.ndarray | None:
    """float64 of cells of one length n: ``m`` is (n, cells) bytes; None if one is not plain."""
    n, k = m.shape
    dv = m - np.uint8(48)
    isd = dv < 10
    minus = m[0] == _MINUS
    if not isd[-1].all() or not (isd[0] | minus).all():     # a digit last, digit/sign first
        return None
    frac = np.zeros(k, np.uint8)                           # digits after the dot
    if n > 2:
        dot = m[1:-1] == _DOT
        if not (isd[1:-1] | dot).all() or (dot[0] & minus).any():
            return None
        ndot = np.zeros(k, np.uint8)
        for j in range(n - 2):
            ndot += dot[j]
            frac += dot[j] * np.uint8(n - 2 - j)
        if (ndot > 1).any():
            return None
    dv[0][minus] = 0
    digits = dv.astype(np.float64)
    mant = None
    for f in np.flatnonzero(np.bincount(frac, minlength=1)):
        # weight of each position: 10**(digits right of it); 0 on the dot
        e = np.arange(n - 1, -1, -1) - (np.arange(n) < n - 1 - f) * (f > 0)
        w = np.where(np.arange(n) == n - 1 - f, 0.0, 10.0 ** e) if f > 0 else 10.0 ** e
        mf = w @ digits                                    # exact: integers below 2**53
        mant = mf if mant is None else np.where(frac == f, mf, mant)
    out = mant / _POW10[frac]                               # one correctly rounded division
    np.negative(out, out=out, where=minus)
    return out
