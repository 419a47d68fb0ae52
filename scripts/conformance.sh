#!/usr/bin/env bash
# Run the official MCP conformance suite (client side) against `switchboard connect`.
#
#   scripts/conformance.sh [--install-only] [SUITE...]
#                          (default: auth backcompat draft 2026-07-28)
#
# 1. Installs, idempotently, into .tools/ at the repo root (git-ignored):
#      .tools/node22             npm package node@$NODE_VERSION (the CLI needs Node >= 22)
#      .tools/conformance        @modelcontextprotocol/conformance@$CONFORMANCE_VERSION
#      .tools/conformance-next   @modelcontextprotocol/conformance@$CONFORMANCE_NEXT_VERSION
#    Each is skipped when the pinned version is already there. The package-lock.json
#    files are generated there locally and never committed.
# 2. Uses target/debug/switchboard (CI builds it in the test steps); only if it is
#    missing does this script run `cargo build --bin switchboard`.
# 3. For each suite runs, with Node 22 first on PATH,
#      conformance client --command "$ROOT/scripts/conformance-client.sh" --suite S \
#                         --expected-failures target/conformance/expected-failures-S.yaml \
#                         -o target/conformance/S
#    with $CONFORMANCE_VERSION. After the auth suite it also runs, with
#    $CONFORMANCE_NEXT_VERSION (NEXT_* below),
#      conformance client --command ... --scenario auth/basic-cimd --spec-version 2025-11-25 \
#                         -o target/conformance/auth-$CONFORMANCE_NEXT_VERSION
#    and prints a per-scenario summary from the checks.json files written there.
#    The suite name 2026-07-28 runs, with $CONFORMANCE_NEXT_VERSION, every scenario the
#    revision 2026-07-28 requires (`--requirements 2026-07-28`, at that revision's wire
#    protocol), plus the extension scenarios the CLI runs with them unscored. Every scored
#    scenario must pass, and so must the client-credentials extension; the unscored scenarios
#    of NOT_IMPLEMENTED below are shown but do not fail the run.
#
# Exits non-zero if any scenario of any run failed. A scenario fails when any of
# its checks is FAILURE *or WARNING* (that is the CLI's own rule), or when it wrote
# no checks.json at all. The only exception is the expected failure listed in
# EXPECTED_FAILURES below, and only while it fails exactly as described there.
#
# Optional environment:
#   CONFORMANCE_TIMEOUT_MS          per-scenario client timeout (default 60000; CLI default 30000)
#   SWITCHBOARD_CONFORMANCE_BIN     switchboard binary to test (default target/debug/switchboard)
set -euo pipefail

CONFORMANCE_VERSION=0.1.16
DEFAULT_SUITES=(auth backcompat draft 2026-07-28)

# Expected failures of the $CONFORMANCE_VERSION suites, one per line:
#   SUITE SCENARIO CHECK-THAT-WARNS CHECKS-THAT-MUST-SUCCEED(comma-separated)
#
# auth/basic-cimd: the scenario's authorization server accepts Client ID Metadata Documents
# but does not advertise RFC 9207 (`authorization_response_iss_parameter_supported`). A
# metadata-document client id is valid at every authorization server, which opens a mix-up,
# so Switchboard uses it only with an authorization server that promises `iss`, and then
# requires and compares `iss` in the callback; with any other server it registers dynamically
# (a client id valid there alone). Here that is the right behaviour, and the scenario reports
# it as the WARNING `cimd-client-id-used`. The same scenario of $CONFORMANCE_NEXT_VERSION,
# whose authorization server advertises and sends `iss`, must pass (see NEXT_SCENARIO).
#
# How this is enforced. The CLI's --expected-failures file (YAML, `client:` a list of
# scenario names; `server:` is for server runs) works per scenario: a scenario fails when
# any check is FAILURE or WARNING; a listed scenario that fails is accepted whatever its
# checks say; a listed scenario that passes is a stale entry and exits 1 like an unlisted
# failure; listed names the run does not include are ignored. This script's summary is
# stricter: a listed scenario is accepted only in its listed suite, only when the named
# WARNING is its one FAILURE-or-WARNING check and the named checks succeeded (here: the
# dynamic registration, and the token used on the MCP server). If it passes, the run fails
# too, as in the CLI: against this authorization server a pass would mean the
# metadata-document client id was used without `iss`, the gap this rule closes. Every other
# WARNING or FAILURE, in any scenario of any suite, fails the run as before.
EXPECTED_FAILURES='
auth auth/basic-cimd cimd-client-id-used client-registration,valid-bearer-token
'

