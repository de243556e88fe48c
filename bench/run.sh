#!/usr/bin/env bash
# Side-by-side benchmarks. Usage: bench/run.sh l4
# (BenchmarkDotNet micro-benchmarks: dotnet run -c Release --project bench/Ambient.Bench -- --filter '*')
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
case "${1:-}" in
    l4) shift; exec bash "$here/l4/l4.sh" "$@" ;;
    *) echo "usage: bench/run.sh l4   (direct vs ztunnel pair vs haproxy mTLS pair; table + bench/results/l4-<date>.json)" >&2; exit 2 ;;
esac
