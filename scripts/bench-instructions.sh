#!/usr/bin/env bash
# Count the instructions Switchboard executes per GraphQL request in one benchmark phase, under
# callgrind: a figure that does not move with the machine's neighbours, for comparing two
# builds whose difference is smaller than what wall-clock runs can show.
#
#   scripts/bench-instructions.sh [--switchboard BINARY] [--phase list|tool|sdk]
#                                 [--postgres URL] [--seconds N]
#
# The benchmark harness runs as usual with the server under `valgrind --tool=callgrind`. When
# the phase starts (`list`: the SQLite list at c=1; `tool`: the tool call through Switchboard
# at c=1, on PostgreSQL when `--postgres` is given; `sdk`: the same against the TypeScript
# SDK upstream, which scripts/bench-node.sh installs into .tools/), the counters are zeroed,
# the requests the server answered are read from `switchboard_graphql_requests_total` on
# `/metrics`, and after N seconds (default 10) both are read again. It prints the instructions
# per request; one line per run, so runs of two builds can be set side by side. Requests at
# c=1 run one at a time, so at most one is cut at either end of the window (under a fraction
# of a percent).
#
# Needs valgrind and curl. Counts exclude the kernel: they measure the process's own work, not
# its system calls (see BENCHMARKS.md).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf 'bench-instructions: %s\n' "$*" >&2; }
die() { printf 'bench-instructions: error: %s\n' "$*" >&2; exit 1; }

binary=target/release/switchboard
phase=list
postgres=
seconds=10
while [[ $# -gt 0 ]]; do
    case "$1" in
        --switchboard) binary="$2"; shift ;;
        --phase) phase="$2"; shift ;;
        --postgres) postgres="$2"; shift ;;
        --seconds) seconds="$2"; shift ;;
        *) die "unknown argument: $1" ;;
    esac
    shift
done
command -v valgrind >/dev/null || die "valgrind is not installed"
command -v callgrind_control >/dev/null || die "callgrind_control is not installed"
command -v curl >/dev/null || die "curl is not installed"
[[ "$seconds" =~ ^[0-9]+$ && "$seconds" -ge 4 ]] || die "--seconds takes a whole number of at least 4"

backend=SQLite
[[ -n "$postgres" ]] && backend=PostgreSQL
case "$phase" in
    list) backend=SQLite; pattern='1 list \(SQLite\): list, c=1$' ;;
    tool) pattern="2 tool call \\($backend\\): through Switchboard, c=1\$" ;;
    sdk) pattern="2 tool call, TypeScript SDK upstream \\($backend\\): through Switchboard, c=1\$" ;;
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
    pkill -f "callgrind-out-file=$work/" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# The harness starts the server through this wrapper.
cat >"$work/switchboard" <<EOF
#!/bin/sh
exec valgrind --tool=callgrind --callgrind-out-file=$work/callgrind.%p "$binary" "\$@"
EOF
chmod +x "$work/switchboard"

start_phase "$work" "$work/switchboard" $((seconds + 4)) "$pattern" "$backend" "$postgres" \
    ${harness_flags[@]+"${harness_flags[@]}"}
pid=$server_pid
# Past the phase's warm-up.
sleep 2
callgrind_control -z "$pid" >/dev/null
before=$(answered)
sleep "$seconds"
after=$(answered)
callgrind_control -d "$pid" >/dev/null
dump=$(ls -t "$work"/callgrind."$pid".* 2>/dev/null | head -1)
[[ -n "$dump" ]] || die "callgrind wrote no dump"
total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
requests=$((after - before))
[[ "$requests" -gt 0 ]] || die "no request was answered in the window"
printf '%s %s: %d requests, %d instructions per request (%s)\n' \
    "$phase" "$backend" "$requests" $((total / requests)) "$(basename "$binary")"
