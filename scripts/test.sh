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
echo "== cargo doc (the crate docs' links resolve)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked -q
echo "== cargo run (the README's first command finds the reprise binary)"
# The demo itself is tested in crates/cli/tests/cli.rs; this checks that
# plain `cargo run` picks the binary at all (it could not once the
# examples brought binaries of their own).
cargo run --locked -q -- --version
echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"
# One closing line for the whole suite (cargo prints one per test binary,
# the last of which is often an empty doc-test run).
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' "$log"
