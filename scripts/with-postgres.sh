#!/usr/bin/env bash
# Run a command against a throwaway PostgreSQL 15 cluster.
#
#   scripts/with-postgres.sh CMD [ARGS...]
#
# Starts a private cluster in a fresh temp dir (listening only on 127.0.0.1 on
# a free port, unix socket inside the temp dir, trust auth, fsync=off), exports
#
#   SWITCHBOARD_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:$PORT/postgres
#
# and SWITCHBOARD_TEST_PG_RESTART (a command that restarts the cluster, cutting every
# open connection), runs CMD, then always stops the cluster and removes the temp dir.
# Exits with CMD's exit code.
#
# PostgreSQL refuses to run as root, so when invoked as root the cluster runs
# as an unprivileged user: $SWITCHBOARD_PG_USER if set, else the system user
# `switchboard-pg` (created if missing), else `nobody`. When invoked as a
# normal user the cluster simply runs as that user.
#
# Optional environment:
#   SWITCHBOARD_PG_USER   user to run the cluster as (root only)
#   SWITCHBOARD_PG_BIN    directory holding initdb/pg_ctl
#   SWITCHBOARD_PG_PORT   port to use instead of picking a free one
#   SWITCHBOARD_PG_START_TIMEOUT  seconds to wait for startup (default 60)
set -euo pipefail

