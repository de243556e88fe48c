#!/usr/bin/env bash
# bench/run.sh l7 [--runs N]: keep-alive HTTP/1.1 GETs with 1 KiB answers, measured three ways in one run on this host:
#   direct   client -> backend (127.78.0.3:8080)
#   mesh     client -> SOCKS5 127.78.0.2:15080 (ztunnel node-1) -> HBONE -> waypoint -> HBONE -> ztunnel node-2 -> backend,
#            a local mesh from `ambientctl local up` with a waypoint Gateway for the namespace and an HTTPRoute
#   haproxy  client -> haproxy A 127.78.1.1:17080 (mode http, one routing rule) -> TLS 1.3 mTLS -> haproxy B 127.78.1.2:17443 -> backend
# The backend is one process (the load generator's HTTP server, run as the mesh's backend pod), so every path ends at
# the same server. Every client socket is bound to the client pod's address. Everything stays on loopback; every
# process started here is stopped by pid on exit. Figures: see bench/l7/README.md.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
BENCH=l7
# shellcheck source=../lib.sh
source "$root/bench/lib.sh"

RUNS="${L7_RUNS:-3}"
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS="${2:?--runs needs a number}"; shift 2 ;;
        *) echo "usage: bench/run.sh l7 [--runs N]   (env: L7_LATENCY_SECONDS, L7_MAX_SECONDS, L7_MAX_CONNECTIONS, L7_SETTLE_SECONDS)" >&2; exit 2 ;;
    esac
done
# 10 s at 1000 req/s: each run's P99 is the 100th slowest of 10,000 requests (the pooled P99 of 3 runs, of 30,000).
LATENCY_SECONDS="${L7_LATENCY_SECONDS:-10}"
MAX_SECONDS="${L7_MAX_SECONDS:-3}"
MAX_CONNECTIONS="${L7_MAX_CONNECTIONS:-16}"
# The proxies measured are the shipped ones: `dotnet publish -r <rid>`, native AOT executables of the ztunnel and the
# waypoint (see their csproj), run by `ambientctl local up` through AMBIENT_ZTUNNEL / AMBIENT_WAYPOINT.
# L7_PROXY_BUILD=framework measures the framework-dependent JIT builds instead (what `local up` runs by default).
PROXY_BUILD="${L7_PROXY_BUILD:-publish}"
case "$PROXY_BUILD" in publish|framework) ;; *) echo "l7: L7_PROXY_BUILD must be publish or framework, not '$PROXY_BUILD'" >&2; exit 2 ;; esac
# L7_WAYPOINT_ENV="NAME=value ..." adds environment variables to the waypoint only (runtime knobs under test, e.g.
# DOTNET_GCgen0MaxBudget), so they reach neither the build nor the other processes; recorded in the JSON.
WAYPOINT_ENV="${L7_WAYPOINT_ENV:-}"
CLIENT_IP=127.78.0.2
BACKEND=127.78.0.3:8080
SERVICE_HOST=backend.bench-l7.svc.cluster.local
HAPROXY_A=127.78.1.1:17080
HAPROXY_B=127.78.1.2:17443

log() { printf '%s l7: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# --- tools -----------------------------------------------------------------------------------------------------------
if ! command -v haproxy >/dev/null 2>&1; then
    log "installing haproxy (Debian package)"
    apt_install haproxy haproxy
fi
# Native AOT links the proxies with the system C toolchain.
if [ "$PROXY_BUILD" = publish ] && ! command -v clang >/dev/null 2>&1 && ! command -v gcc >/dev/null 2>&1; then
    log "installing clang (native AOT linker)"
    apt_install "a C toolchain (clang or gcc)" clang zlib1g-dev
fi
for tool in openssl curl dotnet python3; do
    command -v "$tool" >/dev/null 2>&1 || { echo "l7: $tool is required" >&2; exit 1; }
done

log "building Release (ambientctl with istiod-lite, ztunnel and the waypoint; load generator)"
for project in ambientctl/Ambient.Ctl bench/Ambient.LoadGen; do
    dotnet build -c Release --nologo -v q "$project" >/dev/null || { dotnet build -c Release --nologo "$project"; exit 1; }
done
bin() { echo "$root/$1/bin/Release/net10.0/$2"; }
AMBIENTCTL="$(bin ambientctl/Ambient.Ctl ambientctl)"
LOADGEN="$(bin bench/Ambient.LoadGen ambient-loadgen)"
if [ "$PROXY_BUILD" = publish ]; then
    case "$(uname -m)" in x86_64) rid=linux-x64 ;; aarch64) rid=linux-arm64 ;; *) echo "l7: no runtime identifier for $(uname -m)" >&2; exit 1 ;; esac
    for project in ztunnel/Ambient.Ztunnel waypoint/Ambient.Waypoint; do
        published="$root/$project/bin/publish/$rid"
        rm -rf "$published"  # no files left over from another build mode
        log "publishing $(basename "$project") ($rid, native AOT)"
        dotnet publish "$project" -c Release -r "$rid" --nologo -v q -o "$published" >/dev/null \
            || { dotnet publish "$project" -c Release -r "$rid" --nologo -o "$published"; exit 1; }
    done
    export AMBIENT_ZTUNNEL="$root/ztunnel/Ambient.Ztunnel/bin/publish/$rid/ztunnel"
    export AMBIENT_WAYPOINT="$root/waypoint/Ambient.Waypoint/bin/publish/$rid/waypoint"
