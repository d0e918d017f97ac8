#!/usr/bin/env bash
# Rebuilds wasm/pkg (the committed .wasm and its wasm-bindgen glue) from wasm/src.
#
# Toolchain: Debian's rustc 1.63 with its wasm32 standard library (packages rustc cargo lld
# libstd-rust-dev-wasm32) and Debian's crates (librust-*-dev) as a cargo directory source, plus
# wasm-bindgen-cli at the exact version of Debian's wasm-bindgen crate. Newer rustc refuses
# wasm-bindgen < 0.2.88, so the CLI is built with Debian's rustc too, installed once into
# ~/.cache/pixtral/tools. The output is byte-reproducible: source paths are remapped.
set -euo pipefail
cd "$(dirname "$0")"

WASM_BINDGEN_VERSION=0.2.83
export RUSTC=${RUSTC:-/usr/bin/rustc}
CARGO=${CARGO:-/usr/bin/cargo}
TOOLS=${PIXTRAL_TOOLS:-$HOME/.cache/pixtral/tools}

for tool in "$RUSTC" "$CARGO"; do
  [ -x "$tool" ] || { echo "wasm/build.sh: $tool not found: apt-get install rustc cargo lld libstd-rust-dev-wasm32" >&2; exit 1; }
done

wasm_bindgen=$TOOLS/bin/wasm-bindgen
if ! "$wasm_bindgen" --version 2>/dev/null | grep -q " $WASM_BINDGEN_VERSION\$"; then
  echo "wasm/build.sh: installing wasm-bindgen-cli $WASM_BINDGEN_VERSION into $TOOLS (once, a few minutes)" >&2
  # Run from outside the crate so its Debian-only source replacement does not apply; Debian's cargo 1.65
  # reaches crates.io only through the sparse index, which it has behind -Z.
  (cd / && __CARGO_TEST_CHANNEL_OVERRIDE_DO_NOT_USE_THIS=nightly CARGO_REGISTRIES_CRATES_IO_PROTOCOL=sparse \
    "$CARGO" -Z sparse-registry install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --locked --root "$TOOLS")
fi

# WASM features beyond the MVP that Deno's V8 (and every current browser) runs: 128-bit SIMD for the resize and
# normalize loops, bulk memory for memcpy/memset, and non-trapping float-to-int conversions.
FEATURES="-C target-feature=+simd128,+bulk-memory,+nontrapping-fptoint"
RUSTFLAGS="$FEATURES --remap-path-prefix=$PWD=/pixtral/wasm --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo" \
  "$CARGO" build --release --locked --target wasm32-unknown-unknown
"$wasm_bindgen" --target web --omit-default-module-path --out-dir pkg \
  target/wasm32-unknown-unknown/release/pixtral_wasm.wasm
ls -l pkg/*.wasm
