#!/usr/bin/env bash
# The whole test suite, as README.md gives it and CI runs it:
# installs what the tests need, then formatting, lints and every test.
# Slow runs (fuzzing, benchmarks) are separate: scripts/fuzz.sh, bench/.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-tests.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
