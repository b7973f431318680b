#!/usr/bin/env bash
# Runs fuzz targets and prints a table: target, seconds, executions, crashes/OOMs/timeouts.
#   fuzz/run.sh SECONDS [JOBS] [TARGET...]     e.g. fuzz/run.sh 30 (smoke), fuzz/run.sh 900 2
# Needs the nightly toolchain and cargo-fuzz (installed here if missing).
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-30}; jobs=${2:-1}; shift $(( $# > 1 ? 2 : $# ))
targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=(parse_message decrypt pipeline reply_roundtrip)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --version 0.13.2 --locked
bash seed.sh >/dev/null
mkdir -p logs
cargo +nightly fuzz build -O >/dev/null
run_one() {
  local t=$1
  # -timeout is libFuzzer's per-input hang limit (whole seconds); bench is checked by `slowest`.
  cargo +nightly fuzz run -O "$t" -- -max_total_time="$secs" -rss_limit_mb=256 -max_len=65536 \
    -timeout=2 -print_final_stats=1 >"logs/$t.log" 2>&1 && echo ok >"logs/$t.status" || echo FAIL >"logs/$t.status"
}
running=0
for t in "${targets[@]}"; do
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then wait -n; running=$((running - 1)); fi
done
wait
echo "| target | seconds | executions | exec/s | corpus | result |"
echo "|---|---|---|---|---|---|"
status=0
for t in "${targets[@]}"; do
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' || echo '?')
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' || echo '?')
  corpus=$(find "corpus/$t" -type f | wc -l)
  res=$(cat "logs/$t.status")
  if [ "$res" != ok ]; then
    status=1
    res="FAIL: $(grep -m1 -oE 'ERROR: libFuzzer: [a-z-]+|panicked at [^ ]+' "logs/$t.log" || echo see fuzz/logs/$t.log)"
  else
    res="0 crashes, 0 OOMs, 0 timeouts"
  fi
  echo "| $t | $secs | $execs | $rate | $corpus | $res |"
done
exit $status
