"""Sketch entries (row, store, idx, n) to the JSON the rollup tables store (``observai.metrics.sketch``'s encoding,
``{"p":{"<idx>":n,...},"n":{...},"z":n}``): in C (``_sketch_text.c``) when it is built, else in Python
(``sketch_json``, the reference; tests/unit/test_sketch_text.py holds both to the same bytes).

The entries are sorted by (row, store, idx), each once (``rollup_pass.sum_entries`` leaves them so); store 1 is
'p', 2 'n', 3 'z' (idx 0). numpy is imported at the first call, never at cold start.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

_c: ModuleType | None
try:
    _c = importlib.import_module("observai.metrics._sketch_text")
except ImportError:  # not built: the Python path
    _c = None


def sketch_json(e_row: Any, e_store: Any, e_idx: Any, e_n: Any) -> tuple[list[int], list[str]]:
    """The encoded sketch of each row having entries, and the rows (ascending): the Python path."""
    import numpy as np

    if not len(e_row):
        return [], []
    row_start = np.flatnonzero(np.concatenate([[True], e_row[1:] != e_row[:-1]]))
    row_end = np.append(row_start[1:], len(e_row))
    # Within a row the stores come in order p (1), n (2), z (3): where each store's entries end.
    p_end = row_start + np.add.reduceat((e_store == 1).astype(np.int64), row_start)
    n_end = p_end + np.add.reduceat((e_store == 2).astype(np.int64), row_start)
    zeros = np.where(n_end < row_end, e_n[np.minimum(n_end, len(e_n) - 1)], 0)
    pieces = [f'"{i}":{n}' for i, n in zip(e_idx.tolist(), e_n.tolist(), strict=True)]
    join = ",".join
    texts = [
        f'{{"p":{{{join(pieces[a:b])}}},"n":{{{join(pieces[b:c])}}},"z":{z}}}'
        for a, b, c, z in zip(row_start.tolist(), p_end.tolist(), n_end.tolist(), zeros.tolist(), strict=True)
    ]
    return e_row[row_start].tolist(), texts


def _arrays(e_row: Any, e_store: Any, e_idx: Any, e_n: Any) -> tuple[Any, Any, Any, Any]:
    import numpy as np

    return (
        np.ascontiguousarray(e_row, dtype=np.int64), np.ascontiguousarray(e_store, dtype=np.int8),
        np.ascontiguousarray(e_idx, dtype=np.int64), np.ascontiguousarray(e_n, dtype=np.int64),
    )  # fmt: skip


def texts(e_row: Any, e_store: Any, e_idx: Any, e_n: Any) -> tuple[Any, bytes, Any]:
    """Each row having entries (int64, ascending), their JSON one after another (UTF-8: ASCII), and len(rows) + 1
    offsets (int64): row k's text is ``blob[offsets[k]:offsets[k + 1]]``."""
    import numpy as np

    if _c is not None:
        rows, blob, offsets = _c.texts(*_arrays(e_row, e_store, e_idx, e_n))
        return np.frombuffer(rows, dtype=np.int64), blob, np.frombuffer(offsets, dtype=np.int64)
    numbers, found = sketch_json(e_row, e_store, e_idx, e_n)
    encoded = [t.encode() for t in found]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(t) for t in encoded])
    return np.array(numbers, dtype=np.int64), b"".join(encoded), offsets


def lines(e_row: Any, e_store: Any, e_idx: Any, e_n: Any, first: int) -> bytes:
    """A text COPY line ``<row + first>\\t<JSON>\\tf\\n`` per row having entries (a table of (number, sketch,
    overflow false))."""
    if _c is not None:
        return bytes(_c.lines(*_arrays(e_row, e_store, e_idx, e_n), first))
    numbers, found = sketch_json(e_row, e_store, e_idx, e_n)
    return "".join(f"{n + first}\t{t}\tf\n" for n, t in zip(numbers, found, strict=True)).encode()


def padded(blob: bytes, offsets: Any, picks: Any, width: int, prefix: bytes) -> Any:
    """Texts ``picks`` of ``blob`` as a fixed-width bytes column (numpy ``S<width>``): ``prefix`` (one byte), the
    text, spaces (which jsonb's input skips) up to ``width``."""
    import numpy as np

    picks = np.ascontiguousarray(picks, dtype=np.int64)
    if _c is not None:
        return np.frombuffer(_c.padded(blob, offsets, picks, width, prefix), dtype=f"S{width}")
    items = [prefix + blob[offsets[k] : offsets[k + 1]] for k in picks.tolist()]
    if any(len(item) > width for item in items):
        raise ValueError(f"padded: a text is wider than {width}")
    column = np.array(items, dtype=f"S{width}")
    raw = column.view(np.uint8)
    raw[raw == 0] = 0x20  # a NUL is never part of the JSON text: all of them are numpy's padding
    return column
