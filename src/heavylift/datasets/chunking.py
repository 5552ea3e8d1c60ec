"""Cut one stream of Arrow record batches into the sync's logical chunks.

Chunk k is the rows whose row index is in [k*size, (k+1)*size). A stream's batches are cut at
those boundaries only while each batch continues the index sequence exactly; the first batch
that does not (a reordered or repeated batch: BigQuery does not promise any order) ends the cut,
and the caller reads the remaining chunks another way. So a chunk is never guessed from arrival
order alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow as pa


def in_sequence(index: pa.Array, start: int) -> bool:
    """Whether `index` is exactly start, start+1, ..."""
    if index.null_count:
        return False
    values = index.to_numpy(zero_copy_only=False)
    return bool(np.array_equal(values, np.arange(start, start + len(values))))


def cut_chunks(
    batches: Iterable[pa.RecordBatch], index_column: str, start: int, size: int, end: int
) -> Iterator[pa.Table]:
    """Whole chunks from row `start` (a chunk boundary) up to row `end`, without the index
    column, for as long as `batches` deliver rows start, start+1, ... in order."""
    pending: list[pa.RecordBatch] = []
    buffered = 0
    position = start
    for batch in batches:
        if not batch.num_rows:
            continue
        if position + batch.num_rows > end or not in_sequence(
            batch.column(index_column), position
        ):
            return
        position += batch.num_rows
        batch = batch.drop_columns([index_column])
        while batch.num_rows:
            take = min(size - buffered, batch.num_rows)
            pending.append(batch.slice(0, take))  # zero-copy: a chunk shares the batch buffers
            buffered += take
            batch = batch.slice(take)
            if buffered == size:
                yield pa.Table.from_batches(pending)
                pending, buffered = [], 0
    if pending and position == end:
        yield pa.Table.from_batches(pending)
