#!/usr/bin/env bash
# Build Switchboard and its benchmark harness, then run the benchmark.
#
#   scripts/bench.sh [--smoke] [--postgres URL] [--node-upstream] [--out FILE]
#                    [more switchboard-bench flags]
#
# The full run builds the release profile and takes a few minutes; `--smoke` builds the debug
# profile (the one `cargo test` already built) and uses tiny counts, to check in seconds that
# the harness works. With `--postgres URL` the list, tool-call and refresh-storm scenarios also
# run on a fresh database created on that server (and dropped afterwards). For a throwaway
# server:
#
#   scripts/with-postgres.sh bash -c 'scripts/bench.sh --postgres "$SWITCHBOARD_TEST_DATABASE_URL"'
#
# With `--node-upstream` the tool-call scenario also runs against an MCP server built on the
# official TypeScript SDK (bench/node/upstream.mjs, stateless Streamable HTTP): Node 22 and the
# SDK are installed into .tools/ (git-ignored) from the npm registry, once.
#
# The report (a markdown table) goes to standard output, and to FILE with --out. The run exits
# non-zero when the harness breaks or a correctness target is missed, never for a speed target.
# `target/<profile>/switchboard-bench --help` lists every flag.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

ROOT="$PWD"
TOOLS="$ROOT/.tools"
say() { printf 'bench: %s\n' "$*" >&2; }
die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }

profile=release
node_upstream=0
args=()
for arg in "$@"; do
    case "$arg" in
        --smoke) profile=debug; args+=("$arg") ;;
        --node-upstream) node_upstream=1 ;;
        *) args+=("$arg") ;;
    esac
done

if [[ $node_upstream == 1 ]]; then
    # shellcheck source=scripts/bench-node.sh
    source "$ROOT/scripts/bench-node.sh"
    ensure_sdk_upstream
    args+=("${sdk_upstream_args[@]}")
fi

if [[ "$profile" == release ]]; then
    cargo build --release -p switchboard -p switchboard-bench
else
    cargo build -p switchboard -p switchboard-bench
fi

# Ten thousand WebSocket subscribers need as many sockets in the harness and in the server,
# which inherits this limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

printf 'bench: %s, %s, commit %s\n' "$(rustc --version)" "$profile" \
    "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" >&2
exec "target/$profile/switchboard-bench" --switchboard "target/$profile/switchboard" ${args[@]+"${args[@]}"}
