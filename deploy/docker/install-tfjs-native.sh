#!/usr/bin/env bash
# Installs the native part of @tensorflow/tfjs-node-gpu (gpu) or @tensorflow/tfjs-node (cpu) after
# `npm ci --ignore-scripts`: libtensorflow and the tfjs_binding addon. Their install script downloads
# libtensorflow from Google's storage, which answers HTTP 403 for some versions since 2026; this script lets
# the image build use, in order of preference:
#
#   1. a tarball in the build context: deploy/docker/libtensorflow/libtensorflow-<gpu|cpu>-linux-x86_64-<ver>.tar.gz
#      (copied to $LIBTENSORFLOW_DIR, default /opt/libtensorflow) — no network needed for libtensorflow;
#   2. deploy/docker/libtensorflow/custom-binary.json — tfjs-node's own mechanism: {"tf-lib": URL of the
#      tarball, "addon": {host, remote_path, package_name} of a prebuilt addon};
#   3. a mirror of Google's bucket layout: TFJS_NODE_CDN_STORAGE=https://mirror.example.com/ (the tarball is
#      fetched from ${TFJS_NODE_CDN_STORAGE}tensorflow/libtensorflow/libtensorflow-<type>-linux-x86_64-<ver>.tar.gz);
#      TFJS_NODE_BASE_URI replaces the whole prefix instead;
#   4. Google's storage itself.
#
# The addon comes prebuilt from node-pre-gyp's host (mirror: npm_config_tfjs_binding_binary_host_mirror) or
# is compiled with node-gyp against the local Node headers (python3, make and g++ must be installed).
# Usage: install-tfjs-native.sh gpu|cpu [app dir, default .]
set -euo pipefail

type="${1:?usage: install-tfjs-native.sh gpu|cpu [app dir]}"
app="${2:-.}"
case "$type" in
  gpu) pkg="@tensorflow/tfjs-node-gpu" ;;
  cpu) pkg="@tensorflow/tfjs-node" ;;
  *) echo "install-tfjs-native: type must be gpu or cpu, got '$type'" >&2; exit 2 ;;
esac
dir="$app/node_modules/$pkg"
libdir="${LIBTENSORFLOW_DIR:-/opt/libtensorflow}"
context_dir="${LIBTENSORFLOW_CONTEXT_DIR:-$libdir}"

if [ ! -f "$dir/package.json" ]; then
  echo "install-tfjs-native: $pkg is not in $app/node_modules (run npm ci first)" >&2
  exit 1
fi
version="$(sed -n "s/^const LIBTENSORFLOW_VERSION = '\([0-9.]*\)';.*/\1/p" "$dir/scripts/deps-constants.js")"
if [ -z "$version" ]; then
  echo "install-tfjs-native: cannot read LIBTENSORFLOW_VERSION from $dir/scripts/deps-constants.js" >&2
  exit 1
fi
tarball="$context_dir/libtensorflow-$type-linux-x86_64-$version.tar.gz"
# Node's own headers, so node-gyp never downloads them when the addon has to be compiled.
if [ -z "${npm_config_nodedir:-}" ] && [ -d /usr/local/include/node ]; then
  export npm_config_nodedir=/usr/local
fi

if [ -f "$context_dir/custom-binary.json" ]; then
  echo "install-tfjs-native: using $context_dir/custom-binary.json"
  cp "$context_dir/custom-binary.json" "$dir/scripts/custom-binary.json"
fi

if [ -f "$tarball" ]; then
  echo "install-tfjs-native: libtensorflow $version ($type) from $tarball"
  rm -rf "$dir/deps"
  mkdir -p "$dir/deps"
  tar -xzf "$tarball" -C "$dir/deps"
  # Without the "download" argument the install script keeps deps/ and only builds the binding.
  (cd "$dir" && node scripts/install.js "$type")
else
  if [ -n "${TFJS_NODE_CDN_STORAGE:-}" ]; then
    case "$TFJS_NODE_CDN_STORAGE" in
      https://*/) ;;
      *)
        echo "install-tfjs-native: TFJS_NODE_CDN_STORAGE must be an https:// URL ending in '/' (tfjs-node fetches with https and appends the path), got '$TFJS_NODE_CDN_STORAGE'" >&2
        exit 2
        ;;
    esac
    echo "install-tfjs-native: libtensorflow $version ($type) from the mirror $TFJS_NODE_CDN_STORAGE"
  else
    echo "install-tfjs-native: libtensorflow $version ($type) from tfjs-node's default location"
  fi
  (cd "$dir" && node scripts/install.js "$type" download)
fi

# tfjs-node's download does not check the HTTP status: a 403 page leaves no library and no error.
if [ ! -e "$dir/deps/lib/libtensorflow.so.$version" ] && [ ! -e "$dir/deps/lib/libtensorflow.so" ]; then
  echo "install-tfjs-native: libtensorflow $version was not installed into $dir/deps/lib." >&2
  echo "  Provide it as deploy/docker/libtensorflow/libtensorflow-$type-linux-x86_64-$version.tar.gz," >&2
  echo "  a custom-binary.json, or --build-arg TFJS_NODE_CDN_STORAGE=https://<mirror>/ (docs/operations.md)." >&2
  exit 1
fi
if ! ls "$dir"/lib/napi-v*/tfjs_binding.node >/dev/null 2>&1; then
  echo "install-tfjs-native: the tfjs_binding addon was not built in $dir/lib (see the node-pre-gyp output above)." >&2
  exit 1
fi
echo "install-tfjs-native: $pkg ready (libtensorflow $version)"
