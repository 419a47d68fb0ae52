#!/usr/bin/env bash
# Client under test for the MCP conformance suite (driven by scripts/conformance.sh).
#
#   scripts/conformance-client.sh URL
#
# The conformance CLI appends the mock server URL as the last argument and sets
#   MCP_CONFORMANCE_SCENARIO   always
#   MCP_CONFORMANCE_CONTEXT    for some scenarios: JSON with `name` and e.g.
#                              `client_id`, `client_secret`, `private_key_pem`, `toolCalls`
# The context is mapped onto `switchboard connect` options:
#   client_id -> --client-id, client_secret -> --client-secret,
#   private_key_pem -> --private-key-file (a 0600 file in a temporary directory, removed
#   on exit), each of toolCalls -> --call NAME=ARGUMENTS;
# and a few scenarios' unwritten contracts onto options (see below).
# The client metadata URL is the fixed one the suite expects for CIMD; it is never
# fetched. Secrets are never printed.
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

# Scenario contracts that are not in the context: what the scenario's mock expects a client
# to do (the suite's own reference client does the same).
#   tools_call                      call the tool with {"a": 2, "b": 3} (it adds them)
#   sep-2322-client-request-state   accept every form with {"confirmed": true}
#   auth/client-credentials-*       connect as a machine client (client-credentials grant)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# One argument per line (values never contain newlines; checked), then a last line with the
# names of the context keys not mapped (for the log). Secrets go to files or arguments, never
# to the log.
mapped=$(WORK="$WORK" python3 - <<'PY'
import json, os, sys
scenario = os.environ.get("MCP_CONFORMANCE_SCENARIO", "")
raw = os.environ.get("MCP_CONFORMANCE_CONTEXT", "")
try:
    ctx = json.loads(raw) if raw else {}
except ValueError as e:  # the message carries a position, never the content
    sys.exit(f"MCP_CONFORMANCE_CONTEXT is not valid JSON: {e}")
if not isinstance(ctx, dict):
    sys.exit("MCP_CONFORMANCE_CONTEXT is not a JSON object")
args, used = [], {"name"}
def arg(*values):
    for value in values:
        if "\n" in value or "\r" in value:
            sys.exit("a value of MCP_CONFORMANCE_CONTEXT contains a newline")
        args.append(value)
for key, option in (("client_id", "--client-id"), ("client_secret", "--client-secret")):
    if ctx.get(key) not in (None, ""):
        arg(option, str(ctx[key]))
        used.add(key)
if ctx.get("private_key_pem"):
    path = os.path.join(os.environ["WORK"], "client-key.pem")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(ctx["private_key_pem"])
    arg("--private-key-file", path)
    used.update(("private_key_pem", "signing_algorithm"))
if scenario.startswith("auth/client-credentials"):
    arg("--client-credentials")
for call in ctx.get("toolCalls") or []:
    arg("--call", f"{call['name']}={json.dumps(call.get('arguments') or {}, ensure_ascii=False)}")
    used.add("toolCalls")
if scenario == "tools_call":
    arg("--arguments", json.dumps({"a": 2, "b": 3}))
if scenario == "sep-2322-client-request-state":
    path = os.path.join(os.environ["WORK"], "elicit.json")
    with open(path, "w") as f:
        json.dump({"action": "accept", "content": {"confirmed": True}}, f)
    arg("--elicit", path)
print("\n".join(args + ["unmapped:" + " ".join(sorted(k for k in ctx if k not in used))]))
PY
)
mapfile -t mapped_args <<<"$mapped"
unmapped=${mapped_args[-1]#unmapped:}
unset 'mapped_args[-1]'
args+=("${mapped_args[@]}")
msg="scenario=${MCP_CONFORMANCE_SCENARIO:-?}"
for a in "${mapped_args[@]}"; do
    case $a in --client-id|--client-secret|--private-key-file|--client-credentials|--call|--arguments|--elicit) msg+=" $a" ;; esac
done
[[ -z "$unmapped" ]] || msg+=" (unmapped context keys: $unmapped)"
log "$msg"

if [[ ! -x "$BIN" ]]; then
    log "no switchboard binary at $BIN (run: cargo build --bin switchboard)"
    exit 127
fi
# The CLI kills only its `sh -c` wrapper on timeout (dash forks, so that would
# orphan us); bound our own run time when conformance.sh tells us the limit.
if [[ -n "${CONFORMANCE_CLIENT_TIMEOUT_S:-}" ]]; then
    timeout --kill-after=5 "$CONFORMANCE_CLIENT_TIMEOUT_S" "$BIN" "${args[@]}" "$URL"
else
    "$BIN" "${args[@]}" "$URL"
fi
