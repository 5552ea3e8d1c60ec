"""Cut a stream of Arrow record batches (of any sizes) into the sync's logical chunks: consecutive
tables of exactly `size` rows, the last one shorter. The chunks share the batches' buffers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pyarrow as pa


def rechunk(batches: Iterable[pa.RecordBatch], size: int) -> Iterator[pa.Table]:
    pending: list[pa.RecordBatch] = []
    buffered = 0
    for batch in batches:
        while batch.num_rows:
            take = min(size - buffered, batch.num_rows)
            pending.append(batch.slice(0, take))
            buffered += take
            batch = batch.slice(take)
            if buffered == size:
                yield pa.Table.from_batches(pending)
                pending, buffered = [], 0
    if buffered:
        yield pa.Table.from_batches(pending)
