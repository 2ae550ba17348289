#!/usr/bin/env bash
# Fuzzes the architecture-string and space-file parsers with cargo-fuzz (libFuzzer) for a
# bounded time per target; see docs/cluster.md, "Fuzzing the parsers".
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]    (default: 60 s each; arch space_file)
#
# The corpus grows in tests/fuzz/corpus/TARGET (ignored by git), seeded from the committed
# tests/fuzz/seeds/TARGET. Exits non-zero when a target crashes (a broken invariant, a panic, a
# timeout or running out of memory) and says where the input was saved.
#
#   DONNA_FUZZ_SANITIZER=none (default) | address   the sanitizer cargo-fuzz builds with
#   DONNA_FUZZ_DEBUG_ASSERTIONS=1 (default) | 0      overflow checks and debug assertions;
#                                                    0 fuzzes past an arithmetic overflow
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

seconds="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(arch space_file)
case "$seconds" in
    '' | *[!0-9]*) echo "fuzz.sh: SECONDS_PER_TARGET must be a whole number, not \`$seconds\`" >&2; exit 2 ;;
esac

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

# cargo-fuzz passes -Z flags to rustc; this lets the stable toolchain accept them.
export RUSTC_BOOTSTRAP=1
# The parsers are safe Rust, so the address sanitizer adds little but a slower build and run.
# Overflow checks and debug assertions (-a) are on unless DONNA_FUZZ_DEBUG_ASSERTIONS=0: an
# overflow is a crash here, where a release build would go on with a wrong number.
sanitizer="${DONNA_FUZZ_SANITIZER:-none}"
fuzz="$PWD/tests/fuzz"
flags=(--fuzz-dir "$fuzz" --sanitizer "$sanitizer")
if [ "${DONNA_FUZZ_DEBUG_ASSERTIONS:-1}" = 0 ]; then flags+=(--release); else flags+=(--debug-assertions); fi

cargo fuzz build "${flags[@]}"

failed=()
for target in "${targets[@]}"; do
    mkdir -p "$fuzz/corpus/$target" "$fuzz/artifacts/$target"
    marker="$(mktemp)"
    log="$fuzz/artifacts/$target/last-run.log"
    echo "fuzz.sh: $target for ${seconds} s" >&2
    # -timeout: an input that takes 10 s is a finding (a parser must refuse quickly), as is
    # one that needs more than 2 GB (-rss_limit_mb).
    set +e
    cargo fuzz run "${flags[@]}" "$target" "$fuzz/corpus/$target" "$fuzz/seeds/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -dict="$fuzz/dict/$target.dict" -print_final_stats=1 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
    crashes="$(find "$fuzz/artifacts/$target" -type f -newer "$marker" ! -name last-run.log)"
    rm -f "$marker"
    if [ "$rc" -ne 0 ] || [ -n "$crashes" ]; then
        failed+=("$target")
        echo "fuzz.sh: $target FAILED (exit $rc); log: $log" >&2
        for f in $crashes; do
            echo "  input saved in $f; reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run ${flags[*]} $target $f" >&2
        done
    else
        execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)"
        echo "fuzz.sh: $target ok: ${execs:-?} executions in ${seconds} s, corpus $fuzz/corpus/$target" >&2
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz.sh: crashes in: ${failed[*]}" >&2
    exit 1
fi
