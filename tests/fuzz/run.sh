#!/usr/bin/env bash
# Run the fuzz harnesses on the sanitizer build (make fuzz builds it first): run.sh SECONDS [HARNESS...].
# SECONDS is shared out between the harnesses (all of them when none is named). Inputs that find new coverage go
# to build/fuzz/corpus/<harness> (the committed seeds in tests/fuzz/corpus/<harness> are only read); a crash or a
# disagreement with the Python path is written to build/fuzz/findings/ and the script exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
seconds=${1:-60}
shift || true
harnesses=("$@")
[ ${#harnesses[@]} -gt 0 ] || harnesses=(otlp otlp_json otlp_messages rows)
each=$((seconds / ${#harnesses[@]}))
[ "$each" -gt 0 ] || each=1

# libFuzzer and the ASan/UBSan runtime in one library (atheris ships it), preloaded so that the instrumented
# extensions find them; CPython's own allocations through malloc, so ASan sees the objects the extensions fill;
# CPython's leaks at exit are not ours.
runtime=$("$PY" -c 'import atheris, os; print(os.path.join(atheris.path(), "asan_with_fuzzer.so"))')
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:detect_stack_use_after_return=1:strict_string_checks=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export PYTHONMALLOC=malloc PYTHONPATH=. PYTHONHASHSEED=0

mkdir -p build/fuzz/findings
status=0
for harness in "${harnesses[@]}"; do
    mkdir -p "build/fuzz/corpus/$harness"
    # the committed seeds and the inputs of past findings (tests/fuzz/regressions) are replayed first, every run
    seeds=("tests/fuzz/corpus/$harness")
    [ -d "tests/fuzz/regressions/$harness" ] && seeds+=("tests/fuzz/regressions/$harness")
    end=$((SECONDS + each))
    while [ $((end - SECONDS)) -gt 0 ]; do
        echo "fuzz: $harness for $((end - SECONDS))s" >&2
        rc=0
        LD_PRELOAD="$runtime" "$PY" -m "tests.fuzz.fuzz_$harness" "build/fuzz/corpus/$harness" "${seeds[@]}" \
            -max_total_time=$((end - SECONDS)) -max_len=16384 -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 \
            -artifact_prefix="build/fuzz/findings/$harness-" || rc=$?
        [ "$rc" -eq 0 ] || status=$rc
        # FUZZ_KEEP_GOING (long runs): after a finding, go on fuzzing (the corpus kept) until the time is up
        [ "$rc" -ne 0 ] && [ -n "${FUZZ_KEEP_GOING:-}" ] || break
    done
done
exit "$status"
