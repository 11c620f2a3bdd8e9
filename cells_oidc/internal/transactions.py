"""Writes that cannot poison a transaction around them, and cost nothing without one.

On PostgreSQL a failed statement aborts the whole transaction around it, and every later statement
fails. A write whose failure the caller handles (a duplicate key it answers with an UPDATE, a cache
table that is missing, an audit row that could not be stored) therefore runs in a savepoint of its
own when a transaction is open: the failure rolls back the savepoint only. Without one (autocommit:
the usual case, since the receivers run after the commit) a single statement is atomic by itself,
and an atomic block would only add a BEGIN and a COMMIT, two round trips (docs/performance.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from django.db import transaction

__all__ = ["isolated_write"]


@contextlib.contextmanager
def isolated_write(using: str) -> Iterator[None]:
    """A savepoint around the block when a transaction is open on ``using``; nothing otherwise.

    For a single statement, or writes that may land one without the other: writes that must land
    together need ``transaction.atomic`` whatever the mode.
    """
    if transaction.get_connection(using).in_atomic_block:
        with transaction.atomic(using=using):
            yield
    else:
        yield
