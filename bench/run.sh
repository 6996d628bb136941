#!/usr/bin/env bash
# Builds triggerd (Release) and the benchmark helpers, then runs
# bench/run.py: one run, triggerd side by side with its peers, a table of
# figures and ratios. Not a test: it prints, it does not pass or fail.
#   bench/run.sh                      # full run (about 5 minutes)
#   BENCH_SECONDS=5 EVENTS_TOTAL=0 bench/run.sh   # quick
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh wrk webhook
cmake -S . -B build-rel -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-rel -j"$(nproc)" --target triggerd bench_ceiling bench_sink bench_curlloop bench_config
exec python3 bench/run.py build-rel
