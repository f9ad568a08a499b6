# Lab: REF's version of every file under src/, include/ and tests/ that differs from the
# working tree, as an overlay in dev/cuda/variants/NAME/ (one of dev/cuda/ab_variants.sh's
# variants; the working tree is the variant "tree"). Run here, before the device call; delete
# the overlays afterwards (they are not ignored, so that the device copy carries them). A file
# the working tree has and REF lacks stays in the variant (an overlay cannot delete).
#   bash dev/cuda/ab_prepare.sh main main            # working tree = a branch: main as a variant
#   bash dev/cuda/ab_prepare.sh v10-weight-words v10 # working tree = main: v10 as a variant
set -eu
ref=${1:?usage: ab_prepare.sh REF NAME}
cd "$(dirname "$0")/../.."
dest=dev/cuda/variants/${2:?usage: ab_prepare.sh REF NAME}
rm -rf "$dest"
git diff --name-only "$ref" -- src include tests | while read -r f; do
  if git cat-file -e "$ref:$f" 2>/dev/null; then
    mkdir -p "$dest/$(dirname "$f")"
    git show "$ref:$f" > "$dest/$f"
    echo "$dest: $f ($ref)"
  else
    echo "$dest: $f is not in $ref (stays as in the tree)"
  fi
done
