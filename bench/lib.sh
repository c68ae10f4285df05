# Sourced by the benchmarks: the end-to-end harness (tests/e2e/env.sh) plus
# timing helpers.
source "$(dirname "${BASH_SOURCE[0]}")/../tests/e2e/env.sh"
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
now() { date +%s.%N; }
# ratio A B: A / B with three decimals ("inf" if B is 0).
ratio() { python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print(f'{a / b:.3f}' if b else 'inf')" "$1" "$2"; }
