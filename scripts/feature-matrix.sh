#!/usr/bin/env bash
# Every plugin builds alone (--no-default-features --features plugin-NAME), and clippy is clean
# with -D warnings on the default set and on all plugins.
set -euo pipefail
cd "$(dirname "$0")/.."
plugins=$(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' plugin.cfg)
for p in $plugins; do
  echo "feature-matrix: plugin-$p alone"
  cargo build --quiet --no-default-features --features "plugin-$p"
done
echo "feature-matrix: no plugins at all"
cargo build --quiet --no-default-features
echo "feature-matrix: clippy (default)"
cargo clippy --quiet --all-targets -- -D warnings
echo "feature-matrix: clippy (all-plugins)"
cargo clippy --quiet --all-targets --features all-plugins -- -D warnings
echo "feature-matrix: ok ($(echo $plugins | wc -w) plugins)"
