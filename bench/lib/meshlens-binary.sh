# Sourced by the bench scripts: `meshlens_binary OUT_DIR` sets ML to the binary under test.
# MESHLENS_BIN names one built beforehand; otherwise it is built here and found where cargo
# put it (CARGO_TARGET_DIR when set, else target/). Either way it is linked (or copied) into
# OUT_DIR, so a build into a shared target dir during the run cannot swap it, and the figures
# stay tied to the binary they came from.
meshlens_binary() {
  local out=$1 bin=${MESHLENS_BIN:-}
  if [ -z "$bin" ]; then
    cargo build --release -q -p meshlens
    bin=${CARGO_TARGET_DIR:-target}/release/meshlens
  fi
  ln -f "$bin" "$out/meshlens" 2>/dev/null || cp "$bin" "$out/meshlens"
  git describe --always --dirty >"$out/checkout" 2>/dev/null || true
  ML=$out/meshlens
}
