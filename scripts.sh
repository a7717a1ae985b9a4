# What the IceFlix scripts share, written once; they source it (`source "$here/scripts.sh"`), it is never run.
# shellcheck shell=bash

# The checkout: the folder of this file.
iceflix_root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# Prints the calling script's header comment as its --help: every comment line after the #! line, up to the first
# line that is not a comment, without the leading "# ".
print_help() {
  sed -n '2,${/^#/!q;s/^# \{0,1\}//;p}' "$0"
}

# Runs ./setup (its messages on stderr) unless it has been done: deno, the code generated from every Slice file, and
# the replicas' shared key.
ensure_setup() {
  local ice
  for ice in "$iceflix_root"/slice/*.ice; do
    [[ -f "${ice%.ice}.js" ]] || { "$iceflix_root/setup" >&2; return; }
  done
  [[ -x "$iceflix_root/node_modules/deno/deno" && -s "$iceflix_root/data/installation.key" &&
    -f "$iceflix_root/web/app.js" ]] || "$iceflix_root/setup" >&2
}

# Prints the value of property NAME in the Ice configuration FILE (the last line that sets it), or nothing.
config_property() {
  sed -n "s/^[[:space:]]*${2//./\\.}[[:space:]]*=[[:space:]]*//p" "$1" | tail -1
}

# Whether something accepts TCP connections on 127.0.0.1:PORT.
listening() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Whether process PID runs SERVICE.ts (main, auth, catalog or streaming) of IceFlix.
runs_service() {
  local pid="$1" service="$2"
  [[ "$pid" =~ ^[0-9]+$ && -r "/proc/$pid/cmdline" ]] &&
    tr '\0' '\n' <"/proc/$pid/cmdline" | grep -qE "(^|/)$service\.ts\$"
}

# Sends SIGNAL (e.g. USR2) to PID if it runs SERVICE.ts; fails if it does not, or if it has ended. A pid file may
# be stale and name a process that has nothing to do with IceFlix: SIGUSR2 would kill most programs.
signal_service() {
  local signal="$1" service="$2" pid="$3"
  runs_service "$pid" "$service" && kill -"$signal" "$pid" 2>/dev/null
}

# Prints the pids listed in FILE, one a line, without blank lines and spaces; nothing if there is no such file.
read_pid_file() {
  [[ -f "$1" ]] || return 0
  tr -d ' \t\r' <"$1" | grep -v '^$' || true
}
