#!/usr/bin/env bash
# Client under test for the MCP conformance suite (driven by scripts/conformance.sh).
#
#   scripts/conformance-client.sh URL
#
# The conformance CLI appends the mock server URL as the last argument and sets
#   MCP_CONFORMANCE_SCENARIO   always (only logged here)
#   MCP_CONFORMANCE_CONTEXT    for some scenarios: JSON with `name` and e.g.
#                              `client_id`, `client_secret`
# The context is mapped onto `switchboard connect` options, nothing else:
#   client_id -> --client-id, client_secret -> --client-secret.
# The client metadata URL is the fixed one the suite expects for CIMD; it is never
# fetched. The secret is never printed.
#
# Optional environment:
#   SWITCHBOARD_CONFORMANCE_BIN   switchboard binary (default target/debug/switchboard)
#   CONFORMANCE_CLIENT_TIMEOUT_S  kill the client after this many seconds (set by
#                                 conformance.sh to the suite's per-scenario timeout)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${SWITCHBOARD_CONFORMANCE_BIN:-$ROOT/target/debug/switchboard}"
CLIENT_METADATA_URL="https://conformance-test.local/client-metadata.json"

log() { printf 'conformance-client: %s\n' "$*" >&2; }

if [[ $# -ne 1 ]]; then
    log "usage: $0 URL"
    exit 2
fi
URL=$1

args=(connect --allow-loopback --client-metadata-url "$CLIENT_METADATA_URL")

if [[ -n "${MCP_CONFORMANCE_CONTEXT:-}" ]]; then
    # Line 1: client_id, line 2: client_secret (empty when absent), line 3: the other
    # context keys (names only, for the log).
    fields=$(python3 - <<'PY'
import json, os, sys
try:
    ctx = json.loads(os.environ["MCP_CONFORMANCE_CONTEXT"])
except ValueError as e:  # the message carries a position, never the content
    sys.exit(f"MCP_CONFORMANCE_CONTEXT is not valid JSON: {e}")
if not isinstance(ctx, dict):
    sys.exit("MCP_CONFORMANCE_CONTEXT is not a JSON object")
out = []
for key in ("client_id", "client_secret"):
    value = ctx.get(key)
    value = "" if value is None else str(value)
    if "\n" in value or "\r" in value:
        sys.exit(f"MCP_CONFORMANCE_CONTEXT.{key} contains a newline")
    out.append(value)
out.append(" ".join(sorted(k for k in ctx if k not in ("name", "client_id", "client_secret"))))
print("\n".join(out))
PY
    )
    mapfile -t field <<<"$fields"
    client_id=${field[0]:-}
    client_secret=${field[1]:-}
    other_keys=${field[2]:-}
    [[ -z "$client_id" ]] || args+=(--client-id "$client_id")
    [[ -z "$client_secret" ]] || args+=(--client-secret "$client_secret")
    msg="scenario=${MCP_CONFORMANCE_SCENARIO:-?} client_id=${client_id:-<none>} client_secret="
    if [[ -n "$client_secret" ]]; then msg+="<set>"; else msg+="<none>"; fi
    [[ -z "$other_keys" ]] || msg+=" (unmapped context keys: $other_keys)"
    log "$msg"
else
    log "scenario=${MCP_CONFORMANCE_SCENARIO:-?} (no context)"
fi

if [[ ! -x "$BIN" ]]; then
    log "no switchboard binary at $BIN (run: cargo build --bin switchboard)"
    exit 127
fi
# The CLI kills only its `sh -c` wrapper on timeout (dash forks, so that would
# orphan us); bound our own run time when conformance.sh tells us the limit.
if [[ -n "${CONFORMANCE_CLIENT_TIMEOUT_S:-}" ]]; then
    exec timeout --kill-after=5 "$CONFORMANCE_CLIENT_TIMEOUT_S" "$BIN" "${args[@]}" "$URL"
fi
exec "$BIN" "${args[@]}" "$URL"
