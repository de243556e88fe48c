#!/usr/bin/env bash
# bench/run.sh kube-scale: istiod-lite --config-source kubernetes against the fake API server (tests/Ambient.TestCommon/Kube)
# holding 10,000 pods and 1,000 services (KUBE_SCALE_PODS / KUBE_SCALE_SERVICES / KUBE_SCALE_UPDATES to change).
# Reports the initial sync (process start to serving), istiod-lite's RSS, and P50/P99 from a pod update entering the
# API server's watch to the ztunnel xDS push reaching a client. Targets: sync < 5 s, push P99 < 100 ms.
# Writes bench/results/kube-scale-<date>.json. istiod-lite runs as its own process, killed by pid on exit.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
for project in istiod-lite/Ambient.Istiod bench/Ambient.Bench; do
    dotnet build -c Release --nologo -v q "$project" >/dev/null || dotnet build -c Release --nologo "$project"
done
mkdir -p bench/results
out="bench/results/kube-scale-$(date -u +%Y-%m-%d-%H%M%S).json"
dotnet "bench/Ambient.Bench/bin/Release/net10.0/Ambient.Bench.dll" kube-scale \
    --istiod "istiod-lite/Ambient.Istiod/bin/Release/net10.0/istiod-lite" \
    --pods "${KUBE_SCALE_PODS:-10000}" --services "${KUBE_SCALE_SERVICES:-1000}" --updates "${KUBE_SCALE_UPDATES:-200}" \
    --out "$out"
echo "kube-scale: wrote $out" >&2
