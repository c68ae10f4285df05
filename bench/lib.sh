# Sourced by the benchmarks: the end-to-end harness (tests/e2e/env.sh) plus
# timing helpers.
source "$(dirname "${BASH_SOURCE[0]}")/../tests/e2e/env.sh"
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
now() { date +%s.%N; }
# ratio A B: A / B with three decimals ("inf" if B is 0).
ratio() { python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print(f'{a / b:.3f}' if b else 'inf')" "$1" "$2"; }
# data_files DIR MIB COUNT: COUNT files of MIB/COUNT MiB each in DIR
# (blob00.bin, ...): random 4 KiB blocks repeated in a shifting order, so
# gzip has work to do but the bytes are not all alike.
data_files() {
  mkdir -p "$1"
  python3 - "$1" "$2" "$3" <<'PY'
import os, sys
blocks = [os.urandom(2048) * 2 for _ in range(256)]
d, mib, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
per_file = mib * 256 // count
for f in range(count):
    with open(f"{d}/blob{f:02d}.bin", "wb") as out:
        for i in range(per_file):
            out.write(blocks[(i * 7919 + f) % 256])
PY
}
