"""The demo's password hasher: Argon2id with parameters for a login-heavy service.

Django's ``Argon2PasswordHasher`` defaults to RFC 9106's first recommendation (2 passes over
100 MiB in 8 lanes): about a second per login on a small shared server. OWASP's Password Storage
Cheat Sheet recommends Argon2id with at least 19 MiB, 2 passes and one lane for a service where
logins are frequent: a login then costs tens of milliseconds and the server's cores stay
available. Same algorithm name (``argon2``): Django reads hashes of any parameters and, when a
stored hash has other parameters than these, rewrites it at the next successful login.

**At most as many hashes at once as there are cores for them** (``PASSWORD_HASHING_CONCURRENCY``
per process; the demo sets it to the CPUs divided by gunicorn's ``WEB_CONCURRENCY``). Argon2 is
memory-hard and argon2-cffi releases the GIL: a process with more threads than cores would run
them all at once, each with its 19 MiB, and they thrash the caches (on this machine 8 hashes at
once on 2 cores check 70 passwords a second, 2 at once 96; docs/performance.md). A login beyond
the limit waits its turn for a few milliseconds instead; the memory a flood of login attempts can
take is bounded too (limit × 19 MiB per process).
"""

from __future__ import annotations

import os
import threading

from django.conf import settings
from django.contrib.auth.hashers import Argon2PasswordHasher

_slots: dict[int, threading.BoundedSemaphore] = {}
_slots_lock = threading.Lock()


def hashing_slots() -> threading.BoundedSemaphore:
    """The semaphore of ``PASSWORD_HASHING_CONCURRENCY`` (default: the CPUs) for this process."""
    configured = getattr(settings, "PASSWORD_HASHING_CONCURRENCY", None) or os.cpu_count() or 1
    size = max(1, int(configured))
    slots = _slots.get(size)
    if slots is None:
        with _slots_lock:
            slots = _slots.setdefault(size, threading.BoundedSemaphore(size))
    return slots


class LoginHeavyArgon2PasswordHasher(Argon2PasswordHasher):
    time_cost = 2
    memory_cost = 19 * 1024  # KiB
    parallelism = 1

    def encode(self, password: str, salt: str) -> str:
        with hashing_slots():
            return str(super().encode(password, salt))

    def verify(self, password: str, encoded: str) -> bool:
        with hashing_slots():
            return bool(super().verify(password, encoded))
