#!/usr/bin/env bash
# bench/run.sh l4: one echo server, measured three ways in one run on this host:
#   direct   client -> echo (127.77.0.3:8080)
#   ztunnel  client -> SOCKS5 127.77.0.2:15080 (ztunnel node-1) -> pooled HBONE mTLS HTTP/2 -> ztunnel node-2 -> echo
#   haproxy  client -> haproxy A 127.77.1.1:16080 (plain) -> TLS 1.3 mTLS -> haproxy B 127.77.1.2:16443 -> echo
#   ztunnel-policies  the ztunnel pair to a second echo (127.77.0.4:8080) with 10 ALLOW policies in place
# Every client socket is bound to the client pod's address 127.77.0.2. Everything stays on loopback; every process
# started here is killed by pid on exit. Figures: see bench/l4/README.md.
#
# bench/run.sh l4 --network netns (root): direct and haproxy as above; the ztunnel pair is the one of an
# `ambientctl local up --network netns` mesh (bench/l4/netns/bench.yaml), measured from inside the client pod's network
# namespace two ways through the same two ztunnels:
#   ztunnel  SOCKS5 127.0.0.1:15080 inside the client pod -> HBONE -> ztunnel in the echo pod's namespace -> echo
#   capture  a plain connect to the echo Service VIP:80, no proxy settings -> the pod's iptables rules -> ztunnel 15001
#            (original destination from SO_ORIGINAL_DST) -> HBONE -> ztunnel in the echo pod's namespace -> echo
#   ztunnel-policies  SOCKS5 from the client pod to echo-policy (10 ALLOW policies)
# The mesh and every namespace, link and rule it made go with `ambientctl local down` on exit, Ctrl-C or failure.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
BENCH=l4
# shellcheck source=../lib.sh
source "$root/bench/lib.sh"

NETWORK=loopback
while [ $# -gt 0 ]; do
    case "$1" in
        --network) NETWORK="${2:-}"; shift 2 || { echo "l4: --network needs loopback or netns" >&2; exit 2; } ;;
        --network=*) NETWORK="${1#--network=}"; shift ;;
        *) echo "l4: unknown argument '$1' (usage: bench/run.sh l4 [--network loopback|netns])" >&2; exit 2 ;;
    esac
done
case "$NETWORK" in loopback|netns) ;; *) echo "l4: --network must be loopback or netns, not '$NETWORK'" >&2; exit 2 ;; esac
if [ "$NETWORK" = netns ] && [ "$(id -u)" -ne 0 ]; then echo "l4: --network netns needs root (network namespaces, iptables)" >&2; exit 1; fi

RUNS="${L4_RUNS:-5}"
# L4_ZTUNNEL_GC=workstation forces DOTNET_gcServer=0 (the ztunnel project already builds with workstation GC).
ZTUNNEL_GC="${L4_ZTUNNEL_GC:-default}"
ZTUNNEL_BUILD="${L4_ZTUNNEL_BUILD:-publish}"
case "$ZTUNNEL_BUILD" in publish|framework) ;; *) echo "l4: L4_ZTUNNEL_BUILD must be publish or framework, not '$ZTUNNEL_BUILD'" >&2; exit 2 ;; esac
LATENCY_SECONDS="${L4_LATENCY_SECONDS:-5}"
# L4_ZTUNNEL_ENV="NAME=value ..." adds environment variables to the ztunnels only (runtime knobs under test), so they
# reach neither the build nor the other processes; recorded in the JSON.
read -r -a ZTUNNEL_ENV <<< "${L4_ZTUNNEL_ENV:-}"
CLIENT_IP=127.77.0.2
ECHO_IP=127.77.0.3
ECHO_PORT=8080
# The same echo server behind ten ALLOW policies (bench/l4/mesh/policies.yaml), measured as "ztunnel-policies".
POLICY_ECHO_IP=127.77.0.4
HAPROXY_A=127.77.1.1:16080
HAPROXY_B=127.77.1.2:16443
ISTIOD_GRPC=127.0.0.1:25012
ISTIOD_MON=127.0.0.1:25014
# --network netns: the mesh's own id (its links, namespaces and chains are named amb-l4b-...; a run that died leaves
# them for the next run's `local up` to remove), and ranges far from the defaults and from the netns tests' ranges.
NETNS_ID=l4b
NETNS_POD=10.158      # node-1's pods in 10.158.0.0/24, node-2's in 10.158.1.0/24
NETNS_SVC=10.159.0    # Service VIPs (in 10.159.0.0/16)

