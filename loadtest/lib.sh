# shellcheck shell=bash
# Shell pieces the load-test scripts share (loadtest/run, compare, profile, replica-acks).
# Source after scripts/addr.sh (redis_cli).

# CPU time (user + system, in clock ticks of getconf CLK_TCK) a process has used; 0 when it
# is not running. Fields 14 and 15 of /proc/PID/stat, counted after the command name, which
# is in parentheses and may itself hold spaces.
cpu_ticks() { # pid → ticks
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
  # shellcheck disable=SC2086 # split on purpose
  set -- ${stat##*) }
  echo $(( ${12} + ${13} ))
}

# CPU seconds of a process, as a decimal (from cpu_ticks).
cpu_seconds() { # pid → seconds
  python3 -c 'import os,sys; print(int(sys.argv[1]) / os.sysconf("SC_CLK_TCK"))' "$(cpu_ticks "$1")"
}

# Waits until a stream is empty (the writer's ack trims what it stored): status 1 if it
# still holds entries after a minute.
stream_drained() { # stream
  local _
  for _ in $(seq 1 1200); do
    [ "$(redis_cli xlen "$1")" = 0 ] && return 0
    sleep 0.05
  done
  return 1
}

# The configured Redis' process id when that Redis runs on this machine (its CPU per request
# can then be measured), else 0.
local_redis_pid() {
  local pid
  pid=$(redis_cli info server | tr -d '\r' | awk -F: '/^process_id/ {print $2+0}')
  if [ -n "$pid" ] && grep -q redis "/proc/$pid/comm" 2>/dev/null; then echo "$pid"; else echo 0; fi
}

# Deletes the keys matching a pattern (SCAN, then UNLINK 500 at a time through one
# redis-cli): a measure that leaves its keys behind slows the next one.
unlink_matching() { # pattern
  redis_cli --scan --pattern "$1" | xargs -r -n 500 echo UNLINK | redis_cli >/dev/null
}
