#!/usr/bin/env bash
# Start (or stop) a throw-away PostgreSQL and Redis on loopback, data in a temp dir, for the suite on
# real components (docs/deploy.md, .ci/run). Prints the environment to export:
#   eval "$(scripts/services.sh start)"   ...   scripts/services.sh stop
# Ports: PG_PORT (default 55432), REDIS_PORT (default 56379); STATE_DIR keeps the data (default /tmp/cells-oidc-services).
set -euo pipefail
STATE_DIR=${STATE_DIR:-/tmp/cells-oidc-services}
PG_PORT=${PG_PORT:-55432}
REDIS_PORT=${REDIS_PORT:-56379}
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}

as_postgres() {
  # initdb and postgres refuse to run as root.
  if [ "$(id -u)" = "0" ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
  [ -x "$PG_BIN/initdb" ] || { echo "PostgreSQL is not installed (apt-get install postgresql)" >&2; exit 1; }
  command -v redis-server >/dev/null || { echo "Redis is not installed (apt-get install redis-server)" >&2; exit 1; }
  mkdir -p "$STATE_DIR"
  [ "$(id -u)" = "0" ] && chown postgres "$STATE_DIR"
  if [ ! -f "$STATE_DIR/pg/PG_VERSION" ]; then
    as_postgres "$PG_BIN/initdb" -D "$STATE_DIR/pg" -U cells --auth=trust -E UTF8 >"$STATE_DIR/initdb.log"
  fi
  if ! as_postgres "$PG_BIN/pg_ctl" -D "$STATE_DIR/pg" status >/dev/null 2>&1; then
    as_postgres "$PG_BIN/pg_ctl" -D "$STATE_DIR/pg" -l "$STATE_DIR/pg.log" -w \
      -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $STATE_DIR -c max_connections=200 -c fsync=off" start >/dev/null
  fi
  as_postgres "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U cells -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname='cells'" | grep -q 1 ||
    as_postgres "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U cells cells
  if ! redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1; then
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no --daemonize yes \
      --dir "$STATE_DIR" --pidfile "$STATE_DIR/redis.pid" --logfile "$STATE_DIR/redis.log" >/dev/null
    for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1 || { echo "Redis did not start on port $REDIS_PORT" >&2; exit 1; }
  fi
  echo "export DATABASE_URL=postgres://cells@127.0.0.1:$PG_PORT/cells"
  echo "export REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0"
}

stop() {
  if [ -f "$STATE_DIR/pg/PG_VERSION" ]; then
    as_postgres "$PG_BIN/pg_ctl" -D "$STATE_DIR/pg" -m fast stop >/dev/null 2>&1 || true
  fi
  redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