fi

# --- processes: started by pid, stopped by pid -----------------------------------------------------------------------
work="$(mktemp -d "${TMPDIR:-/tmp}/ambient-l7.XXXXXX")"
# The local mesh's state file goes here, not to ~/.ambient: a mesh someone else runs on this host is left alone.
export AMBIENT_HOME="$work/home"
pids=()
cleanup() {
    local status=$?
    local i pid
    # Reverse start order: the mesh (ambientctl stops its own istiod-lite, ztunnels, waypoint and pods) before haproxy.
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do terminate "${pids[$i]}"; done
    # Anything of the mesh's still alive after its supervisor left (it should not be) is stopped by its recorded pid.
    for pid in ${mesh_pids:-}; do
        if kill -0 "$pid" 2>/dev/null; then echo "l7: mesh process $pid outlived ambientctl; stopping it" >&2; terminate "$pid"; fi
    done
    if [ "$status" -ne 0 ]; then
        for f in "$work"/*.log "$work"/state/logs/*.log; do [ -f "$f" ] && { echo "--- $(basename "$f") (last lines)" >&2; tail -n 15 "$f" >&2; }; done
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start() { # name, command... ; sets $last_pid
    local name="$1"; shift
    "$@" >"$work/$name.log" 2>&1 &
    last_pid=$!
    pids+=("$last_pid")
}

# --- (b) the mesh with its waypoint; its backend pod is every path's backend ------------------------------------------
if [ -n "$WAYPOINT_ENV" ]; then
    # The waypoint runs through a wrapper that sets the knobs and execs it (same pid, so it is measured as before).
    real_waypoint="${AMBIENT_WAYPOINT:-$(bin ambientctl/Ambient.Ctl waypoint)}"
    printf '#!/bin/sh\nexec env %s "%s" "$@"\n' "$WAYPOINT_ENV" "$real_waypoint" > "$work/waypoint"
    chmod +x "$work/waypoint"
    export AMBIENT_WAYPOINT="$work/waypoint"
fi
mkdir -p "$work/mesh"
sed -e "s|@LOADGEN@|$LOADGEN|g" "$root/bench/l7/mesh/bench-l7.yaml" > "$work/mesh/bench-l7.yaml"
log "starting the local mesh (ambientctl local up: istiod-lite, two ztunnels, the waypoint, client and backend pods)"
start mesh "$AMBIENTCTL" local up -f "$work/mesh" --state "$work/state" --network loopback --quiet
mesh_pid=$last_pid
deadline=$((SECONDS + 120))
until [ -f "$AMBIENT_HOME/local.json" ] && "$LOADGEN" probe --connect "$CLIENT_IP:15080" --bind "$CLIENT_IP" --socks-host "$SERVICE_HOST" --socks-port 80 --timeout 2 >/dev/null 2>&1; do
    kill -0 "$mesh_pid" 2>/dev/null || { echo "l7: ambientctl local up exited" >&2; exit 1; }
    [ $SECONDS -lt $deadline ] || { echo "l7: the mesh did not route $SERVICE_HOST within 120 s" >&2; exit 1; }
    sleep 1
done
# The pids of the mesh's processes, from the state file ambientctl keeps (name kind pid per line).
components() {
    python3 -c 'import json,sys
for c in json.load(open(sys.argv[1]))["components"]: print(c["name"], c["kind"], c["pid"])' "$AMBIENT_HOME/local.json"
}
mesh_pids="$(components | awk '{print $3}')"
pid_of() { components | awk -v k="$1" -v n="$2" '$2 == k && $1 ~ n {print $3; exit}'; }
wp="$(pid_of waypoint .)"
zt1="$(pid_of ztunnel node-1)"
zt2="$(pid_of ztunnel node-2)"
for v in wp zt1 zt2; do [ -n "${!v}" ] || { echo "l7: no $v process in $AMBIENT_HOME/local.json:" >&2; components >&2; exit 1; }; done
# The waypoint must be on the path: a request through the mesh has to cost it CPU (checked on 2000 requests).
wp_before="$(awk '{print $14 + $15}' "/proc/$wp/stat")"
"$LOADGEN" l7 --out "$work/check.json" --runs 1 --rate 1000 --latency-seconds 1 --max-seconds 1 --host "$SERVICE_HOST" \
    --setup "name=direct,connect=$BACKEND,bind=$CLIENT_IP" --setup "name=haproxy,connect=$BACKEND,bind=$CLIENT_IP" \
    --setup "name=mesh,connect=$CLIENT_IP:15080,bind=$CLIENT_IP,socks=$SERVICE_HOST:80" >/dev/null 2>&1 \
    || { echo "l7: a trial run through the mesh failed" >&2; exit 1; }
[ "$(awk '{print $14 + $15}' "/proc/$wp/stat")" -gt "$wp_before" ] \
    || { echo "l7: the waypoint (pid $wp) spent no CPU on requests through the mesh: it is not on the path" >&2; exit 1; }

# --- (c) haproxy pair, HTTP mode, TLS 1.3 mutual TLS -------------------------------------------------------------------
certs="$work/certs"
mtls_certs "$certs" "${HAPROXY_B%:*}" "l7 bench CA"
fill() { sed -e "s|@DIR@|$certs|g" -e "s|@LISTEN@|$2|g" -e "s|@UPSTREAM@|$3|g" "$root/bench/l7/$1" > "$work/$1"; }
fill haproxy-b.cfg "$HAPROXY_B" "$BACKEND"
fill haproxy-a.cfg "$HAPROXY_A" "$HAPROXY_B"
haproxy -c -q -f "$work/haproxy-b.cfg" && haproxy -c -q -f "$work/haproxy-a.cfg"
start haproxy-b haproxy -db -f "$work/haproxy-b.cfg"; hb=$last_pid
start haproxy-a haproxy -db -f "$work/haproxy-a.cfg"; ha=$last_pid
"$LOADGEN" probe --connect "$HAPROXY_A" --bind "$CLIENT_IP" --path "/bulk?n=1024" --timeout 20 >/dev/null

# --- a settled mesh --------------------------------------------------------------------------------------------------
# A mesh that has just started is still compiling: istiod-lite and ambientctl are framework-dependent, and their
# tiered JIT keeps a core busy in bursts for a minute or so (1-2.5% of a core each, against 0.2-0.4% settled). Users run a
# settled mesh, and those bursts land in every path's tail alike, so measuring starts when the control plane is quiet:
# under 1% of a core over 5 s (or after L7_SETTLE_SECONDS, default 120, whichever comes first).
ticks() { local total=0 p; for p in "$@"; do total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$total"; }
control_plane="$mesh_pid $(pid_of istiod .)"
hz="$(getconf CLK_TCK)"
settle_deadline=$((SECONDS + ${L7_SETTLE_SECONDS:-120}))
settled=no
before=0
after=0
while [ $SECONDS -lt $settle_deadline ]; do
    before="$(ticks $control_plane)"; sleep 5; after="$(ticks $control_plane)"
    # 1% of a core over 5 s is 0.05 s of CPU.
    if [ $(( (after - before) * 100 )) -lt $(( hz * 5 )) ]; then settled=yes; break; fi
done
log "control plane settled: $settled (istiod-lite and ambientctl used $(( (after - before) * 1000 / hz )) ms of CPU in the last 5 s)"

# --- measure and report ----------------------------------------------------------------------------------------------
mkdir -p "$root/bench/results"
out="$root/bench/results/l7-$(date +%Y-%m-%d-%H%M%S).json"
log "measuring, interleaved (order rotated each run): direct, haproxy pair (mode http, nbthread 1 each, TLS 1.3 mTLS), mesh (ztunnel -> waypoint -> ztunnel)"
"$LOADGEN" l7 --out "$out" --runs "$RUNS" --latency-seconds "$LATENCY_SECONDS" --max-seconds "$MAX_SECONDS" \
    --max-connections "$MAX_CONNECTIONS" --host "$SERVICE_HOST" --path "/bulk?n=1024" \
    --setup "name=direct,connect=$BACKEND,bind=$CLIENT_IP" \
    --setup "name=haproxy,connect=$HAPROXY_A,bind=$CLIENT_IP,process=haproxy-a:$ha,process=haproxy-b:$hb" \
    --setup "name=mesh,connect=$CLIENT_IP:15080,bind=$CLIENT_IP,socks=$SERVICE_HOST:80,process=ztunnel-node-1:$zt1,process=waypoint:$wp,process=ztunnel-node-2:$zt2" \
    --env "commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    --env "cpus=$(nproc)" \
    --env "loadavg_at_start=$(cut -d' ' -f1-3 /proc/loadavg)" \
    --env "dotnet=$(dotnet --version)" \
    --env "haproxy=$(haproxy -v | head -n 1)" \
    --env "haproxy_threads=nbthread 1 per side" \
    --env "mesh=ambientctl local up: $([ "$PROXY_BUILD" = publish ] && echo "native AOT publish ($rid) of ztunnel and waypoint" || echo "framework-dependent Release builds of ztunnel and waypoint"), framework-dependent istiod-lite" \
    --env "waypoint_env=${WAYPOINT_ENV:-none}" \
    --env "runs=$RUNS" \
    --env "control_plane_settled=$settled" \
    --env "request=GET /bulk?n=1024 HTTP/1.1, Host $SERVICE_HOST, keep-alive; 1 KiB answer from one backend for every path" \
    --env "latency=1000 req/s open loop (intended-send-time latency), 4 connections, ${LATENCY_SECONDS} s + 1 s warm-up" \
    --env "max=closed loop, $MAX_CONNECTIONS connections, ${MAX_SECONDS} s after 0.5 s warm-up" \
    --env "order=interleaved per run, rotated by one each run (run 1: direct, haproxy, mesh)"
