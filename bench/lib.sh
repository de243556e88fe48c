# Helpers shared by the bench scripts; source it after setting BENCH (the name used in messages).

# apt_install WHAT PACKAGE...: installs Debian packages, or explains why it cannot (not root) and exits.
apt_install() {
    local what="$1"; shift
    if [ "$(id -u)" -ne 0 ]; then echo "$BENCH: $what is missing and we are not root to apt-get install it" >&2; exit 1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null \
        || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null; }
}

# terminate PID: SIGTERM, then SIGKILL if it has not exited within 10 s (and say so: a proxy should stop promptly).
terminate() {
    local pid="$1" i
    kill "$pid" 2>/dev/null || return 0
    for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }; sleep 0.2; done
    echo "$BENCH: pid $pid ($(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | cut -c1-60)...) ignored SIGTERM for 10 s; killing it" >&2
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# wait_http URL SECONDS: until the URL answers 2xx.
wait_http() {
    local deadline=$((SECONDS + $2))
    until curl -fsS -o /dev/null "$1" 2>/dev/null; do
        [ $SECONDS -lt $deadline ] || { echo "$BENCH: $1 did not answer within $2 s" >&2; return 1; }
        sleep 0.2
    done
}
