#!/usr/bin/env bash
# Fetches third-party HAR 1.2 files for the interop tests: the npm package
# `har-examples` (MIT), unpacked into target/har-examples/. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=target/har-examples
if ls "$dest"/har/*.har >/dev/null 2>&1; then
  exit 0
fi
command -v npm >/dev/null || { echo "fetch-har-examples: npm is needed (apt-get install npm)" >&2; exit 1; }
mkdir -p "$dest"
tarball=$(cd "$dest" && npm pack --silent har-examples 2>/dev/null | tail -n 1) || {
  echo "fetch-har-examples: 'npm pack har-examples' failed" >&2; exit 1; }
tar -xzf "$dest/$tarball" -C "$dest"
# The package ships its documents inside a JavaScript module: write each
# one out as a .har file.
mkdir -p "$dest/har"
(cd "$dest" && node -e '
  const examples = require("./package/dist/index.cjs");
  const all = examples.default || examples;
  for (const [name, har] of Object.entries(all)) {
    require("fs").writeFileSync(`har/${name}.har`, JSON.stringify(har, null, 2));
  }')
echo "har-examples: $(ls "$dest"/har/*.har | wc -l) HAR files in $dest/har"
