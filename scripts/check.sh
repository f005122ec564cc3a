#!/usr/bin/env bash
# check.sh — build and run hetmem's whole test suite, as CI does (.ci/run).
#
# Usage: scripts/check.sh [--quick] [--no-lint] [--no-sanitize] [--no-fuzz]
#   stages, in order:
#   1. build   build/ci: RelWithDebInfo, warnings as errors; ctest: unit, golden, packaging, bench
#              smoke, and the VM tests (a real 6.12 kernel under QEMU per topology; needs
#              scripts/setup.sh --vm; they fail, never pass silently, when QEMU cannot run)
#   2. lint    clang-format --dry-run --Werror, clang-tidy with warnings as errors
#   3. asan    build/asan: ASan+UBSan; ctest -L unit
#      tsan    build/tsan: ThreadSanitizer; ctest -L unit (both skipped by --no-sanitize)
#   4. fuzz    build/fuzz (clang, libFuzzer): each parser of the fuzz target for HETMEM_FUZZ_SECONDS
#              (default 10) s; then counts the inputs that would grow the committed corpus
#              (libFuzzer's merge: new coverage only), which HETMEM_FUZZ_SAVE=1 adds to it
#   --quick runs stage 1 only, without the VM tests. Needs the packages of scripts/setup.sh --vm.
# Exit status: 0 when every stage passed; otherwise that of the first failing stage.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
jobs=${HETMEM_JOBS:-2}
lint=1 sanitize=1 fuzz=1
for arg in "$@"; do
  case "$arg" in
    --quick) lint=0 sanitize=0 fuzz=0 ;;
    --no-lint) lint=0 ;;
    --no-sanitize) sanitize=0 ;;
    --no-fuzz) fuzz=0 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "check.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done
