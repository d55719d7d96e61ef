#!/usr/bin/env bash
# Runs the cargo-fuzz targets under fuzz/ (nightly toolchain), each for
# SECONDS (default 60). Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
# Not part of the default test command. Crashes are left in
# fuzz/artifacts/TARGET/ with the input that caused them.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for file in fuzz/fuzz_targets/*.rs; do targets+=("$(basename "$file" .rs)"); done
fi
for target in "${targets[@]}"; do
  echo "== fuzzing $target for ${seconds}s"
  (cd fuzz && cargo +nightly fuzz run "$target" -- -max_total_time="$seconds" -rss_limit_mb=2048)
done
