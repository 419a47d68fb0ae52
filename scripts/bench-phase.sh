# Sourced by the scripts that measure the server during one phase of the benchmark harness
# (bench-instructions.sh, bench-syscalls.sh); it defines functions only.
#
#   build_binaries BINARY          builds the harness, and BINARY when missing; prints its
#                                  absolute path
#   start_phase DIR SERVER SECONDS PATTERN BACKEND [POSTGRES [FLAGS...]]
#                                  runs the harness with SERVER as the `switchboard` binary
#                                  and SECONDS per load phase (and FLAGS, more of its flags),
#                                  writing into DIR, until its progress matches PATTERN; then
#                                  sets `harness` (its pid), `server_pid` and `server_addr`
#                                  (BACKEND's server)
#   harness_flags_for PHASE        sets `harness_flags` to the harness flags PHASE needs: for
#                                  `sdk`, those of the TypeScript SDK upstream (installed into
#                                  .tools/ when missing, see bench-node.sh)
#   answered                       the GraphQL requests that server has answered so far
#   stop_harness                   stops the harness and every process it started (its
#                                  servers, the TypeScript SDK upstream)
#
# The caller defines `die`, runs from the repository's root, and calls `stop_harness` on exit.

build_binaries() {
    local binary="$1"
    cargo build --release -p switchboard-bench >&2
    [[ -x "$binary" ]] || cargo build --release -p switchboard >&2
    printf '%s/%s\n' "$(cd "$(dirname "$binary")" && pwd)" "$(basename "$binary")"
}

start_phase() {
    local dir="$1" server="$2" seconds="$3" pattern="$4" backend="$5" postgres="${6:-}"
    shift $(($# < 6 ? $# : 6))
    local args=(--switchboard "$server" --duration "$seconds" --warmup 1 --servers 100
        --subscribers 2 --events 1 --storm-calls 2 "$@")
    [[ -n "$postgres" ]] && args+=(--postgres "$postgres")
    # In a process group of its own, so that stopping it stops the servers and upstreams it
    # started too: the harness stops them itself only when it runs to its end.
    setsid target/release/switchboard-bench "${args[@]}" >"$dir/report" 2>"$dir/progress" &
    harness=$!
    until grep -qE "$pattern" "$dir/progress"; do
        kill -0 "$harness" 2>/dev/null \
            || die "the harness ended before the phase: $(tail -3 "$dir/progress")"
        sleep 0.2
    done
    local line
    line=$(grep "$backend: server pid" "$dir/progress" | tail -1)
    server_pid=$(sed -E 's/.*pid ([0-9]+).*/\1/' <<<"$line")
    server_addr=$(sed -E 's/.* on ([0-9.:]+).*/\1/' <<<"$line")
}

harness_flags_for() {
    harness_flags=()
    if [[ "$1" == sdk ]]; then
        ROOT="$PWD" TOOLS="$PWD/.tools"
        # shellcheck source=scripts/bench-node.sh
        source scripts/bench-node.sh
        ensure_sdk_upstream
        harness_flags=("${sdk_upstream_args[@]}")
    fi
}

answered() {
    curl -sf "http://$server_addr/metrics" | awk '/^switchboard_graphql_requests_total /{print $2}'
}

stop_harness() {
    [[ -n "${harness:-}" ]] || return 0
    # The group the harness leads; never our own.
    local group
    group=$(ps -o pgid= -p "$harness" 2>/dev/null | tr -d ' ') || true
    if [[ -n "$group" && "$group" == "$harness" && "$group" != "$(ps -o pgid= -p $$ | tr -d ' ')" ]]; then
        kill -TERM -- "-$group" 2>/dev/null || true
    else
        kill "$harness" 2>/dev/null || true
    fi
    harness=
}
