#!/usr/bin/env bash
# Runs the whole test suite from a fresh clone: installs the Debian packages the tests
# need (apcupsd, for its unmodified apcaccess and scripts; NUT unpacked, not installed),
# checks formatting and lints, builds the
# binaries the integration tests start, then runs every test (all of them even after a
# failure, so one red test never hides another), several test binaries at a time
# (UPSILON_TEST_JOBS, default 3; logs in target/test-logs).
set -euo pipefail
cd "$(dirname "$0")/.."

start=$(date +%s)
phase() { echo "==> [$(( $(date +%s) - start )) s] $*"; }

packages=()
command -v apcaccess >/dev/null 2>&1 || packages+=(apcupsd)
if [ ${#packages[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "run as root (or install: ${packages[*]})" >&2; exit 1; }
    sudo="sudo"
  fi
  phase "installing ${packages[*]}"
  $sudo apt-get update -qq
  # apcupsd's Debian package ships with ISCONFIGURED=no, so its daemon does not start.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi

# NUT's programs (apcupsd-ups, upsd, upsmon, upsc) as test peers: unpacked from their
# .deb into target/nut, since nut-client and apcupsd conflict as installed packages.
nut="target/nut"
if [ ! -x "$nut/lib/nut/apcupsd-ups" ]; then
  phase "unpacking NUT into $nut"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  tmp=$(mktemp -d)
  fetch() { (cd "$tmp" && apt-get download nut-server nut-client libupsclient6 >/dev/null 2>&1); }
  fetch || { $sudo apt-get update -qq && fetch; }
  mkdir -p "$nut"
  for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$nut"; done
  rm -rf "$tmp"
fi

phase "cargo fmt --check"
cargo fmt --all -- --check
phase "cargo build (binaries the integration tests run)"
cargo build --workspace --bins --locked
phase "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
phase "cargo test --no-run (every test binary, built once)"
cargo test --workspace --locked --no-run --message-format=json-render-diagnostics > target/test-binaries.json
rm -rf target/test-logs
mkdir -p target/test-logs
phase "cargo test --doc"
set +e
cargo test --workspace --locked --doc > target/test-logs/doc-tests.log 2>&1
doc_status=$?
[ "$doc_status" -eq 0 ] || cat target/test-logs/doc-tests.log
# The test binaries run side by side, longest first (tests/bin/run_suite.rs): most of
# their time is spent waiting on real processes, not on the CPU.
phase "test binaries, ${UPSILON_TEST_JOBS:-3} at a time"
target/debug/run-suite target/test-binaries.json
status=$?
set -e
[ "$doc_status" -eq 0 ] || status=1
# One closing line for the whole suite (each binary's log has its own result lines).
phase "done"
awk '/^test result:/ { p += $4; f += $6; s += $8 } END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' target/test-logs/*.log
exit "$status"