# A scenario run from a newer suite release (a pre-release; npm's `latest` is still
# $CONFORMANCE_VERSION) after the $NEXT_SUITE suite, with no expected failure: with an
# authorization server that advertises RFC 9207 and sends `iss`, Switchboard must use its
# metadata-document client id and complete the flow with `iss` checked.
CONFORMANCE_NEXT_VERSION=0.2.0-alpha.12
NEXT_SUITE=auth
NEXT_SCENARIO=auth/basic-cimd
NEXT_SPEC_VERSION=2025-11-25

# The revision whose required scenarios the suite named after it runs (with
# $CONFORMANCE_NEXT_VERSION).
REQUIREMENTS=2026-07-28

# Scenarios the CLI runs with the $REQUIREMENTS requirements but does not score, for
# capabilities Switchboard does not have (yet). They are listed in the summary as NOSCORE and
# do not fail the run; every other scenario, the client-credentials extension included, must
# pass.
#   auth/enterprise-managed-authorization  the ID-JAG token exchange (enterprise SSO)
#   auth/dpop, auth/dpop-nonce             DPoP-bound tokens
#   auth/wif-jwt-bearer                    workload identity JWTs as a jwt-bearer grant
#   json-schema-2020-12-preservation       added after the release; its mock wants the client
#                                          to call a tool with another tool's schema as the
#                                          argument, which `connect` has no option for
NOT_IMPLEMENTED='auth/enterprise-managed-authorization auth/dpop auth/dpop-nonce auth/wif-jwt-bearer json-schema-2020-12-preservation'

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
TOOLS="$ROOT/.tools"
CONF_DIR="$TOOLS/conformance"
CONF_NEXT_DIR="$TOOLS/conformance-next"
CONF_BIN="$CONF_DIR/node_modules/.bin/conformance"
CONF_NEXT_BIN="$CONF_NEXT_DIR/node_modules/.bin/conformance"
CLIENT="$ROOT/scripts/conformance-client.sh"
OUT_ROOT="$ROOT/target/conformance"
TIMEOUT_MS="${CONFORMANCE_TIMEOUT_MS:-60000}"
[[ "$TIMEOUT_MS" =~ ^[1-9][0-9]*$ ]] || { echo "CONFORMANCE_TIMEOUT_MS must be a positive integer" >&2; exit 1; }
# Read by conformance-client.sh: the CLI's own timeout only kills the `sh -c` wrapper.
export CONFORMANCE_CLIENT_TIMEOUT_S=$(((TIMEOUT_MS + 999) / 1000))
export SWITCHBOARD_CONFORMANCE_BIN="${SWITCHBOARD_CONFORMANCE_BIN:-$ROOT/target/debug/switchboard}"

say() { printf '==> %s\n' "$*"; }
die() { printf '==> conformance: error: %s\n' "$*" >&2; exit 1; }
# shellcheck source=scripts/node22.sh
source "$ROOT/scripts/node22.sh"

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

# The conformance version installed in DIR, or nothing.
installed_conformance_version() {
    local dir=$1
    local pkg="$dir/node_modules/@modelcontextprotocol/conformance/package.json"
    if [[ -x "$NODE_BIN" && -f "$pkg" && -e "$dir/node_modules/.bin/conformance" ]]; then
        "$NODE_BIN" -p 'require(process.argv[1]).version' "$pkg" 2>/dev/null || true
    fi
}

# Install @modelcontextprotocol/conformance@VERSION into DIR unless it is there already.
install_conformance() {
    local dir=$1 version=$2 have
    have=$(installed_conformance_version "$dir")
    if [[ "$have" == "$version" ]]; then
        say "@modelcontextprotocol/conformance $have already in ${dir#"$ROOT"/} (skip install)"
        return
    fi
    say "installing @modelcontextprotocol/conformance@$version into ${dir#"$ROOT"/} (found: ${have:-none})"
    npm_install_pinned "$dir" "@modelcontextprotocol/conformance@$version"
    have=$(installed_conformance_version "$dir")
    [[ "$have" == "$version" ]] ||
        die "@modelcontextprotocol/conformance@$version install failed (got: ${have:-nothing})"
}

install_tools() {
    local t0=$SECONDS
    # Node 22 first on PATH from here on: npm, the CLI's `#!/usr/bin/env node`, and
    # the client script all see it.
    ensure_node22

    install_conformance "$CONF_DIR" "$CONFORMANCE_VERSION"
    install_conformance "$CONF_NEXT_DIR" "$CONFORMANCE_NEXT_VERSION"
    say "tools ready: node $(node --version), conformance $("$CONF_BIN" --version)" \
        "and $("$CONF_NEXT_BIN" --version) ($((SECONDS - t0))s)"
}

