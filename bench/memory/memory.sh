#!/usr/bin/env bash
# bench/run.sh memory: does memory come back after load? Per run, fresh processes on this host, loopback only:
#   ztunnel      the shipped native AOT build serving the bench mesh's echo pod (127.77.0.3:15008, node-2):
#                2,000 idle mutual-TLS HTTP/2 connections with a CA-issued workload certificate, held, closed
#   istiod-lite  a 10 MiB YAML file of valid resources moved into its watched config folder, published, removed
# RSS (VmRSS of /proc/PID/status, sampled every 100 ms) before / peak / after; targets: back within 20% of before
# 60 s after the load is gone. Every process started here is killed by pid on exit. Details: bench/memory/README.md.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
BENCH=memory
# shellcheck source=../lib.sh
source "$root/bench/lib.sh"

RUNS="${MEMORY_RUNS:-3}"
CONNECTIONS="${MEMORY_CONNECTIONS:-2000}"
FLOOD_MIB="${MEMORY_FLOOD_MIB:-10}"
OBSERVE_SECONDS="${MEMORY_OBSERVE_SECONDS:-60}"
PHASES="${MEMORY_PHASES:-ztunnel,istiod}"   # measure only one of them with MEMORY_PHASES=ztunnel or istiod
# MEMORY_ZTUNNEL_ENV / MEMORY_ISTIOD_ENV="NAME=value ...": runtime knobs for one component only, recorded in the JSON.
read -r -a ZTUNNEL_ENV <<< "${MEMORY_ZTUNNEL_ENV:-}"
read -r -a ISTIOD_ENV <<< "${MEMORY_ISTIOD_ENV:-}"
CLIENT_IP=127.77.0.2
ECHO_IP=127.77.0.3
NODE_IP=127.0.1.2
ISTIOD_GRPC=127.0.0.1:25012
ISTIOD_MON=127.0.0.1:25014
PYTHON=/usr/bin/python3   # Debian's, with python3-grpcio (the CA client that fetches the workload certificate)

log() { printf '%s memory: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# --- tools -----------------------------------------------------------------------------------------------------------
if ! command -v clang >/dev/null 2>&1 && ! command -v gcc >/dev/null 2>&1; then
    log "installing clang (native AOT linker)"
    apt_install "a C toolchain (clang or gcc)" clang zlib1g-dev
fi
if ! "$PYTHON" -c 'import grpc, grpc_tools' 2>/dev/null; then
    log "installing python3-grpcio and python3-grpc-tools (Debian packages)"
    apt_install "grpcio for $PYTHON" python3-grpcio python3-grpc-tools
fi
for tool in openssl curl dotnet; do
    command -v "$tool" >/dev/null 2>&1 || { echo "memory: $tool is required" >&2; exit 1; }
done

log "building Release (istiod-lite, load generator) and publishing the ztunnel (native AOT)"
for project in istiod-lite/Ambient.Istiod bench/Ambient.LoadGen; do
    # A failed quiet build is retried once with its output (a concurrent restore of a shared project can fail the first).
    dotnet build -c Release --nologo -v q "$project" >/dev/null || dotnet build -c Release --nologo "$project"
done
case "$(uname -m)" in x86_64) rid=linux-x64 ;; aarch64) rid=linux-arm64 ;; *) echo "memory: no runtime identifier for $(uname -m)" >&2; exit 1 ;; esac
published="$root/ztunnel/Ambient.Ztunnel/bin/publish/$rid"
rm -rf "$published"
dotnet publish ztunnel/Ambient.Ztunnel -c Release -r "$rid" --nologo -v q -o "$published" >/dev/null \
    || dotnet publish ztunnel/Ambient.Ztunnel -c Release -r "$rid" --nologo -o "$published"
ZTUNNEL="$published/ztunnel"
ISTIOD="$root/istiod-lite/Ambient.Istiod/bin/Release/net10.0/istiod-lite"
LOADGEN="$root/bench/Ambient.LoadGen/bin/Release/net10.0/ambient-loadgen"