log() { printf '%s l4: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# --- tools -----------------------------------------------------------------------------------------------------------
if ! command -v haproxy >/dev/null 2>&1; then
    log "installing haproxy (Debian package)"
    apt_install haproxy haproxy
fi
# Native AOT links the ztunnel with the system C toolchain.
if [ "$ZTUNNEL_BUILD" = publish ] && ! command -v clang >/dev/null 2>&1 && ! command -v gcc >/dev/null 2>&1; then
    log "installing clang (native AOT linker)"
    apt_install "a C toolchain (clang or gcc)" clang zlib1g-dev
fi
if [ "$NETWORK" = netns ]; then
    for tool in ip iptables; do command -v "$tool" >/dev/null 2>&1 || { log "installing iproute2 and iptables"; apt_install "$tool" iproute2 iptables; }; done
fi
for tool in openssl curl dotnet; do
    command -v "$tool" >/dev/null 2>&1 || { echo "l4: $tool is required" >&2; exit 1; }
done

projects=(istiod-lite/Ambient.Istiod ztunnel/Ambient.Ztunnel bench/Ambient.LoadGen)
[ "$NETWORK" = netns ] && projects+=(ambientctl/Ambient.Ctl)
log "building Release (${projects[*]})"
for project in "${projects[@]}"; do
    dotnet build -c Release --nologo -v q "$project" >/dev/null || { dotnet build -c Release --nologo "$project"; exit 1; }
done
bin() { echo "$root/$1/bin/Release/net10.0/$2"; }
ISTIOD="$(bin istiod-lite/Ambient.Istiod istiod-lite)"
# The ztunnel measured is the shipped one: `dotnet publish -r <rid>`, a native AOT executable (see its csproj).
# L4_ZTUNNEL_BUILD=framework measures the framework-dependent JIT build instead (what `ambientctl local up` runs).
if [ "$ZTUNNEL_BUILD" = publish ]; then
    case "$(uname -m)" in x86_64) rid=linux-x64 ;; aarch64) rid=linux-arm64 ;; *) echo "l4: no runtime identifier for $(uname -m)" >&2; exit 1 ;; esac
    published="$root/ztunnel/Ambient.Ztunnel/bin/publish/$rid"
    rm -rf "$published"  # no files left over from another build mode
    log "publishing ztunnel ($rid, native AOT)"
    dotnet publish ztunnel/Ambient.Ztunnel -c Release -r "$rid" --nologo -v q -o "$published" >/dev/null \
        || { dotnet publish ztunnel/Ambient.Ztunnel -c Release -r "$rid" --nologo -o "$published"; exit 1; }
    ZTUNNEL="$published/ztunnel"
else
    ZTUNNEL="$(bin ztunnel/Ambient.Ztunnel ztunnel)"
fi
LOADGEN="$(bin bench/Ambient.LoadGen ambient-loadgen)"
CTL="$(bin ambientctl/Ambient.Ctl ambientctl)"

