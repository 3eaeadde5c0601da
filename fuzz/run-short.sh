#!/usr/bin/env bash
# Runs every fuzz target briefly (default 10 s each). Needs cargo-fuzz.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-10}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
for t in nis_decode apcaccess_parse node_config scenario apcsmart_reply netdata hid_descriptor hid_report modbus_frame store_identity; do
  echo "==> fuzz $t for ${secs}s"
  mkdir -p "corpus/$t"
  RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048
done
