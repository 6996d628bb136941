#!/usr/bin/env bash
# Builds triggerd and runs every test (unit and integration) with ctest.
#   scripts/test.sh                  # build in build/, run all tests
#   scripts/test.sh --werror         # warnings are errors (CI)
#   scripts/test.sh --sanitize address|thread   # in build-asan/ or build-tsan/
set -euo pipefail
cd "$(dirname "$0")/.."

werror=OFF
sanitize=""
dir=build
while [ $# -gt 0 ]; do
	case "$1" in
	--werror) werror=ON ;;
	--sanitize) sanitize="$2"; shift ;;
	*) echo "usage: scripts/test.sh [--werror] [--sanitize address|thread]" >&2; exit 2 ;;
	esac
	shift
done
case "$sanitize" in
"") ;;
address) dir=build-asan ;;
thread)
	dir=build-tsan
	# A data race stops the daemon at once, so the test that saw it fails;
	# TSan-instrumented processes are slower, so waits are scaled.
	export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1}"
	export TRIGGERD_IT_SLOW="${TRIGGERD_IT_SLOW:-3}"
	;;
*) echo "--sanitize takes address or thread" >&2; exit 2 ;;
esac

scripts/deps.sh
cmake -S . -B "$dir" -DTRIGGERD_WERROR="$werror" -DTRIGGERD_SANITIZE="$sanitize" >/dev/null
cmake --build "$dir" -j"$(nproc)"
cd "$dir"
ctest --output-on-failure -j2
