#!/usr/bin/env bash
# Runs a command with a throwaway PostgreSQL server: Debian's PostgreSQL (installed with apt-get
# when missing and run as root), initdb in a temporary directory as an unprivileged user, listening
# on a free loopback port and on a unix socket in that directory, stopped and removed on exit.
#
#   scripts/with-postgres.sh cargo test -p chairside-engine --test it store
#
# The command sees CHAIRSIDE_TEST_POSTGRES_URL (a superuser URL to the database `chairside_test`;
# the store tests create one fresh database per test from it) and CHAIRSIDE_REQUIRE_POSTGRES=1 (the
# PostgreSQL test variants fail instead of reporting that they did not run). No containers.
#
# The server is for tests only: trust authentication on loopback, and fsync off (durability across
# a power loss is not what the tests check). CHAIRSIDE_POSTGRES_DURABLE=1 keeps PostgreSQL's
# durable defaults (fsync on), for `chairside bench --database-url "$CHAIRSIDE_TEST_POSTGRES_URL"`.
set -euo pipefail

if [ $# -eq 0 ]; then
  echo "usage: $0 COMMAND [ARGS...]" >&2
  exit 2
fi

pg_bin() {
  local dir
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
      echo "$dir"
      return 0
    fi
  done
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(command -v initdb)"
    return 0
  fi
  return 1
}

bin=$(pg_bin || true)
if [ -z "$bin" ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "installing postgresql for the PostgreSQL store tests" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends postgresql >/dev/null
    bin=$(pg_bin)
  else
    echo "the PostgreSQL store tests need PostgreSQL: sudo apt-get install postgresql" >&2
    exit 1
  fi
fi

# PostgreSQL refuses to run as root: as root, the server runs as a dedicated system user.
as_server=()
server_user=$(id -un)
if [ "$(id -u)" -eq 0 ]; then
  server_user=chairside-test
  if ! id -u "$server_user" >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$server_user"
  fi
  as_server=(runuser -u "$server_user" --)
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/chairside-pg.XXXXXX")
chmod 0700 "$tmp"
[ "$(id -u)" -eq 0 ] && chown "$server_user" "$tmp"
data="$tmp/data"

stop() {
  "${as_server[@]}" "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap stop EXIT
trap 'exit 130' INT TERM

durability="-c fsync=off -c full_page_writes=off"
[ "${CHAIRSIDE_POSTGRES_DURABLE:-}" = 1 ] && durability=""
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

"${as_server[@]}" "$bin/initdb" -D "$data" -U chairside --auth=trust -E UTF8 --no-locale --no-sync >"$tmp/initdb.log" 2>&1 || {
  cat "$tmp/initdb.log" >&2
  exit 1
}
if ! "${as_server[@]}" "$bin/pg_ctl" -D "$data" -l "$tmp/server.log" -w -t 60 start \
  -o "-c listen_addresses=127.0.0.1 -p $port -k $tmp -c max_connections=300 $durability" >/dev/null; then
  cat "$tmp/server.log" >&2
  exit 1
fi
"$bin/createdb" -h 127.0.0.1 -p "$port" -U chairside chairside_test

export CHAIRSIDE_TEST_POSTGRES_URL="postgres://chairside@127.0.0.1:$port/chairside_test"
export CHAIRSIDE_REQUIRE_POSTGRES=1
echo "$("$bin/pg_ctl" --version) for the tests at $CHAIRSIDE_TEST_POSTGRES_URL (server user $server_user)" >&2
"$@"
