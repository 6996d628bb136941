#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan+UBSan) in build-fuzz/ and
# runs each on a copy of its seed corpus, then prints executions and
# findings per target.
#   scripts/fuzz.sh                 # 60 seconds per target
#   scripts/fuzz.sh 600             # 600 seconds per target
#   scripts/fuzz.sh -runs=10000000  # 10 million executions per target
#   scripts/fuzz.sh 60 fuzz_tmpl    # only the named targets
# Environment: FUZZ_JOBS=2 runs two targets at a time (default 1);
# FUZZ_WORK=DIR holds the corpora and findings (default /tmp/triggerd-fuzz);
# CC overrides the compiler (default clang).
# New inputs stay in FUZZ_WORK, never in tests/fuzz/corpus/. A finding is a
# crash-/leak-/timeout-/oom- file in FUZZ_WORK/<target>/findings/ (reproduce
# with build-fuzz/<target> FILE) or a FUZZ_NOTE line in FUZZ_WORK/<target>.log;
# slow-unit- files (an input that once took over 10 s) are listed only.
# Exits 1 if any target found anything.
set -euo pipefail
cd "$(dirname "$0")/.."

all="fuzz_config fuzz_event fuzz_rules fuzz_tmpl"
limit=(-max_total_time=60)
case "${1:-}" in
-runs=[0-9]*) limit=("$1"); shift ;;
[0-9]*) limit=(-max_total_time="$1"); shift ;;
-h | --help) sed -n '2,16p' "$0"; exit 0 ;;
esac
targets="${*:-$all}"
for t in $targets; do
	case " $all " in *" $t "*) ;; *) echo "unknown target $t (have: $all)" >&2; exit 2 ;; esac
done
work="${FUZZ_WORK:-/tmp/triggerd-fuzz}"
jobs="${FUZZ_JOBS:-1}"
cc="${CC:-clang}"
dir=build-fuzz

# build-fuzz/ is this script's: one configured with another compiler cannot
# be switched to clang, so it is started afresh.
if [ -f "$dir/CMakeCache.txt" ] &&
	! grep -q "^CMAKE_C_COMPILER:.*clang" "$dir/CMakeCache.txt"; then
	echo "fuzz.sh: $dir was configured without clang; reconfiguring it"
	rm -rf "$dir"
fi
CC="$cc" cmake -S . -B "$dir" -DTRIGGERD_FUZZ=ON -DTRIGGERD_SANITIZE=address \
	-DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
# shellcheck disable=SC2086 # one word per target
cmake --build "$dir" -j2 --target $targets

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

# Runs target $1 on a fresh copy of its corpus; the log is $work/$1.log.
run_one() {
	local t="$1" w="$work/$1"
	rm -rf "$w"
	mkdir -p "$w/corpus" "$w/findings"
	cp tests/fuzz/corpus/"$t"/* "$w/corpus/"
	local dict=()
	[ -f "tests/fuzz/$t.dict" ] && dict=(-dict="tests/fuzz/$t.dict")
	# stdin from /dev/null: a config may name /dev/stdin as a secret file.
	"$dir/$t" "${limit[@]}" "${dict[@]}" -timeout=25 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$w/findings/" \
		"$w/corpus" </dev/null >"$work/$t.log" 2>&1 || true
}

mkdir -p "$work"
start=$(date +%s)
running=0
for t in $targets; do
	echo "fuzz.sh: running $t (${limit[*]}), log $work/$t.log"
	run_one "$t" &
	running=$((running + 1))
	if [ "$running" -ge "$jobs" ]; then
		wait -n
		running=$((running - 1))
	fi
done
wait

status=0
printf '\n%-12s %14s %8s %10s %7s  %s\n' target executions seconds exec/s corpus findings
for t in $targets; do
	log="$work/$t.log"
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
	secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)
	ncorpus=$(find "$work/$t/corpus" -type f | wc -l)
	found=$(find "$work/$t/findings" -type f ! -name 'slow-unit-*' | wc -l)
	slow=$(find "$work/$t/findings" -type f -name 'slow-unit-*' | wc -l)
	notes=$(grep -c '^FUZZ_NOTE' "$log" || true)
	what="none"
	if [ "$found" -gt 0 ] || [ "$notes" -gt 0 ] || [ -z "$execs" ]; then
		status=1
		what="$found file(s) in $work/$t/findings, $notes note(s); see $log"
	fi
	# An input that once took over 10 s: on a busy machine often a stall,
	# so it is listed, not failed; time it again with $dir/$t FILE.
	[ "$slow" -eq 0 ] || what="$what; $slow slow unit(s) in $work/$t/findings"
	printf '%-12s %14s %8s %10s %7s  %s\n' "$t" "${execs:-?}" "${secs:-?}" \
		"${rate:-?}" "$ncorpus" "$what"
done
echo "fuzz.sh: $(($(date +%s) - start)) s in all"
grep -h '^FUZZ_NOTE' "$work"/*.log 2>/dev/null | sort -u || true
exit "$status"
