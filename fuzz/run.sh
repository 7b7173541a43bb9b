#!/usr/bin/env bash
# Run fuzz targets one at a time: fuzz/run.sh SECONDS [TARGET...] (default: every target).
# Each target runs for SECONDS over its corpus (fuzz/corpus/TARGET, kept between runs and not
# committed) and its committed seeds (fuzz/seeds/TARGET), one libFuzzer job. A line per target
# goes to stdout: target, seconds, executions, result. Exits non-zero when any target finds a
# crash; the input is in fuzz/artifacts/TARGET/ (`cargo fuzz tmin TARGET FILE` minimises it).
#
# Flags: cargo-fuzz passes -Z options (sanitizer, sancov), so a stable toolchain needs
# RUSTC_BOOTSTRAP=1. `-a` keeps debug assertions and overflow checks on, so arithmetic overflow
# is a crash. FUZZ_BUILD_FLAGS adds cargo-fuzz build options (e.g. `-s none` for speed).
set -euo pipefail
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
secs=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
if [ $# -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(cargo fuzz list); fi
# shellcheck disable=SC2086
cargo fuzz build -a ${FUZZ_BUILD_FLAGS:-}
failed=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "seeds/$t"
  log=$(mktemp)
  # shellcheck disable=SC2086
  if cargo fuzz run -a ${FUZZ_BUILD_FLAGS:-} "$t" "corpus/$t" "seeds/$t" -- \
      -max_total_time="$secs" -print_final_stats=1 -max_len=8192 \
      -rss_limit_mb=2048 -timeout=10 >"$log" 2>&1; then
    result=ok
  else
    result=CRASH
    failed=1
    grep -E "^==|panicked|Test unit written|SUMMARY" "$log" | head -20 >&2 || true
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  echo "$t ${secs}s execs=${execs:-?} $result"
  rm -f "$log"
done
exit "$failed"
