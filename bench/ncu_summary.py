#!/usr/bin/env python3
"""Sum an Nsight Compute CSV (gpu__time_duration) by kernel name and grid."""
import csv, collections, sys
rows = list(csv.reader(open(sys.argv[1])))
h = next(i for i, r in enumerate(rows) if "Kernel Name" in r)
hdr = rows[h]; ki = hdr.index("Kernel Name"); vi = hdr.index("Metric Value"); ui = hdr.index("Metric Unit")
tot = collections.defaultdict(float); cnt = collections.Counter()
for r in rows[h + 1:]:
    if len(r) != len(hdr): continue
    v = float(r[vi].replace(",", "")); u = r[ui]
    v = v / 1e3 if u in ("nsecond", "ns") else v * (1e3 if u in ("msecond", "ms") else 1)
    name = r[ki].split("(")[0][:40] + " " + r[hdr.index("Grid Size")]
    tot[name] += v; cnt[name] += 1
s = sum(tot.values())
for k, v in sorted(tot.items(), key=lambda kv: -kv[1]):
    print("%-50s n=%4d total %8.1f us  mean %7.2f us  %4.1f%%" % (k, cnt[k], v, v / cnt[k], 100 * v / s))
print("sum %.1f us over %d kernels" % (s, sum(cnt.values())))
