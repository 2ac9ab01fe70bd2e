#!/usr/bin/env bash
# Anomaly detection quality on `meshlens demo` (see README.md). Builds a release binary in
# its own target dir unless MESHLENS_BIN names one; then runs bench.py.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
if [[ -z "${MESHLENS_BIN:-}" ]]; then
  target="${BENCH_TARGET_DIR:-$root/target/bench-anomaly}"
  (cd "$root" && cargo build --release -p meshlens --target-dir "$target")
  MESHLENS_BIN="$target/release/meshlens"
fi
export MESHLENS_BIN
exec python3 "$here/bench.py"
