#!/usr/bin/env bash
# Runs fuzz targets one after another (never in parallel: the build machine is shared), each
# for FUZZ_SECONDS (default 600), at the lowest CPU priority, logging to logs/<target>.log.
# Usage: ./run.sh target...   Needs cargo-fuzz; on a stable toolchain RUSTC_BOOTSTRAP=1 is set.
set -uo pipefail
cd "$(dirname "$0")"
mkdir -p logs
secs=${FUZZ_SECONDS:-600}
for t in "$@"; do
  features=()
  case $t in
    prom_config) features=(--features server) ;;
    webconfig) features=(--features access) ;;
  esac
  echo "== $t: ${secs}s from $(date -u +%FT%TZ)" > "logs/$t.log"
  RUSTC_BOOTSTRAP=1 nice -n 19 cargo fuzz run -s none -a "${features[@]}" "$t" -- \
    -max_total_time="$secs" -timeout=30 -print_final_stats=1 >> "logs/$t.log" 2>&1
  echo "== $t: exit $? at $(date -u +%FT%TZ)" >> "logs/$t.log"
done
