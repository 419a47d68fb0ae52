#!/usr/bin/env bash
# Browser tests of the built-in console (driven in Chromium through the OAuth popup flow, and
# signing in with an identity provider) and of GraphiQL at /graphql (docs, history, queries and
# a subscription with a pasted token).
#
#   scripts/e2e.sh
#
# 1. Installs Debian's `chromium` package when /usr/bin/chromium is missing
#    (apt-get install -y --no-install-recommends chromium; as root, or through sudo).
# 2. Installs playwright-core, pinned by e2e/package-lock.json, with `npm ci` into
#    e2e/node_modules (git-ignored). It downloads no browser of its own.
# 3. Runs the ignored browser tests of tests/console.rs, tests/console_identity.rs and
#    tests/graphiql.rs, one at a time: each starts Switchboard and its fakes (authorization
#    server, OpenID provider, MCP servers) on 127.0.0.1 and runs e2e/console.test.mjs,
#    e2e/console_identity.test.mjs or e2e/graphiql.test.mjs (Node 20 or newer) against them.
#
# Screenshots land in target/e2e/: console.png, console-narrow.png and graphiql.png on
# success, <scenario>-failure.png (console, console_identity, graphiql) when a step fails. Optional environment: CHROMIUM_PATH
# (default /usr/bin/chromium).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
export CHROMIUM_PATH="${CHROMIUM_PATH:-/usr/bin/chromium}"

say() { printf '==> %s\n' "$*"; }
die() { printf '==> e2e: error: %s\n' "$*" >&2; exit 1; }

START=$SECONDS

command -v node >/dev/null || die "node not found on PATH (Node 20 or newer is needed)"
command -v npm >/dev/null || die "npm not found on PATH"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[[ "$node_major" -ge 20 ]] || die "Node 20 or newer is needed (found $(node --version))"

if [[ -x "$CHROMIUM_PATH" ]]; then
    say "chromium present: $("$CHROMIUM_PATH" --version 2>/dev/null || echo "$CHROMIUM_PATH")"
else
    [[ "$CHROMIUM_PATH" == /usr/bin/chromium ]] || die "CHROMIUM_PATH=$CHROMIUM_PATH does not exist"
    say "installing Debian's chromium package"
    if [[ $(id -u) -eq 0 ]]; then
        as_root=()
    else
        command -v sudo >/dev/null || die "not root and no sudo: install chromium by hand"
        as_root=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${as_root[@]}" apt-get update -qq
    "${as_root[@]}" apt-get install -y -qq --no-install-recommends chromium
    [[ -x "$CHROMIUM_PATH" ]] || die "chromium installed but $CHROMIUM_PATH is missing"
    say "installed: $("$CHROMIUM_PATH" --version 2>/dev/null || true)"
fi

say "npm ci in e2e/"
(cd "$ROOT/e2e" && npm ci --no-audit --no-fund --ignore-scripts)

say "cargo test --test main -- --ignored --test-threads=1 console:: console_identity:: graphiql::"
cargo test --test main -- --ignored --test-threads=1 console:: console_identity:: graphiql::

say "e2e passed in $((SECONDS - START))s; screenshots in target/e2e/"
