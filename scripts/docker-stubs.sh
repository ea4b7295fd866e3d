#!/usr/bin/env bash
# Used by the Dockerfile (and checked by scripts/checks/compose.sh): gives every Cargo
# manifest under the current folder stub sources, so that the image builds the dependencies
# in a layer of its own, rebuilt only when a manifest or Cargo.lock changes.
#
# A stub `fn main() {}` for every `path = "….rs"` a manifest names (lib, bins, tests,
# benches); src/lib.rs for a manifest that names none. Existing files are left alone.
set -euo pipefail
stub() { # file
  [ -e "$1" ] && return 0
  mkdir -p "$(dirname "$1")"
  echo 'fn main() {}' > "$1"
}
find . -name Cargo.toml -not -path './target/*' | while read -r manifest; do
  dir=$(dirname "$manifest")
  paths=$(sed -nE 's/^[[:space:]]*path[[:space:]]*=[[:space:]]*"([^"]+\.rs)".*/\1/p' "$manifest")
  for path in ${paths:-src/lib.rs}; do stub "$dir/$path"; done
done
