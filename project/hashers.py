"""The demo's password hasher: Argon2id with parameters for a login-heavy service.

Django's ``Argon2PasswordHasher`` defaults to RFC 9106's first recommendation (2 passes over
100 MiB in 8 lanes): about a second per login on a small shared server. OWASP's Password Storage
Cheat Sheet recommends Argon2id with at least 19 MiB, 2 passes and one lane for a service where
logins are frequent: a login then costs tens of milliseconds and the server's cores stay
available. Same algorithm name (``argon2``): Django reads hashes of any parameters and, when a
stored hash has other parameters than these, rewrites it at the next successful login.
"""

from __future__ import annotations

from django.contrib.auth.hashers import Argon2PasswordHasher


class LoginHeavyArgon2PasswordHasher(Argon2PasswordHasher):
    time_cost = 2
    memory_cost = 19 * 1024  # KiB
    parallelism = 1
