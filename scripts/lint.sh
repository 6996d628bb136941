#!/usr/bin/env bash
# Static analysis of src/: clang-tidy (checks in .clang-tidy) and cppcheck.
#   scripts/lint.sh            # both; exits 1 on any finding
#   scripts/lint.sh src/core/tmpl.c # clang-tidy and cppcheck on some files only
# clang-tidy reads the compile flags from build-lint/compile_commands.json,
# which CMake writes at configure time (clang, so that its flags are
# clang's); nothing is built. Findings are printed as FILE:LINE:COL:
# message [check], then counted per check.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=build-lint
for tool in clang-tidy cppcheck; do
	command -v "$tool" >/dev/null || { echo "lint.sh: $tool is not installed (apt-get install clang-tidy cppcheck)" >&2; exit 2; }
done
CC="${CC:-clang}" cmake -S . -B "$dir" -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >/dev/null
if [ $# -gt 0 ]; then
	files=("$@")
else
	mapfile -t files < <(find src -name "*.c" | sort)
fi

out=$(mktemp)
trap 'rm -f "$out"' EXIT
status=0

echo "lint.sh: clang-tidy on ${#files[@]} files"
# One process per file, two at a time (this machine has two cores).
printf '%s\n' "${files[@]}" |
	xargs -P 2 -I{} clang-tidy -p "$dir" --config-file=.clang-tidy --quiet {} 2>/dev/null |
	grep -E '^[^ ].*:[0-9]+:[0-9]+: (warning|error): ' | sort -u >"$out" || true
tidy=$(wc -l <"$out")
cat "$out"
if [ "$tidy" -gt 0 ]; then
	status=1
	echo "lint.sh: clang-tidy: $tidy finding(s), by check:"
	sed -n 's/.*\[\([^]]*\)\]$/\1/p' "$out" | sort | uniq -c | sort -rn
fi

echo "lint.sh: cppcheck"
if ! cppcheck --enable=warning,performance,portability --error-exitcode=1 \
	--inline-suppr --quiet --std=c11 \
	--template='{file}:{line}:{column}: {severity}: {message} [{id}]' \
	-I include "${files[@]}" 2>"$out"; then
	status=1
fi
cat "$out"
cpp=$(grep -c ': \(error\|warning\|performance\|portability\|style\): ' "$out" || true)
[ "$cpp" -eq 0 ] || { status=1; echo "lint.sh: cppcheck: $cpp finding(s)"; }

[ "$status" -eq 0 ] && echo "lint.sh: clean"
exit "$status"
