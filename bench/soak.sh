#!/bin/sh
# The crash soak: the crash-recovery test (tests/crash) run ITERATIONS times with ROUNDS SIGKILLs
# each, every kill at a random moment under a mixed load (default 15 x 20 = 300 kills). Each
# iteration checks every acknowledged instance: it ends as expected, no step succeeded twice,
# compensations ran once each in reverse order. Prints one line per iteration and a summary.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
ITERATIONS=${ITERATIONS:-15}
ROUNDS=${ROUNDS:-20}
passed=0
i=1
while [ "$i" -le "$ITERATIONS" ]; do
  seed=$(date +%s%N)
  if SAGA_BUILD_DIR=$BUILD SAGA_SOURCE_DIR=$ROOT SAGA_CRASH_ROUNDS=$ROUNDS SAGA_CRASH_SEED=$seed \
      /usr/bin/python3 -m pytest -q -p no:cacheprovider "$ROOT/tests/crash/test_crash_recovery.py" \
      >/tmp/saga-soak-$$.log 2>&1; then
    passed=$((passed + 1))
    echo "iteration $i (seed $seed): $ROUNDS kills, every acknowledged instance checked: ok"
  else
    echo "iteration $i (seed $seed): FAILED"
    cat /tmp/saga-soak-$$.log
  fi
  i=$((i + 1))
done
rm -f /tmp/saga-soak-$$.log
echo "soak: $passed of $ITERATIONS iterations passed, $((ITERATIONS * ROUNDS)) SIGKILLs in all"
[ "$passed" -eq "$ITERATIONS" ]
