# The benchmark's TypeScript SDK upstream (bench/node/upstream.mjs, an MCP server built on the
# official TypeScript SDK, stateless Streamable HTTP). Sourced, never run. The caller defines
# ROOT (the repository), TOOLS ($ROOT/.tools, git-ignored), and the functions `say` and `die`.
#
#   ensure_sdk_upstream    install Node 22 and @modelcontextprotocol/sdk@$SDK_VERSION into
#                          $TOOLS unless they are there, place upstream.mjs beside the SDK, and
#                          set `sdk_upstream_args` to the harness flags that run it

# shellcheck source=scripts/node22.sh
source "$ROOT/scripts/node22.sh"

SDK_VERSION=1.32.2

ensure_sdk_upstream() {
    ensure_node22 >&2
    local sdk_dir="$TOOLS/bench-node"
    local sdk_pkg="$sdk_dir/node_modules/@modelcontextprotocol/sdk/package.json"
    local have=
    if [[ -f "$sdk_pkg" ]]; then
        have=$("$NODE_BIN" -p 'require(process.argv[1]).version' "$sdk_pkg" || true)
    fi
    if [[ "$have" != "$SDK_VERSION" ]]; then
        say "installing @modelcontextprotocol/sdk@$SDK_VERSION into ${sdk_dir#"$ROOT"/}"
        npm_install_pinned "$sdk_dir" "@modelcontextprotocol/sdk@$SDK_VERSION" >&2
    fi
    # Beside its node_modules, so that the SDK resolves.
    cp "$ROOT/bench/node/upstream.mjs" "$sdk_dir/upstream.mjs"
    sdk_upstream_args=(--node-upstream "$sdk_dir/upstream.mjs" --node "$NODE_BIN")
}