# Print one line per scenario from DIR/**/checks.json, then "TOTAL passed failed expected"
# as the last line. $2 = expected scenario count (0 = unknown); each further argument is one
# expected failure of this run: "SCENARIO CHECK-THAT-WARNS CHECKS-THAT-MUST-SUCCEED".
# A scenario passes with no FAILURE and no WARNING check; a listed scenario counts as an
# expected failure only when it fails exactly as listed, and as failed otherwise, also when
# it passes. An unreadable or missing checks.json is a failure. A failing scenario named in
# $UNSCORED (space-separated) is NOSCORE, not a failure.
summarize() {
    UNSCORED="${UNSCORED:-}" python3 - "$@" <<'PY'
import json, os, re, sys
root, expected = sys.argv[1], int(sys.argv[2])
unscored = set(os.environ.get("UNSCORED", "").split())
xfail = {}
for spec in sys.argv[3:]:
    scenario, warns, succeed = spec.split()
    xfail[scenario] = (warns, set(succeed.split(",")))
rows = []
for dirpath, _, files in os.walk(root):
    if "checks.json" not in files:
        continue
    rel = os.path.relpath(dirpath, root)
    name = re.sub(r"-\d{4}-\d{2}-\d{2}T[\d-]+Z$", "", rel)
    try:
        with open(os.path.join(dirpath, "checks.json")) as f:
            checks = json.load(f)
        if not isinstance(checks, list) or not all(isinstance(c, dict) for c in checks):
            raise ValueError("not a list of checks")
    except Exception as e:  # noqa: BLE001
        rows.append((name, "FAIL", 0, 1, 0, [f"unreadable checks.json: {e}"]))
        continue
    count = lambda s: sum(1 for c in checks if c.get("status") == s)
    bad = [
        f"{c.get('status')} {c.get('id')}: {(c.get('errorMessage') or c.get('description') or '')[:200]}"
        for c in checks
        if c.get("status") in ("FAILURE", "WARNING")
    ]
    verdict = "FAIL" if bad else "PASS"
    if name in xfail:
        warns, succeed = xfail.pop(name)
        got = {(c.get("status"), c.get("id")) for c in checks if c.get("status") in ("FAILURE", "WARNING")}
        missing = sorted(i for i in succeed if not any(c.get("status") == "SUCCESS" and c.get("id") == i for c in checks))
        if not bad:
            verdict = "FAIL"
            bad = [f"expected to fail with WARNING {warns}, but passed"]
        elif got == {("WARNING", warns)} and not missing:
            verdict = "XFAIL"
        else:
            verdict = "FAIL"
            bad.insert(0, f"expected to fail with only WARNING {warns}"
                       + (f" and SUCCESS {', '.join(sorted(succeed))}" if succeed else "")
                       + (f"; no SUCCESS {', '.join(missing)}" if missing else ""))
    if verdict == "FAIL" and name in unscored:
        verdict = "NOSCORE"
    rows.append((name, verdict, count("SUCCESS"), count("FAILURE"), count("WARNING"), bad))
tally = {"PASS": 0, "FAIL": 0, "XFAIL": 0, "NOSCORE": 0}
for name, verdict, ok, fail, warn, bad in sorted(rows):
    tally[verdict] += 1
    note = {"XFAIL": " (expected failure)", "NOSCORE": " (not scored; not implemented)"}.get(verdict, "")
    print(f"    {verdict:<7} {name}: {ok} ok, {fail} failed, {warn} warnings{note}")
    if verdict == "NOSCORE":
        continue
    for line in bad:
        print(f"          - {line}")
missing = max(expected - len(rows), 0)
if missing:
    print(f"    FAIL  {missing} scenario(s) wrote no checks.json (see cli.log)")
    tally["FAIL"] += missing
for name in sorted(xfail):
    # Listed but not run (or no checks.json): the listing no longer matches the suite.
    print(f"    FAIL  {name}: listed as an expected failure, but no result")
    tally["FAIL"] += 1
print(f"TOTAL {tally['PASS']} {tally['FAIL']} {tally['XFAIL']}")
PY
}