# --- processes: started by pid, killed by pid ------------------------------------------------------------------------
work="$(mktemp -d "${TMPDIR:-/tmp}/ambient-l4.XXXXXX")"
pids=()
netns_up=0
# The netns mesh runs detached (its own supervisor); `local down` stops it and removes what it made on the host.
ctl() { AMBIENT_HOME="$work/home" AMBIENT_ZTUNNEL="$ZTUNNEL" "$CTL" "$@"; }
cleanup() {
    local status=$?
    local i
    trap '' INT TERM
    if [ "$netns_up" = 1 ]; then
        ctl local down >"$work/local-down.log" 2>&1 || { echo "l4: ambientctl local down failed:" >&2; cat "$work/local-down.log" >&2; }
        if [ "$status" -ne 0 ]; then
            for f in "$work"/netns-state/logs/*.log; do [ -f "$f" ] && { echo "--- netns $(basename "$f") (last lines)" >&2; tail -n 15 "$f" >&2; }; done
        fi
    fi
    # Reverse start order: the ztunnels leave before istiod-lite, so it has no open xDS streams to drain.
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do terminate "${pids[$i]}"; done
    if [ "$status" -ne 0 ]; then
        for f in "$work"/*.log; do [ -f "$f" ] && { echo "--- $(basename "$f") (last lines)" >&2; tail -n 15 "$f" >&2; }; done
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# Recorded before anything starts, so a failure or Ctrl-C at any point leaves no mesh behind.
[ "$NETWORK" = netns ] && netns_up=1

start() { # name, command... ; sets $last_pid
    local name="$1"; shift
    "$@" >"$work/$name.log" 2>&1 &
    last_pid=$!
    pids+=("$last_pid")
}

# --- (a) direct: the echo server ------------------------------------------------------------------------------------------------------
start echo "$LOADGEN" echo --listen "$ECHO_IP:$ECHO_PORT"
"$LOADGEN" probe --connect "$ECHO_IP:$ECHO_PORT" --timeout 20 >/dev/null
start echo-policy "$LOADGEN" echo --listen "$POLICY_ECHO_IP:$ECHO_PORT"
"$LOADGEN" probe --connect "$POLICY_ECHO_IP:$ECHO_PORT" --timeout 20 >/dev/null

# --- (c) haproxy pair, TLS 1.3 mutual TLS ----------------------------------------------------------------------------
certs="$work/certs"
mtls_certs "$certs" "${HAPROXY_B%:*}" "l4 bench CA"
fill() { sed -e "s|@DIR@|$certs|g" -e "s|@LISTEN@|$2|g" -e "s|@UPSTREAM@|$3|g" "$root/bench/l4/$1" > "$work/$1"; }
fill haproxy-b.cfg "$HAPROXY_B" "$ECHO_IP:$ECHO_PORT"
fill haproxy-a.cfg "$HAPROXY_A" "$HAPROXY_B"
haproxy -c -q -f "$work/haproxy-b.cfg" && haproxy -c -q -f "$work/haproxy-a.cfg"
start haproxy-b haproxy -db -f "$work/haproxy-b.cfg"; hb=$last_pid
start haproxy-a haproxy -db -f "$work/haproxy-a.cfg"; ha=$last_pid
"$LOADGEN" probe --connect "$HAPROXY_A" --bind "$CLIENT_IP" --timeout 20 >/dev/null

# --- (b) ztunnel pair ------------------------------------------------------------------------------------------------
if [ "$NETWORK" = loopback ]; then
    state="$work/state"
    start istiod "$ISTIOD" --config "$root/bench/l4/mesh" --state "$state" --listen "$ISTIOD_GRPC" --monitoring "$ISTIOD_MON"
    wait_http "http://$ISTIOD_MON/ready" 60
    curl -fsS "http://$ISTIOD_MON/debug/workloads" | grep -q "$ECHO_IP" \
        || { echo "l4: istiod-lite does not publish the echo pod at $ECHO_IP" >&2; exit 1; }
    zt=()
    for n in 1 2; do
        if [ "$ZTUNNEL_GC" = workstation ]; then export DOTNET_gcServer=0; fi
        start "ztunnel-node-$n" env "${ZTUNNEL_ENV[@]}" "$ZTUNNEL" --node "node-$n" --root "$state/root-cert.pem" --token-file "$state/tokens/node-$n.token" \
            --istiod "https://$ISTIOD_GRPC" --address "127.0.1.$n" --admin-port 25000 --metrics-port 25020 --readiness-port 25021
        zt+=("$last_pid")
        unset DOTNET_gcServer
    done
    for n in 1 2; do wait_http "http://127.0.1.$n:25021/healthz/ready" 60; done
    "$LOADGEN" probe --connect "$CLIENT_IP:15080" --bind "$CLIENT_IP" --socks-host echo.bench.svc.cluster.local --socks-port 80 --timeout 30 >/dev/null
    # The policies allow the bench client: traffic flows (a denial would fail the probe).
    "$LOADGEN" probe --connect "$CLIENT_IP:15080" --bind "$CLIENT_IP" --socks-host echo-policy.bench.svc.cluster.local --socks-port 80 --timeout 30 >/dev/null
    policies="$(curl -fsS "http://$ISTIOD_MON/debug/authorizationpolicies" | grep -c '"enforcedBy": "ztunnel"' || true)"
    [ "$policies" = 10 ] || { echo "l4: istiod-lite reports $policies ztunnel policies, not the 10 of bench/l4/mesh/policies.yaml" >&2; exit 1; }
    zt_setups=(
        --setup "name=ztunnel,connect=$CLIENT_IP:15080,bind=$CLIENT_IP,socks=echo.bench.svc.cluster.local:80,process=ztunnel-node-1:${zt[0]},process=ztunnel-node-2:${zt[1]}"
        --setup "name=ztunnel-policies,connect=$CLIENT_IP:15080,bind=$CLIENT_IP,socks=echo-policy.bench.svc.cluster.local:80,process=ztunnel-node-1:${zt[0]},process=ztunnel-node-2:${zt[1]}"
    )
    ztunnel_path="ztunnel pair (SOCKS5 -> HBONE)"
else
    # --- (b') the ztunnel pair of an `ambientctl local up --network netns` mesh, measured from the client pod -------
    mesh="$work/netns-mesh"
    mkdir -p "$mesh"
    sed -e "s|@LOADGEN@|$LOADGEN|g" -e "s|@POD@|$NETNS_POD|g" -e "s|@SVC@|$NETNS_SVC|g" "$root/bench/l4/netns/bench.yaml" > "$mesh/bench.yaml"
    # The same ten policies, their address blocks moved from the loopback client's 127.77.0.0 to the client pod's range.
    sed -e "s|127\.77\.0\.0/|$NETNS_POD.0.0/|g" "$root/bench/l4/mesh/policies.yaml" > "$mesh/policies.yaml"
    log "starting the netns mesh (ambientctl local up --network netns, ztunnel $ZTUNNEL)"
    ctl local up -f "$mesh" --state "$work/netns-state" --network netns --pod-cidr "$NETNS_POD.0.0/16" \
        --service-cidr "${NETNS_SVC%.*}.0.0/16" --network-id "$NETNS_ID" --detach --quiet >"$work/local-up.log" 2>&1 \
        || { cat "$work/local-up.log" >&2; exit 1; }
    state_json="$work/home/local.json"
    client_netns="/run/netns/$(jq -r '.components[] | select(.pod.namespace == "bench" and .pod.name == "client") | .pod.netns' "$state_json")"
    [ -e "$client_netns" ] || { echo "l4: the client pod's network namespace ($client_netns) is not there" >&2; exit 1; }
    ztp() { jq -r --arg n "$1" '.components[] | select(.kind == "ztunnel" and .node == $n) | .pid' "$state_json"; }
    zt=("$(ztp node-1)" "$(ztp node-2)")
    for p in "${zt[@]}"; do [ -n "$p" ] && [ -e "/proc/$p" ] || { echo "l4: cannot find the netns mesh's ztunnel pids in $state_json" >&2; exit 1; }; done
    # In the client pod: SOCKS5 on the pod's own loopback, and the Service VIP dialled plainly (captured).
    "$LOADGEN" probe --netns "$client_netns" --connect 127.0.0.1:15080 --socks-host echo.bench.svc.cluster.local --socks-port 80 --timeout 60 >/dev/null
    "$LOADGEN" probe --netns "$client_netns" --connect 127.0.0.1:15080 --socks-host echo-policy.bench.svc.cluster.local --socks-port 80 --timeout 30 >/dev/null
    "$LOADGEN" probe --netns "$client_netns" --connect "$NETNS_SVC.80:80" --timeout 30 >/dev/null
    # The capture path really is mTLS: node-2's ztunnel counts a mutual_tls connection from the client's identity.
    node2="$(jq -r '.components[] | select(.kind == "ztunnel" and .node == "node-2") | .address' "$state_json")"
    curl -fsS "http://$node2:15020/metrics" | grep 'istio_tcp_connections_opened_total' | grep 'reporter="destination"' \
        | grep 'connection_security_policy="mutual_tls"' | grep -q 'source_principal="spiffe://cluster.local/ns/bench/sa/client"' \
        || { echo "l4: node-2's ztunnel reports no mutual_tls connection from the bench client (is the capture path in the mesh?)" >&2; exit 1; }
    zt_procs="process=ztunnel-node-1:${zt[0]},process=ztunnel-node-2:${zt[1]}"
    zt_setups=(
        --setup "name=ztunnel,connect=127.0.0.1:15080,netns=$client_netns,socks=echo.bench.svc.cluster.local:80,$zt_procs"
        --setup "name=capture,connect=$NETNS_SVC.80:80,netns=$client_netns,$zt_procs"
        --setup "name=ztunnel-policies,connect=127.0.0.1:15080,netns=$client_netns,socks=echo-policy.bench.svc.cluster.local:80,$zt_procs"
    )
    ztunnel_path="netns mesh from inside the client pod: ztunnel (SOCKS5 127.0.0.1:15080 in the pod) and capture (Service VIP, iptables -> 15001), both -> HBONE -> ztunnel in the echo pod"
fi

# --- report ----------------------------------------------------------------------------------------------------------
mkdir -p "$root/bench/results"
out="$root/bench/results/l4-$(date +%Y-%m-%d-%H%M%S).json"
gc_server="$(grep -so '"System.GC.Server": [a-z]*' "${ZTUNNEL}.runtimeconfig.json" | awk '{print $2}' || true)"
log "measuring, interleaved (order rotated each run): direct, haproxy pair (nbthread 1 each, TLS 1.3 mTLS, ECDSA P-256), $ztunnel_path"
"$LOADGEN" l4 --out "$out" --runs "$RUNS" --latency-seconds "$LATENCY_SECONDS" \
    --setup "name=direct,connect=$ECHO_IP:$ECHO_PORT,bind=$CLIENT_IP" \
    --setup "name=haproxy,connect=$HAPROXY_A,bind=$CLIENT_IP,process=haproxy-a:$ha,process=haproxy-b:$hb" \
    "${zt_setups[@]}" \
    --env "commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    --env "cpus=$(nproc)" \
    --env "loadavg_at_start=$(cut -d' ' -f1-3 /proc/loadavg)" \
    --env "dotnet=$(dotnet --version)" \
    --env "haproxy=$(haproxy -v | head -n 1)" \
    --env "haproxy_threads=nbthread 1 per side" \
    --env "ztunnel_build=$([ "$ZTUNNEL_BUILD" = publish ] && echo "native AOT publish ($rid)" || echo "framework-dependent build")" \
    --env "ztunnel_server_gc=$([ "$ZTUNNEL_GC" = workstation ] && echo "false (DOTNET_gcServer=0)" || echo "${gc_server:-unknown} (runtimeconfig)")" \
    --env "ztunnel_env=${L4_ZTUNNEL_ENV:-none}" \
    --env "runs=$RUNS" \
    --env "network=$NETWORK" \
    --env "ztunnel_path=$ztunnel_path" \
    --env "latency=1000 req/s open loop, 4 connections, 1 KiB POST /echo bodies, ${LATENCY_SECONDS} s + 1 s warm-up" \
    --env "throughput=1 connection, GET /bulk (server->client), 1.5 s after 0.3 s warm-up" \
    --env "new_connections=4 closed-loop workers, connect + GET / Connection: close, 3 s after 0.5 s warm-up" \
    --env "policies=ztunnel-policies: the same ztunnel pair to a second echo server with 10 ALLOW policies (bench/l4/mesh/policies.yaml), all matching the client" \
    --env "order=interleaved per run, rotated by one each run (run 1: direct, haproxy, then the ztunnel setups in the order given)"
