#!/usr/bin/env bash
# Runs the whole test suite from a fresh clone: installs the Debian packages the tests
# need (apcupsd, for its unmodified apcaccess), checks formatting and lints, builds the
# binaries the integration tests start, then runs every test (all of them even after a
# failure, so one red test never hides another).
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

phase "cargo fmt --check"
cargo fmt --all -- --check
phase "cargo build (binaries the integration tests run)"
cargo build --workspace --bins --locked
phase "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
phase "cargo test (build)"
cargo test --workspace --locked --no-run
# The randomized outages (the longest binary, about 7 minutes of mostly waiting) run
# beside everything else; every other test target runs as before. The list is read
# from tests/Cargo.toml, so a new test file is never left out.
log=$(mktemp)
rlog=$(mktemp)
trap 'rm -f "$log" "$rlog"' EXIT
phase "cargo test (randomized outages beside the rest)"
set +e
cargo test --locked -p upsilon-tests --test randomized > "$rlog" 2>&1 &
rpid=$!
others=()
for t in $(awk '/^\[\[test\]\]/ { t = 1; next } t && /^name *=/ { gsub(/[" ]/, "", $0); sub(/^name=/, "", $0); print; t = 0 }' tests/Cargo.toml); do
  [ "$t" = randomized ] || others+=(--test "$t")
done
{
  cargo test --workspace --exclude upsilon-tests --locked --no-fail-fast
  s1=$?
  cargo test --locked -p upsilon-tests --lib --bins "${others[@]}" --no-fail-fast
  s2=$?
  [ $s1 -eq 0 ] && [ $s2 -eq 0 ]
} 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
wait "$rpid"
rstatus=$?
phase "randomized outages (ran beside the rest)"
cat "$rlog" | tee -a "$log"
[ "$rstatus" -eq 0 ] || status=1
set -e
# One closing line for the whole suite (cargo prints one per test binary).
phase "done"
awk '/^test result:/ { p += $4; f += $6; s += $8 } END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