# run_cli LABEL WHAT CONF_BIN EXPECTED_COUNT XFAIL_LINES [CLI ARGS...]
# Runs `conformance client` with CLI ARGS, output in target/conformance/LABEL (cli.log and the
# per-scenario results), then summarises and counts it. EXPECTED_COUNT 0 = take it from the
# CLI's "Running S suite (N scenarios)" line. XFAIL_LINES: the expected failures of this run,
# one "SCENARIO CHECK-THAT-WARNS CHECKS-THAT-MUST-SUCCEED" per line (see summarize).
run_cli() {
    local label=$1 what=$2 bin=$3 expected=$4 xfail=$5 out="$OUT_ROOT/$1" rc=0 t0=$SECONDS
    local summary total s_passed s_failed s_xfail specs=()
    shift 5
    mapfile -t specs < <(sed '/^[[:space:]]*$/d' <<<"$xfail")
    say "conformance $what -> ${out#"$ROOT"/}"
    rm -rf "$out"
    mkdir -p "$out"
    # stdout: "Running S suite (N scenarios)…", the per-scenario ✓/✗ lines and the baseline
    # verdict; stderr: per-scenario progress, client output of failing runs. Both go to cli.log.
    "$bin" client --command "$CLIENT" --timeout "$TIMEOUT_MS" -o "$out" "$@" \
        >"$out/cli.log" 2>&1 || rc=$?
    if [[ $expected -eq 0 ]]; then
        expected=$(sed -n 's/^Running .* (\([0-9]*\) scenarios).*/\1/p' "$out/cli.log" | head -n1)
    fi
    summary=$(summarize "$out" "${expected:-0}" "${specs[@]}")
    total=$(tail -n1 <<<"$summary")
    sed '$d' <<<"$summary"
    read -r _ s_passed s_failed s_xfail <<<"$total"
    if [[ $rc -ne 0 && $s_failed -eq 0 ]]; then
        # The CLI failed without a failing checks.json (bad suite name, crash, a stale
        # expected failure, or in --scenario mode the client's exit code or timeout, …).
        s_failed=1
        printf '    FAIL  conformance CLI exited %s; last lines of cli.log:\n' "$rc"
        tail -n 20 "$out/cli.log" | sed 's/^/          /'
    fi
    say "$what: $s_passed passed, $s_failed failed, $s_xfail expected failure(s)" \
        "(exit $rc, $((SECONDS - t0))s; logs: ${out#"$ROOT"/}/)"
    TOTAL_PASSED=$((TOTAL_PASSED + s_passed))
    TOTAL_FAILED=$((TOTAL_FAILED + s_failed))
    TOTAL_XFAIL=$((TOTAL_XFAIL + s_xfail))
    [[ $rc -eq 0 && $s_failed -eq 0 ]] || FAILED_RUNS+=("$label")
}

run_suite() {
    local suite=$1 xfail scenario yaml="$OUT_ROOT/expected-failures-$1.yaml"
    if [[ "$suite" == "$REQUIREMENTS" ]]; then
        UNSCORED="$NOT_IMPLEMENTED" run_cli "$suite" \
            "requirements $REQUIREMENTS ($CONFORMANCE_NEXT_VERSION)" "$CONF_NEXT_BIN" 0 "" \
            --requirements "$REQUIREMENTS"
        return
    fi
    # This suite's lines of EXPECTED_FAILURES, without the suite column, and the CLI's
    # baseline file listing their scenarios (`client: []` when there are none).
    xfail=$(awk -v s="$suite" '$1 == s { $1 = ""; sub(/^ /, ""); print }' <<<"$EXPECTED_FAILURES")
    mkdir -p "$OUT_ROOT"
    {
        echo "# Expected failures of suite '$suite' ($CONFORMANCE_VERSION); see EXPECTED_FAILURES in scripts/conformance.sh."
        if [[ -z "$xfail" ]]; then
            echo "client: []"
        else
            echo "client:"
            while read -r scenario _; do
                printf '  - "%s"\n' "$scenario"
            done <<<"$xfail"
        fi
    } >"$yaml"
    run_cli "$suite" "suite '$suite' ($CONFORMANCE_VERSION)" "$CONF_BIN" 0 "$xfail" \
        --suite "$suite" --expected-failures "$yaml"
    if [[ "$suite" == "$NEXT_SUITE" ]]; then
        # No --expected-failures here: with it the CLI judges checks only, without it a
        # single scenario also fails on the client's exit code or timeout.
        run_cli "$suite-$CONFORMANCE_NEXT_VERSION" \
            "scenario '$NEXT_SCENARIO' ($CONFORMANCE_NEXT_VERSION, spec $NEXT_SPEC_VERSION)" \
            "$CONF_NEXT_BIN" 1 "" --scenario "$NEXT_SCENARIO" --spec-version "$NEXT_SPEC_VERSION"
    fi
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
TOTAL_XFAIL=0
FAILED_RUNS=()
for suite in "${suites[@]}"; do
    run_suite "$suite"
done

# Plain closing line (scenario counts over all runs).
printf 'conformance: %s passed, %s failed%s\n' "$TOTAL_PASSED" "$TOTAL_FAILED" \
    "$([[ $TOTAL_XFAIL -eq 0 ]] || printf ', %s expected failure(s)' "$TOTAL_XFAIL")"
if [[ ${#FAILED_RUNS[@]} -gt 0 ]]; then
    say "conformance FAILED in: ${FAILED_RUNS[*]} (details: target/conformance/<name>/)"
    exit 1
fi
say "conformance passed: ${suites[*]}"
