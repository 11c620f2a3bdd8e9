"""Load and chaos: two gunicorn servers under mixed traffic for a bounded time (`make chaos`).

Two server processes (tests/live_server.py) share one database and one cache: a file SQLite and
the database cache, or the PostgreSQL of ``DATABASE_URL`` and the Redis of ``REDIS_URL``. Client
threads, each a person with a Cells client, send requests to either server at random: sign-ins
(login, authorization, code exchange), refreshes, API calls (``/a/user/me``) and revocations.

Reported: requests per kind and status, the count of 5xx answers, and **lost tokens**: a refresh
answered 200 whose new access token is refused by the other server, or whose new refresh token
is refused at its first use. Both must be 0; the exit status is 1 otherwise.

    .venv/bin/python bench/chaos.py --seconds 30 --clients 6
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.live_server import LiveSite, Person, pkce_pair  # noqa: E402


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.server_errors = 0
        self.lost_tokens = 0
        self.errors: list[str] = []
        #: Transport errors (connection refused or reset, timeouts), what they said.
        self.transport: list[str] = []

    def record(self, kind: str, status: int) -> None:
        with self.lock:
            self.counts[f"{kind} {status}"] += 1
            if status >= 500:
                self.server_errors += 1

    def lost(self, detail: str) -> None:
        with self.lock:
            self.lost_tokens += 1
            self.errors.append(detail)


def sign_in(person: Person, stats: Stats) -> dict[str, str] | None:
    server = random.randrange(2)
    status = person.sign_in(server)
    stats.record("login", status)
    if status != 303:
        return None
    verifier, challenge = pkce_pair()
    code = person.code(server, challenge)
    answer = person.exchange(1 - server, code, verifier)  # redeemed on the other server
    stats.record("code", answer.status_code)
    return dict(answer.json()) if answer.status_code == 200 else None


def client(site: LiveSite, deadline: float, stats: Stats) -> None:
    person = Person(site)
    tokens = None
    while time.monotonic() < deadline:
        try:
            if tokens is None:
                tokens = sign_in(person, stats)
                continue
            roll = random.random()
            server = random.randrange(2)
            if roll < 0.45:
                answer = person.refresh(server, tokens["refresh_token"])
                stats.record("refresh", answer.status_code)
                if answer.status_code != 200:
                    tokens = None
                    continue
                tokens = dict(answer.json())
                check = person.me(1 - server, tokens["access_token"])
                stats.record("api", check.status_code)
                if check.status_code != 200:
                    stats.lost(f"refreshed access token refused: {check.status_code}")
            elif roll < 0.85:
                stats.record("api", person.me(server, tokens["access_token"]).status_code)
            else:
                stats.record("revoke", person.revoke(server, tokens["refresh_token"]).status_code)
                refused = person.refresh(1 - server, tokens["refresh_token"])
                stats.record("refresh-revoked", refused.status_code)
                if refused.status_code == 200:
                    stats.lost("a revoked refresh token still refreshed")  # worse than lost
                tokens = None
        except Exception as exc:  # noqa: BLE001 - a transport error is reported, not fatal
            stats.record(f"error {type(exc).__name__}", 0)
            with stats.lock:
                stats.transport.append(f"{type(exc).__name__}: {str(exc)[:300]}")
            tokens = None


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=6)
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="cells-oidc-chaos-"))
    site = LiveSite(directory=directory, processes=2, workers=1)
    print(f"setting up two servers in {directory} …", flush=True)
    site.setup()
    site.start()
    stats = Stats()
    try:
        started = time.monotonic()
        deadline = started + args.seconds
        threads = [
            threading.Thread(target=client, args=(site, deadline, stats), daemon=True)
            for _ in range(args.clients)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=args.seconds + 120)
        elapsed = time.monotonic() - started
    finally:
        site.stop()
        logs = site.logs() if stats.transport or stats.server_errors else ""
        site.drop()
        shutil.rmtree(directory, ignore_errors=True)
    database = "PostgreSQL" if site.database_url else "SQLite (file)"
    cache = "Redis" if "REDIS_URL" in os.environ else "database cache"
    total = sum(stats.counts.values())
    print(f"chaos: {elapsed:.0f} s, 2 gunicorn servers, {args.clients} clients, {database}, {cache}")
    print(f"requests: {total} ({total / elapsed:.0f}/s)")
    for key in sorted(stats.counts):
        print(f"  {key:<24} {stats.counts[key]}")
    print(f"5xx: {stats.server_errors}")
    print(f"lost tokens: {stats.lost_tokens}")
    for detail in stats.errors[:10]:
        print(f"  {detail}")
    for detail in stats.transport[:5]:
        print(f"  transport error: {detail}")
    if logs:
        print(f"server logs (last lines):\n{logs[-3000:]}")
    return 1 if stats.server_errors or stats.lost_tokens else 0


if __name__ == "__main__":
    sys.exit(main())