log() { printf 'with-postgres: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $# -ge 1 ]] || die "usage: $0 CMD [ARGS...]"

START_TIMEOUT="${SWITCHBOARD_PG_START_TIMEOUT:-60}"

# --- locate the server binaries ----------------------------------------------
find_pg_bin() {
    local d
    if [[ -n "${SWITCHBOARD_PG_BIN:-}" ]]; then
        [[ -x "$SWITCHBOARD_PG_BIN/initdb" && -x "$SWITCHBOARD_PG_BIN/pg_ctl" ]] &&
            { printf '%s\n' "$SWITCHBOARD_PG_BIN"; return 0; }
        return 1
    fi
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        d="$(dirname "$(command -v initdb)")"
        [[ -x "$d/pg_ctl" ]] && { printf '%s\n' "$d"; return 0; }
    fi
    for d in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
        [[ -x "$d/initdb" && -x "$d/pg_ctl" ]] && { printf '%s\n' "$d"; return 0; }
    done
    return 1
}

if ! PG_BIN="$(find_pg_bin)"; then
    log "initdb/pg_ctl not found; trying to install PostgreSQL via apt-get"
    command -v apt-get >/dev/null 2>&1 || die "apt-get not available; install PostgreSQL 15 server binaries"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || true
    apt-get install -y -qq postgresql-15 >&2 ||
        apt-get install -y -qq postgresql >&2 ||
        die "could not install PostgreSQL"
    PG_BIN="$(find_pg_bin)" || die "PostgreSQL installed but initdb/pg_ctl still not found"
fi
INITDB="$PG_BIN/initdb"
PG_CTL="$PG_BIN/pg_ctl"
PG_ISREADY="$PG_BIN/pg_isready"
[[ -x "$PG_ISREADY" ]] || PG_ISREADY="$(command -v pg_isready || true)"
log "using $("$INITDB" --version)"

# --- choose the user the cluster runs as -------------------------------------
PG_USER=""
if [[ "$(id -u)" -eq 0 ]]; then
    if [[ -n "${SWITCHBOARD_PG_USER:-}" ]]; then
        PG_USER="$SWITCHBOARD_PG_USER"
        id -u "$PG_USER" >/dev/null 2>&1 || die "user $PG_USER does not exist"
    else
        PG_USER="switchboard-pg"
        if ! id -u "$PG_USER" >/dev/null 2>&1; then
            if command -v useradd >/dev/null 2>&1 &&
                useradd --system --no-create-home --home-dir /nonexistent \
                    --shell /usr/sbin/nologin "$PG_USER" >/dev/null 2>&1; then
                log "created system user $PG_USER"
            else
                log "could not create user $PG_USER; falling back to nobody"
                PG_USER="nobody"
            fi
        fi
    fi
    [[ "$(id -u "$PG_USER")" -ne 0 ]] || die "refusing to run PostgreSQL as uid 0 ($PG_USER)"
fi

# Run a command as the cluster user (directly when not root).
as_pg() {
    if [[ -z "$PG_USER" ]]; then
        "$@"
    elif command -v runuser >/dev/null 2>&1; then
        runuser -u "$PG_USER" -- "$@"
    else
        su "$PG_USER" -s /bin/sh -c "$(printf '%q ' "$@")"
    fi
}

# --- pick a free port ----------------------------------------------------------
port_in_use() {
    # Something accepting connections on 127.0.0.1:$1?
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

pick_port() {
    local p
    if command -v python3 >/dev/null 2>&1 &&
        p="$(python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()' 2>/dev/null)" && [[ -n "$p" ]]; then
        printf '%s\n' "$p"
        return 0
    fi
    for p in $(seq 55432 55532); do
        port_in_use "$p" || { printf '%s\n' "$p"; return 0; }
    done
    return 1
}

# --- temp dir + cleanup --------------------------------------------------------
TMP_DIR="$(mktemp -d /tmp/switchboard-pg.XXXXXX)"
DATA_DIR="$TMP_DIR/data"
SOCK_DIR="$TMP_DIR/sock"
LOG_FILE="$TMP_DIR/server.log"
STARTED=0
CHILD_PID=""

# shellcheck disable=SC2317  # invoked indirectly via trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    set +e
    if [[ -n "$CHILD_PID" ]] && kill -0 "$CHILD_PID" 2>/dev/null; then
        kill -TERM "$CHILD_PID" 2>/dev/null
        wait "$CHILD_PID" 2>/dev/null
    fi
    if [[ "$STARTED" -eq 1 || -f "$DATA_DIR/postmaster.pid" ]]; then
        log "stopping PostgreSQL"
        if ! (cd "$TMP_DIR" && as_pg "$PG_CTL" -D "$DATA_DIR" -m fast -w -t 30 stop) >/dev/null 2>&1; then
            (cd "$TMP_DIR" && as_pg "$PG_CTL" -D "$DATA_DIR" -m immediate -w -t 10 stop) >/dev/null 2>&1
            if [[ -f "$DATA_DIR/postmaster.pid" ]]; then
                local pid
                pid="$(head -n1 "$DATA_DIR/postmaster.pid" 2>/dev/null)"
                [[ "$pid" =~ ^[0-9]+$ ]] && kill -KILL "$pid" 2>/dev/null
                sleep 1
            fi
        fi
    fi
    rm -rf "$TMP_DIR"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

if [[ -n "$PG_USER" ]]; then
    chown "$PG_USER" "$TMP_DIR"
fi
chmod 0755 "$TMP_DIR"

# --- initdb ----------------------------------------------------------------------
log "initializing cluster in $TMP_DIR${PG_USER:+ as user $PG_USER}"
if ! (cd "$TMP_DIR" && as_pg mkdir -m 0700 "$SOCK_DIR" &&
    as_pg "$INITDB" -D "$DATA_DIR" --auth=trust -U postgres \
        --encoding=UTF8 --locale=C --no-sync >"$TMP_DIR/initdb.log" 2>&1); then
    log "initdb failed:"
    tail -n 30 "$TMP_DIR/initdb.log" >&2 || true
    exit 1
fi

# --- start (retry with another port if the chosen one gets taken) -----------------
started_ok=0
for attempt in 1 2 3; do
    if [[ -n "${SWITCHBOARD_PG_PORT:-}" ]]; then
        PORT="$SWITCHBOARD_PG_PORT"
    else
        PORT="$(pick_port)" || die "could not find a free port"
    fi
    # Settings live in postgresql.auto.conf (read last) so retries just overwrite them.
    cat >"$DATA_DIR/postgresql.auto.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$SOCK_DIR'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
logging_collector = off
EOF
    chown "${PG_USER:-$(id -un)}" "$DATA_DIR/postgresql.auto.conf"
    chmod 0600 "$DATA_DIR/postgresql.auto.conf"

    log "starting PostgreSQL on 127.0.0.1:$PORT (attempt $attempt)"
    STARTED=1
    if (cd "$TMP_DIR" && as_pg "$PG_CTL" -D "$DATA_DIR" -l "$LOG_FILE" -w -t "$START_TIMEOUT" start) >/dev/null 2>&1; then
        started_ok=1
        break
    fi
    log "pg_ctl start failed; server log tail:"
    tail -n 30 "$LOG_FILE" >&2 2>/dev/null || true
    (cd "$TMP_DIR" && as_pg "$PG_CTL" -D "$DATA_DIR" -m immediate -w -t 10 stop) >/dev/null 2>&1 || true
    STARTED=0
    [[ -z "${SWITCHBOARD_PG_PORT:-}" ]] || break
done
[[ "$started_ok" -eq 1 ]] || die "PostgreSQL failed to start"

# --- wait until it accepts TCP connections -------------------------------------------
ready=0
deadline=$((SECONDS + START_TIMEOUT))
while ((SECONDS < deadline)); do
    if [[ -n "$PG_ISREADY" ]]; then
        "$PG_ISREADY" -q -h 127.0.0.1 -p "$PORT" -U postgres -d postgres && { ready=1; break; }
    elif command -v psql >/dev/null 2>&1; then
        psql -q -X -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -c 'select 1' >/dev/null 2>&1 && { ready=1; break; }
    elif port_in_use "$PORT"; then
        ready=1
        break
    fi
    sleep 0.2
done
if [[ "$ready" -ne 1 ]]; then
    log "PostgreSQL did not accept connections within ${START_TIMEOUT}s; server log tail:"
    tail -n 30 "$LOG_FILE" >&2 2>/dev/null || true
    exit 1
fi

export SWITCHBOARD_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$PORT/postgres"
log "ready: SWITCHBOARD_TEST_DATABASE_URL=$SWITCHBOARD_TEST_DATABASE_URL"

# A command that restarts this cluster (fast shutdown: open connections are cut), for the
# fault tests that check the server survives a database restart.
RESTART_SCRIPT="$TMP_DIR/restart-postgres"
{
    printf '#!/usr/bin/env bash\nset -euo pipefail\n'
    printf 'PG_USER=%q\n' "$PG_USER"
    declare -f as_pg
    printf 'cd %q\n' "$TMP_DIR"
    printf 'as_pg %q -D %q -l %q -m fast -w -t %q restart >/dev/null\n' \
        "$PG_CTL" "$DATA_DIR" "$LOG_FILE" "$START_TIMEOUT"
} >"$RESTART_SCRIPT"
chmod 0755 "$RESTART_SCRIPT"
export SWITCHBOARD_TEST_PG_RESTART="$RESTART_SCRIPT"

# --- run the command ---------------------------------------------------------------------
# Run it in the background and wait, so that INT/TERM/HUP delivered to this
# script are handled promptly and forwarded. Non-interactive bash would give a
# background command /dev/null as stdin and ignore SIGINT/SIGQUIT in it; undo
# both so the command behaves as if it ran in the foreground.
log "running: $*"
set +e
if { true <&0; } 2>/dev/null; then
    (trap - INT QUIT; exec "$@") <&0 &
else
    (trap - INT QUIT; exec "$@") </dev/null & # our stdin is closed
fi
CHILD_PID=$!
trap 'kill -INT "$CHILD_PID" 2>/dev/null; exit 130' INT
trap 'kill -TERM "$CHILD_PID" 2>/dev/null; exit 143' TERM
trap 'kill -HUP "$CHILD_PID" 2>/dev/null; exit 129' HUP
wait "$CHILD_PID"
status=$?
CHILD_PID=""
set -e
log "command exited with status $status"
exit "$status"
