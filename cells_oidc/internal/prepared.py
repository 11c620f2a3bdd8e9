"""The token endpoint's reads, compiled once per process (docs/performance.md, "Prepared reads").

Django builds and compiles a queryset into SQL every time it is evaluated. For the reads every
token request makes — the client with its policy, the refresh token with its user and access
token, the code with its user, the sign-in row locked — that cost 0.5–0.6 ms of CPU each, where
running the statement costs 0.15 ms: a fifth of a refresh. A :class:`PreparedRead` builds its
queryset once per thread, database and lock mode, keeps the SQL Django compiled for it and the
compiler that turns its rows into model instances, and then only runs that SQL with the value of
the request. What it returns is what ``QuerySet.first()`` returns: the same model instances, with
the ``select_related`` rows attached, Django's converters applied, ``pre_init``/``post_init``
sent, so nothing downstream can tell.

Why hand-written: Django has no prepared queryset. This is the few lines of its own
``ModelIterable`` (the compiler's ``select``/``klass_info``, ``results_iter``'s converters and the
related populators) run on a compilation and converters worked out once. The models come from
DOT's getters and the SQL from Django's compiler, so swapped models, table names and each
backend's syntax (``FOR UPDATE``, quoting) are Django's. A read whose compiled SQL does not carry
its value as one plain parameter is not prepared: it runs as the queryset it is (checked when it
is built).
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable
from typing import Any

from django.db import connections, router, transaction
from django.db.models import QuerySet
from django.db.models.query import get_related_populators

__all__ = ["PreparedRead"]

logger = logging.getLogger(__name__)

#: What the queryset is built with, to find the value's place among the compiled parameters.
_MARKER = "\x00cells-oidc-prepared\x00"
#: Django 6.1 hands the queryset's fetch mode to the related populators.
_POPULATORS_TAKE_FETCH_MODE = "fetch_mode" in inspect.signature(get_related_populators).parameters


class _Compiled:
    """A queryset compiled for one database: its SQL, where the value goes, how rows become objects."""

    def __init__(self, queryset: QuerySet[Any], db: str) -> None:
        compiler = queryset.query.get_compiler(using=db)
        sql, params = compiler.as_sql()  # also fills compiler.select and compiler.klass_info
        self.compiler = compiler
        self.sql = sql
        self.params = list(params)
        self.slots = [index for index, param in enumerate(self.params) if param == _MARKER]
        klass_info = compiler.klass_info
        self.model = klass_info["model"]
        fields = klass_info["select_fields"]
        self.start, self.end = fields[0], fields[-1] + 1
        self.names = [column[0].target.attname for column in compiler.select[self.start : self.end]]
        extra = (getattr(queryset, "_fetch_mode", None),) if _POPULATORS_TAKE_FETCH_MODE else ()
        self.populators = get_related_populators(klass_info, compiler.select, db, *extra)
        self.db = db
        # What the compiler's results_iter() works out for every evaluation, worked out once: the
        # converters of the selected columns (a fifth of a read's CPU) and whether any is composite.
        self.fields = [column[0] for column in compiler.select[0 : compiler.col_count]]
        self.converters = compiler.get_converters(self.fields)
        self.composite = compiler.has_composite_fields(self.fields)

    def first(self, value: str) -> Any:
        params = list(self.params)
        for index in self.slots:
            params[index] = value
        with connections[self.db].cursor() as cursor:
            cursor.execute(self.sql, params)
            rows = cursor.fetchmany(1)
        for row in self._converted(rows):
            instance = self.model.from_db(self.db, self.names, row[self.start : self.end])
            for populator in self.populators:
                populator.populate(row, instance)
            return instance
        return None

    def _converted(self, rows: list[Any]) -> Any:
        # The compiler's results_iter() on rows fetched already, with the converters kept.
        result: Any = iter(rows)
        if self.converters:
            result = self.compiler.apply_converters(result, self.converters)
        if self.composite:
            result = self.compiler.composite_fields_to_tuples(result, self.fields)
        return result


class PreparedRead:
    """``build(value).first()``, compiled once (see the module).

    ``build`` makes the queryset from the value the request brings (a string: a client id, a
    token's checksum, a code); it is called once per thread, database and lock mode, with a
    marker in place of the value. With ``lock=True`` the row is read ``FOR UPDATE`` until the
    transaction ends (outside one, a plain read: there is nothing to hold a lock for).
    """

    def __init__(self, build: Callable[[str], QuerySet[Any]]) -> None:
        self.build = build
        self._model: Any = None  # known once built (the models are ready by then)
        self._local = threading.local()  # per thread: a compiler holds its thread's connection

    def _queryset(self, value: str, lock: bool) -> QuerySet[Any]:
        queryset = self.build(value)
        if lock:
            queryset = queryset.select_for_update()
        if not queryset.ordered:
            queryset = queryset.order_by("pk")  # as QuerySet.first() does
        return queryset[:1]

    def first(self, value: str, *, lock: bool = False) -> Any:
        if self._model is None:
            self._model = self.build(value).model
        db = router.db_for_write(self._model) if lock else router.db_for_read(self._model)
        if lock and not transaction.get_connection(db).in_atomic_block:
            lock = False  # nothing to hold a lock for outside a transaction: a plain read
        if not isinstance(value, str):
            return self._queryset(value, lock).first()
        compiled: dict[tuple[str, bool], _Compiled | None] = self._local.__dict__.setdefault("compiled", {})
        if (db, lock) not in compiled:
            compiled[(db, lock)] = self._compile(db, lock)
        entry = compiled[(db, lock)]
        if entry is None:  # not preparable: the queryset as it is
            return self._queryset(value, lock).first()
        return entry.first(value)

    def _compile(self, db: str, lock: bool) -> _Compiled | None:
        try:
            compiled = _Compiled(self._queryset(_MARKER, lock), db)
        except Exception:  # noqa: BLE001 - Django's internals moved: the queryset still works
            logger.warning("A read could not be prepared; it runs as a queryset.", exc_info=True)
            return None
        # The value must be a parameter of its own wherever it is used (not wrapped, as a LIKE
        # pattern would wrap it), and used at least once.
        carrying = [param for param in compiled.params if isinstance(param, str) and _MARKER in param]
        if not compiled.slots or len(carrying) != len(compiled.slots):
            logger.warning("A read could not be prepared (its value is not a plain parameter).")
            return None
        return compiled