gen=(-G Ninja); command -v ninja >/dev/null || gen=()
stage() { printf '\n=== %s ===\n' "$*"; }
total_passed=0 total_failed=0
# run_ctest DIR ARGS...: ctest with its output shown, and its counts added to the totals.
run_ctest() {
  local dir=$1 log rc=0; shift
  log=$(mktemp)
  (cd "$dir" && ctest "$@") 2>&1 | tee "$log" || rc=$?
  local line; line=$(grep -E '[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -1)
  rm -f "$log"
  if [ -n "$line" ]; then
    local failed total
    failed=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$line")
    total=$(sed -E 's/.* failed out of ([0-9]+).*/\1/' <<<"$line")
    total_passed=$((total_passed + total - failed)); total_failed=$((total_failed + failed))
  fi
  if [ "$rc" != 0 ]; then echo "check: $total_passed passed, $total_failed failed"; exit "$rc"; fi
}
started=$SECONDS
summary=()

stage "build + test (warnings as errors)"
cmake -S . -B build/ci "${gen[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHETMEM_WERROR=ON >/dev/null
cmake --build build/ci -j "$jobs"
vm_filter=(); [ "$lint$sanitize$fuzz" = 000 ] && vm_filter=(-LE vm)
run_ctest build/ci -j "$jobs" --output-on-failure "${vm_filter[@]}"
summary+=("build+test: passed")

if [ "$lint" = 1 ]; then
  stage "lint: clang-format, clang-tidy"
  mapfile -t sources < <(git ls-files '*.cpp' '*.hpp' '*.h' '*.c')
  clang-format --dry-run --Werror "${sources[@]}"
  mapfile -t units < <(git ls-files 'sysfs-reader/*.cpp' 'src/*.cpp' 'examples/*.cpp' 'bench/*.cpp')
  tidy_rc=0
  printf '%s\n' "${units[@]}" | xargs -P "$jobs" -n 4 clang-tidy -p build/ci --quiet > build/ci/clang-tidy.log 2>&1 || tidy_rc=$?
  # Findings inside system headers (the analyzer follows paths into them) are not ours.
  if grep -E 'warning:|error:' build/ci/clang-tidy.log | grep -qv '^/usr/' ||
     { [ "$tidy_rc" != 0 ] && ! grep -E 'warning:|error:' build/ci/clang-tidy.log | grep -q '^/usr/'; }; then
    grep -vE '^[0-9]+ warnings? (and [0-9]+ errors? )?generated|^Suppressed|^Use -header-filter' build/ci/clang-tidy.log
    echo "clang-tidy found problems (exit $tidy_rc)"; exit 1
  fi
  summary+=("lint: passed")
fi

if [ "$sanitize" = 1 ]; then
  stage "ASan + UBSan build + unit tests"
  cmake -S . -B build/asan "${gen[@]}" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS=-O1 -DHETMEM_WERROR=ON \
        -DHETMEM_SANITIZE=address,undefined -DHETMEM_BUILD_BENCH=OFF >/dev/null
  cmake --build build/asan -j "$jobs"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    run_ctest build/asan -j "$jobs" -L unit --output-on-failure
  summary+=("asan+ubsan: passed")

  stage "TSan build + unit tests"
  # The preload's checks are off in sanitizer builds (its runtime would have to come first).
  cmake -S . -B build/tsan "${gen[@]}" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS=-O1 -DHETMEM_WERROR=ON \
        -DHETMEM_SANITIZE=thread -DHETMEM_BUILD_BENCH=OFF >/dev/null
  cmake --build build/tsan -j "$jobs"
  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 run_ctest build/tsan -j "$jobs" -L unit --output-on-failure
  summary+=("tsan: passed")
fi

if [ "$fuzz" = 1 ]; then
  fuzz_parsers=$(sed -n 's/^constexpr unsigned parser_count = \([0-9]*\);/\1/p' tests/fuzz/fuzz_parsers.cpp)
  stage "fuzz (libFuzzer, ${HETMEM_FUZZ_SECONDS:-10} s for each of the $fuzz_parsers parsers)"
  # Everything instrumented for coverage, so the fuzzer sees inside the parsers.
  cmake -S . -B build/fuzz "${gen[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_C_COMPILER=clang \
        -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link,address,undefined" -DHETMEM_BUILD_FUZZERS=ON \
        -DHETMEM_BUILD_TESTS=OFF -DHETMEM_BUILD_CLI=OFF -DHETMEM_BUILD_BENCH=OFF -DHETMEM_BUILD_EXAMPLES=OFF >/dev/null
  cmake --build build/fuzz -j "$jobs" --target fuzz_parsers
  work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
  # One run per parser (HETMEM_FUZZ_PARSER), each with its own time budget, seeded with the
  # whole committed corpus (read-only seed material; new inputs go to a scratch corpus).
  for ((n = 0; n < fuzz_parsers; n++)); do
    mkdir -p "$work/$n"
    if ! HETMEM_FUZZ_PARSER=$n build/fuzz/tests/fuzz_parsers -max_total_time="${HETMEM_FUZZ_SECONDS:-10}" -timeout=5 \
           -rss_limit_mb=1024 -print_final_stats=1 -artifact_prefix="$root/build/fuzz/" "$work/$n" tests/fuzz/corpus \
           > "$work/log" 2>&1; then
      tail -30 "$work/log"
      echo "fuzzing parser $n found a crash: the input is in build/fuzz/crash-* (replay it with HETMEM_FUZZ_PARSER=$n;"
      echo "for the corpus, make its first byte select parser $n); fix it and add the input to tests/fuzz/corpus/"
      exit 1
    fi
    printf 'parser %2d: %s runs, %s coverage points\n' "$n" "$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log")" \
      "$(grep -o 'cov: [0-9]*' "$work/log" | tail -1 | cut -d' ' -f2)"
    # This run's inputs, their first byte set to pick parser n as the committed corpus's do.
    mkdir -p "$work/found"
    for f in "$work/$n"/*; do
      [ -f "$f" ] || continue
      { printf "\\$(printf '%03o' "$n")"; tail -c +2 "$f"; } > "$work/found/$n-$(basename "$f")"
    done
  done
  # The corpus grows, minimized: libFuzzer's merge keeps only the inputs that reach coverage the
  # committed corpus does not. Counted here; HETMEM_FUZZ_SAVE=1 adds them to tests/fuzz/corpus/.
  mkdir -p "$work/grown"
  cp tests/fuzz/corpus/* "$work/grown/"
  before=$(ls "$work/grown" | wc -l)
  build/fuzz/tests/fuzz_parsers -merge=1 -timeout=5 -rss_limit_mb=1024 "$work/grown" "$work/found" > "$work/merge.log" 2>&1 ||
    { tail -20 "$work/merge.log"; echo "the corpus merge failed"; exit 1; }
  grown=$(( $(ls "$work/grown" | wc -l) - before ))
  if [ "${HETMEM_FUZZ_SAVE:-0}" = 1 ] && [ "$grown" -gt 0 ]; then
    for f in "$work/grown"/*; do [ -e "tests/fuzz/corpus/$(basename "$f")" ] || cp "$f" "tests/fuzz/corpus/found-$(basename "$f")"; done
    echo "corpus: $grown input(s) with new coverage added to tests/fuzz/corpus/ (commit them)"
  else
    echo "corpus: $grown input(s) of this run reach coverage the committed corpus does not (HETMEM_FUZZ_SAVE=1 adds them)"
  fi
  summary+=("fuzz: passed")
fi

stage "summary ($((SECONDS - started)) s)"
printf '%s\n' "${summary[@]}"
echo "check: $total_passed passed, $total_failed failed"