# --- processes: started by pid, killed by pid ------------------------------------------------------------------------
work="$(mktemp -d "${TMPDIR:-/tmp}/ambient-memory.XXXXXX")"
pids=()
cleanup() {
    local status=$?
    stop_all
    if [ "$status" -ne 0 ]; then
        for f in "$work"/run-*/*.log; do [ -f "$f" ] && { echo "--- $f (last lines)" >&2; tail -n 15 "$f" >&2; }; done
    fi
    rm -rf "$work"
}
stop_all() { # reverse start order: the ztunnel leaves before istiod-lite
    local i
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do terminate "${pids[$i]}"; done
    pids=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start() { # log file, command... ; sets $last_pid
    local out="$1"; shift
    "$@" >"$out" 2>&1 &
    last_pid=$!
    pids+=("$last_pid")
}
wait_tcp() { # ip, port, seconds
    local deadline=$((SECONDS + $3))
    until (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; do
        [ $SECONDS -lt $deadline ] || { echo "memory: nothing listens on $1:$2 after $3 s" >&2; return 1; }
        sleep 0.2
    done
}

runs=()
for run in $(seq 1 "$RUNS"); do
    dir="$work/run-$run"; mkdir -p "$dir/staging"
    # The config folder is a copy: the bench drops files into it.
    cp -r "$root/bench/l4/mesh" "$dir/mesh"
    state="$dir/state"
    start "$dir/istiod.log" env "${ISTIOD_ENV[@]}" "$ISTIOD" --config "$dir/mesh" --state "$state" --listen "$ISTIOD_GRPC" --monitoring "$ISTIOD_MON"
    istiod_pid=$last_pid
    wait_http "http://$ISTIOD_MON/ready" 60
    start "$dir/ztunnel.log" env "${ZTUNNEL_ENV[@]}" "$ZTUNNEL" --node node-2 --root "$state/root-cert.pem" --token-file "$state/tokens/node-2.token" \
        --istiod "https://$ISTIOD_GRPC" --address "$NODE_IP" --admin-port 25000 --metrics-port 25020 --readiness-port 25021
    ztunnel_pid=$last_pid
    wait_http "http://$NODE_IP:25021/healthz/ready" 60
    wait_tcp "$ECHO_IP" 15008 30

    # The client pod's workload certificate, issued by istiod-lite's CA to node-1 impersonating the pod, as the
    # client's ztunnel would get it (Debian's grpcio, not our gRPC client).
    openssl ecparam -name prime256v1 -genkey -noout -out "$dir/client.key" 2>/dev/null
    openssl req -new -key "$dir/client.key" -subj "/O=bench" -out "$dir/client.csr" 2>/dev/null
    "$PYTHON" "$root/tests/interop/ca_client.py" --protos "$root/core/Ambient.Core/Protos" --target "$ISTIOD_GRPC" \
        --root "$state/root-cert.pem" --token "$(cat "$state/tokens/node-1.token")" \
        --identity spiffe://cluster.local/ns/bench/sa/client --csr "$dir/client.csr" > "$dir/ca.json"
    "$PYTHON" -c 'import json,sys; r=json.load(open(sys.argv[1])); sys.exit(r["code"]+": "+r["details"]) if r["code"]!="OK" else open(sys.argv[2],"w").write(r["chain"][0])' \
        "$dir/ca.json" "$dir/client.pem"

    log "run $run of $RUNS: istiod-lite pid $istiod_pid, ztunnel pid $ztunnel_pid"
    "$LOADGEN" memory-run --ztunnel-pid "$ztunnel_pid" --istiod-pid "$istiod_pid" --connect "$ECHO_IP:15008" --bind "$CLIENT_IP" \
        --cert "$dir/client.pem" --key "$dir/client.key" --root "$state/root-cert.pem" \
        --config "$dir/mesh" --staging "$dir/staging" --istiod-log "$dir/istiod.log" \
        --base-workloads 2 --base-services 1 --connections "$CONNECTIONS" --flood-mib "$FLOOD_MIB" \
        --observe-seconds "$OBSERVE_SECONDS" --phases "$PHASES" --out "$dir/result.json"
    cp "$dir/result.json" "$work/result-$run.json"
    runs+=(--run "$work/result-$run.json")
    stop_all
done

mkdir -p "$root/bench/results"
out="$root/bench/results/memory-$(date +%Y-%m-%d-%H%M%S).json"
"$LOADGEN" memory-report "${runs[@]}" --out "$out" \
    --env "commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    --env "cpus=$(nproc)" \
    --env "loadavg_at_end=$(cut -d' ' -f1-3 /proc/loadavg)" \
    --env "dotnet=$(dotnet --version)" \
    --env "ztunnel_build=native AOT publish ($rid)" \
    --env "istiod_build=framework-dependent Release build" \
    --env "ztunnel_env=${MEMORY_ZTUNNEL_ENV:-none}" \
    --env "istiod_env=${MEMORY_ISTIOD_ENV:-none}" \
    --env "runs=$RUNS (fresh processes per run)" \
    --env "connections=$CONNECTIONS idle, 50 handshakes at a time, held 15 s, after a 20-connection warm-up" \
    --env "flood=${FLOOD_MIB} MiB YAML, after a 200 KiB warm-up file" \
    --env "observe=${OBSERVE_SECONDS} s after the load is gone; after = RSS at its end; RSS sampled every 100 ms"
