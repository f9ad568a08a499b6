# Lab: fills dev/cuda/ab_old/ (what dev/cuda/ab.sh builds as "old") with REF's version of every
# file under src/ and include/ that differs from the working tree, so a branch can be timed
# against REF in one device call. Run here, before the device call; delete ab_old afterwards
# (it is not ignored, so that the device copy carries it). A file the working tree added is
# left in the old build too (ab.sh copies ab_old over the tree and cannot delete).
#   bash dev/cuda/ab_prepare.sh main
set -eu
ref=${1:?usage: ab_prepare.sh REF}
cd "$(dirname "$0")/../.."
rm -rf dev/cuda/ab_old
git diff --name-only "$ref" -- src include | while read -r f; do
  if git cat-file -e "$ref:$f" 2>/dev/null; then
    mkdir -p "dev/cuda/ab_old/$(dirname "$f")"
    git show "$ref:$f" > "dev/cuda/ab_old/$f"
    echo "old: $f ($ref)"
  else
    echo "new only: $f (stays in the old build)"
  fi
done
