# Splits hot_sass.sh's per-instruction CSV into where warps wait: stall samples summed per
# instruction class (barrier waits, MMA waits, named barriers, memory, ...), top lines each.
import csv, re, sys
from collections import defaultdict
rows = list(csv.reader(open(sys.argv[1])))
head = next(i for i, r in enumerate(rows) if any("Source" in c for c in r))
cols, body = rows[head], rows[head + 1:]
src = next(j for j, c in enumerate(cols) if "Source" in c)
st = next(j for j, c in enumerate(cols) if c.startswith("Warp Stall Sampling (All"))
def val(r):
    try: return float(r[st].replace(",", ""))
    except ValueError: return 0.0
classes = [("mbarrier try_wait (+its branch)", r"TRYWAIT|BRA"), ("wgmma wait", r"WARPGROUP.DEPBAR"),
           ("wgmma issue", r"GMMA|WARPGROUP.ARRIVE"), ("named barrier", r"BAR\.(SYNC|ARV)"),
           ("shared/global memory", r"LDS|STS|LDG|LDSM|STSM|ST\.|LD\.|UTMA|LDGSTS|SYNCS"),
           ("other", r".")]
total, per = 0.0, defaultdict(float)
for r in body:
    v = val(r); total += v
    for name, pat in classes:
        if re.search(pat, r[src]): per[name] += v; break
for name, _ in classes:
    print("%-34s %6.1f %%" % (name, 100 * per[name] / max(total, 1)))
