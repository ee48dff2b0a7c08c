#!/usr/bin/env bash
# Every plugin compiles alone (--no-default-features --features plugin-NAME), and clippy is clean
# with -D warnings on the default set and on all plugins. The per-plugin step is `cargo check`:
# it proves each feature set compiles without paying for code generation and linking dozens of
# times (a full static build of custom sets is scripts/check-build's job).
set -euo pipefail
cd "$(dirname "$0")/.."
plugins=$(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' plugin.cfg)
for p in $plugins; do
  echo "feature-matrix: plugin-$p alone"
  cargo check --quiet --no-default-features --features "plugin-$p"
done
# Optional parts, alone with their plugin; forward without its TLS gets clippy too, with its tests.
echo "feature-matrix: forward-tls"
cargo check --quiet --no-default-features --features forward-tls
echo "feature-matrix: clippy (forward without forward-tls)"
cargo clippy --quiet --all-targets --no-default-features --features plugin-forward -- -D warnings
echo "feature-matrix: no plugins at all"
cargo check --quiet --no-default-features
echo "feature-matrix: clippy (default)"
cargo clippy --quiet --all-targets -- -D warnings
echo "feature-matrix: clippy (all-plugins)"
cargo clippy --quiet --all-targets --features all-plugins -- -D warnings
echo "feature-matrix: ok ($(echo $plugins | wc -w) plugins)"
