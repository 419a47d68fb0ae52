#!/usr/bin/env bash
# Count the system calls Switchboard makes per GraphQL request in one benchmark phase, under
# strace: what a request costs the kernel (sends, receives, and the wake-ups between threads),
# which instruction counts (scripts/bench-instructions.sh) do not see.
#
#   scripts/bench-syscalls.sh [--switchboard BINARY] [--phase list|tool|sdk]
#                             [--concurrency 1|16]
#                             [--postgres URL] [--seconds N]
#
# The benchmark harness runs as usual. When the phase starts (`list`: the list of 100 servers;
# `tool`: the tool call through Switchboard against the in-process upstream; `sdk`: the same
# against the TypeScript SDK upstream, which scripts/bench-node.sh installs into .tools/; on
# PostgreSQL when `--postgres` is given, at the concurrency given, default 16), strace
# attaches to the server for N seconds (default 4) and counts its calls on every thread; the
# requests the server answered meanwhile are read from `switchboard_graphql_requests_total`
# on `/metrics`. It prints each call's count per request and their total.
#
# strace slows the server several times over: counts of sends and receives per request hold,
# but counts of waits (futex, epoll_wait) depend on how busy the threads are, so compare two
# builds at the same concurrency, measured the same way. Needs strace and curl.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf 'bench-syscalls: %s\n' "$*" >&2; }
die() { printf 'bench-syscalls: error: %s\n' "$*" >&2; exit 1; }

binary=target/release/switchboard
phase=list
concurrency=16
postgres=
seconds=4
while [[ $# -gt 0 ]]; do
    case "$1" in
        --switchboard) binary="$2"; shift ;;
        --phase) phase="$2"; shift ;;
        --concurrency) concurrency="$2"; shift ;;
        --postgres) postgres="$2"; shift ;;
        --seconds) seconds="$2"; shift ;;
        *) die "unknown argument: $1" ;;
    esac
    shift
done
command -v strace >/dev/null || die "strace is not installed"
command -v curl >/dev/null || die "curl is not installed"
[[ "$seconds" =~ ^[0-9]+$ && "$seconds" -ge 1 && "$seconds" -le 5 ]] \
    || die "--seconds takes a whole number from 1 to 5 (a phase lasts 8)"
[[ "$concurrency" == 1 || "$concurrency" == 16 ]] || die "--concurrency takes 1 or 16"

backend=SQLite
[[ -n "$postgres" ]] && backend=PostgreSQL
case "$phase" in
    list) pattern="1 list \\($backend\\): list, c=$concurrency\$" ;;
    tool) pattern="2 tool call \\($backend\\): through Switchboard, c=$concurrency\$" ;;
    sdk) pattern="2 tool call, TypeScript SDK upstream \\($backend\\): through Switchboard, c=$concurrency\$" ;;
    *) die "--phase takes list, tool or sdk" ;;
esac

# shellcheck source=scripts/bench-phase.sh
source scripts/bench-phase.sh
binary=$(build_binaries "$binary")
harness_flags_for "$phase"

work="$(mktemp -d)"
harness=
cleanup() {
    stop_harness
    rm -rf "$work"
}
trap cleanup EXIT

start_phase "$work" "$binary" 8 "$pattern" "$backend" "$postgres" \
    ${harness_flags[@]+"${harness_flags[@]}"}
# Past the phase's warm-up.
sleep 1
before=$(answered)
timeout -s INT "$seconds" strace -c -f -p "$server_pid" -o "$work/counts" >/dev/null 2>&1 || true
after=$(answered)
[[ -s "$work/counts" ]] || die "strace wrote no counts (is ptrace allowed here?)"
# Less the scrape that read `before`.
requests=$((after - before - 1))
[[ "$requests" -gt 0 ]] || die "no request was answered in the window"
printf '%s %s c=%s: %d requests (%s); system calls per request:\n' \
    "$phase" "$backend" "$concurrency" "$requests" "$(basename "$binary")"
# strace's table: % time, seconds, usecs/call, calls, [errors,] syscall.
awk -v n="$requests" '
    $1 ~ /^[0-9.]+$/ && $NF ~ /^[a-z_0-9]+$/ && $NF != "total" {
        printf "  %-16s %8.2f\n", $NF, $4 / n
    }
    $NF == "total" { printf "  %-16s %8.2f\n", "total", $4 / n }
' "$work/counts"
