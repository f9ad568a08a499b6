# Lab: dev/cuda/ab_variants.sh's timing files (its $OUT/ab-timings-*.txt) as one JSON for
# bench/results/, each point with every round's eager and replayed median per variant.
#   python3 dev/cuda/ab_json.py OUT.json COMMIT CARD "what was compared, the call, the outcome" \
#       tree=branch-name,main=main-abc1234 ab-timings-*.txt
# The third argument names the variants as the JSON should (tree is the working tree's).
import collections, datetime, json, re, sys

if len(sys.argv) < 7:
    sys.exit("usage: ab_json.py OUT.json COMMIT CARD WHAT NAMES TIMINGS...")
out, commit, card, what, names = sys.argv[1:6]
rename = dict(kv.split("=", 1) for kv in names.split(",") if kv)
runs, cur = collections.OrderedDict(), None
for path in sys.argv[6:]:
    for line in open(path):
        m = re.match(r"(\S+) (grouped|layer) +(\S+) +n=(\d+) +([\d.]+) us", line)
        if m:
            cur = (m[2], m[3], int(m[4]), rename.get(m[1], m[1]))
            runs.setdefault(cur, ([], []))[0].append(float(m[5]))
        elif cur and (m := re.match(r"\S+ +replayed: +([\d.]+) us", line)):
            runs[cur][1].append(float(m[1]))
points = [dict(op=k[0], shape=k[1], tokens=k[2], variant=k[3], eager_us_rounds=e,
               replayed_us_rounds=r) for k, (e, r) in runs.items()]
doc = dict(card=card, commit=commit, date=datetime.date.today().isoformat(), what=what,
           points=points)
with open(out, "w") as f:
    json.dump(doc, f, indent=1)
print("%s: %d points" % (out, len(points)))
