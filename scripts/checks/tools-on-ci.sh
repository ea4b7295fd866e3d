#!/usr/bin/env bash
# Part of scripts/test: scripts/tools.sh never lets a CI run pass while skipping a part.
# A stub apt-get (and id) on PATH stands in for the real ones, so nothing is installed:
#   CI=true, tool missing, apt-get works   → installed (one apt-get update for two tools,
#                                            -y --no-install-recommends), status 0
#   CI=true, apt-get cannot install it     → exit 1, "FAILED … could not be installed"
#   CI=true, not root                      → exit 1
#   no CI, tool missing                    → status 1, "SKIPPED …" on stderr, nothing
#                                            installed, counted in the closing summary
#   no CI, a required tool missing         → exit 1 with what to install
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/checks/common.sh
source scripts/checks/common.sh
# An absolute path (the scenarios run with another PATH); target/ does not exist in a fresh clone.
dir=$PWD/target/tools-check
rm -rf "$dir"
mkdir -p "$dir/bin"
# apt-get: logs its calls; `install` makes a fake tool for each package fake-<x> (<x>-tool),
# and fails for a package named broken.
cat > "$dir/bin/apt-get" <<'EOF'
#!/usr/bin/env bash
echo "apt-get $*" >> "$STUB_LOG"
[ "$1" = install ] || exit 0
for pkg in "$@"; do
  case "$pkg" in
    broken) exit 100;;
    fake-*) printf '#!/bin/sh\n' > "$STUB_BIN/${pkg#fake-}-tool"; chmod +x "$STUB_BIN/${pkg#fake-}-tool";;
  esac
done
EOF
cat > "$dir/bin/id" <<'EOF'
#!/bin/sh
echo "${STUB_UID:-0}"
EOF
chmod +x "$dir/bin/apt-get" "$dir/bin/id"

scenario() { # name CI uid script → runs script with tools.sh sourced; sets out, rc
  rm -f "$dir/bin/"*-tool "$dir/apt.log"
  : > "$dir/apt.log"
  rc=0
  out=$(CI=$2 STUB_UID=$3 STUB_LOG=$dir/apt.log STUB_BIN=$dir/bin PATH="$dir/bin:$PATH" \
    TOOLS_APT_UPDATED=0 bash -c 'set -euo pipefail; TOOLS_WHO=t; source scripts/tools.sh; '"$4" 2>&1) || rc=$?
  echo "$out" > "$dir/$1.out"
}
expect() { # name condition-description command…
  local name=$1 what=$2; shift 2
  "$@" || { echo "--- output:"; cat "$dir/$name.out"; echo "--- apt-get calls:"; cat "$dir/apt.log"; fail "tools: $name: $what"; }
}

scenario ci-installs true 0 'tools_want fake-a "part A" a-tool; tools_require fake-b b-tool; a-tool; b-tool; echo done'
expect ci-installs "status 0" test "$rc" = 0
expect ci-installs "both tools run" test "${out##*$'\n'}" = "done"
expect ci-installs "one apt-get update" test "$(grep -c '^apt-get update' "$dir/apt.log")" = 1
expect ci-installs "install -y --no-install-recommends" grep -q -- "^apt-get install -y -q --no-install-recommends fake-a$" "$dir/apt.log"

scenario ci-cannot-install true 0 'tools_want broken "part B" nothing-tool; echo "went on"'
expect ci-cannot-install "exit 1" test "$rc" = 1
expect ci-cannot-install "says it could not be installed" grep -q "FAILED: nothing-tool is needed and could not be installed" "$dir/ci-cannot-install.out"
expect ci-cannot-install "does not go on" test "$(grep -c "went on" "$dir/ci-cannot-install.out")" = 0

scenario ci-not-root true 1000 'tools_want fake-c "part C" c-tool; echo "went on"'
expect ci-not-root "exit 1" test "$rc" = 1
expect ci-not-root "no apt-get" test ! -s "$dir/apt.log"

scenario local-skips "" 0 'tools_want fake-d "part D" d-tool || echo "skipped D"; tools_summary'
expect local-skips "status 0" test "$rc" = 0
expect local-skips "a loud SKIPPED line" grep -q "^t: SKIPPED part D: d-tool not found" "$dir/local-skips.out"
expect local-skips "the part is skipped" grep -q "^skipped D$" "$dir/local-skips.out"
expect local-skips "a summary at the end" grep -q "^t: SKIPPED 1 part(s): part D (no d-tool)" "$dir/local-skips.out"
expect local-skips "nothing installed" test ! -s "$dir/apt.log"

scenario local-required "" 0 'tools_require fake-e e-tool; echo "went on"'
expect local-required "exit 1" test "$rc" = 1
expect local-required "says what to install" grep -q "FAILED: needs e-tool (Debian: apt-get install fake-e" "$dir/local-required.out"
say "tools: CI installs or fails, locally a loud skip: 5 scenarios passed"
