#!/usr/bin/env bash
# Benchmarks. Usage: bench/run.sh l4 [--network netns] | l7 | memory | kube-scale
# (BenchmarkDotNet micro-benchmarks: dotnet run -c Release --project bench/Ambient.Bench -- --filter '*')
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
case "${1:-}" in
    l4) shift; exec bash "$here/l4/l4.sh" "$@" ;;
    l7) shift; exec bash "$here/l7/l7.sh" "$@" ;;
    memory) shift; exec bash "$here/memory/memory.sh" "$@" ;;
    kube-scale) shift; exec bash "$here/kube-scale/kube-scale.sh" "$@" ;;
    *) echo "usage: bench/run.sh l4       (direct vs ztunnel pair vs haproxy mTLS pair; table + bench/results/l4-<date>.json)" >&2
       echo "       bench/run.sh l4 --network netns  (root: the same, the ztunnel pair an \`ambientctl local up --network netns\` mesh measured from inside the client pod, SOCKS5 and the captured path side by side)" >&2
       echo "       bench/run.sh l7 [--runs N]  (HTTP: direct vs ztunnel -> waypoint -> ztunnel vs haproxy mode-http mTLS pair; table + bench/results/l7-<date>.json)" >&2
       echo "       bench/run.sh memory   (ztunnel / istiod-lite RSS before, peak and after load; table + bench/results/memory-<date>.json)" >&2
       echo "       bench/run.sh kube-scale  (istiod-lite on the Kubernetes API, 10,000 pods: sync, RSS, pod update -> xDS push P50/P99; bench/results/kube-scale-<date>.json)" >&2
       exit 2 ;;
esac
