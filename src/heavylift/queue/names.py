"""Queue names and priorities: the product's vocabulary, shared by producers and workers."""

from enum import IntEnum, StrEnum


class QueueName(StrEnum):
    DOCUMENTS = "documents"
    DATASETS = "datasets"
    DIAGNOSTICS = "diagnostics"  # noop / sleep / cpu jobs for health checks, tests, benchmarks


class Priority(IntEnum):
    """Lower runs first (BullMQ semantics); the seed's three classes of work."""

    AI = 1
    REGULAR = 2
    REPROCESSING = 3
