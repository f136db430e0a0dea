"""CRC-32 of every string in a column, vectorised, with values that never change.

Why CRC-32 and not `pl.Series.hash`: the holdout (the rows no model trains on) is chosen
by a hash of the id, and a row must stay in or out of it for its whole life. polars
documents its hash as stable only within one polars version, so an upgrade could silently
move rows between training and holdout. CRC-32 (ISO-HDLC, the one `zlib.crc32` computes)
is a published standard, and it is what the holdout always used, so existing holdout
assignments stay exactly as they were.

Why written here: neither polars nor pyarrow.compute offers a CRC of a string column, and
`zlib.crc32` per value is a Python loop. This is the table-driven CRC, run one byte
position at a time over all strings of one length at once, straight on the Arrow UTF-8
buffers: one numpy step per byte position and distinct id length.
Tests pin it to `zlib.crc32` and to fixed known values.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa


def _table() -> np.ndarray:
    """The 256-entry table of the reflected polynomial 0xEDB88320 (zlib's)."""
    c: np.ndarray = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        c = np.where(c & 1, np.uint32(0xEDB88320) ^ (c >> np.uint32(1)), c >> np.uint32(1))
    return c.astype(np.uint32)


_TABLE = _table()


def crc32(values: pl.Series) -> pl.Series:
    """`zlib.crc32(v.encode())` of every value as text (UInt32); a null stays null."""
    text = values.cast(pl.String)
    arr = text.to_arrow(compat_level=pl.CompatLevel.oldest())  # large_string: int64 offsets + one data buffer
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    n = len(arr)
    out = np.zeros(n, dtype=np.uint32)
    if n:
        _, offsets_buf, data_buf = arr.buffers()
        offsets = np.frombuffer(offsets_buf, dtype=np.int64)[arr.offset: arr.offset + n + 1]
        data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
        lengths = np.diff(offsets)
        for length in np.unique(lengths):  # ids are mostly of a few lengths: all ids of one length at once
            rows = np.flatnonzero(lengths == length)
            starts = offsets[rows]
            grid = None
            if len(rows) == n:  # one length (the usual case): the data buffer is already a rows x length matrix
                grid = data[offsets[0]: offsets[0] + n * int(length)].reshape(n, int(length)).T
            crc = np.full(len(rows), 0xFFFFFFFF, dtype=np.uint32)
            for pos in range(int(length)):
                byte = grid[pos] if grid is not None else data[starts + pos]
                crc = _TABLE[(crc ^ byte).astype(np.uint8)] ^ (crc >> np.uint32(8))
            out[rows] = crc ^ np.uint32(0xFFFFFFFF)
    hashed = pl.Series(values.name, out, dtype=pl.UInt32)
    return hashed if not text.null_count() else pl.select(
        pl.when(text.is_not_null()).then(hashed)).to_series().alias(values.name)
