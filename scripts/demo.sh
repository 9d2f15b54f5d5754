#!/usr/bin/env bash
# The README's first command: trains the demo model (configs/demo.py) on the embedded,
# synthesized corpus (no download; minutes on a CPU), then generates clips from its last
# checkpoint into the run, whose gallery page (WORKDIR/gallery/index.html) then lists them.
#
#   scripts/demo.sh [--dry_run] [WORKDIR] [FLAG...]
#
#   WORKDIR    where the run goes (default: runs/demo); an existing one is resumed
#   FLAG...    more samplernn-train flags, e.g. --config.train.num_epochs=2
#   --dry_run  print the two commands instead of running them
#
# Needs the package installed (pip install -e .), so that samplernn-train and
# samplernn-generate are on the PATH.
set -euo pipefail

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; }
fail() { echo "scripts/demo.sh: $*" >&2; exit 2; }

dry_run=false
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  --dry_run) dry_run=true; shift ;;
esac
workdir=runs/demo
if [ $# -ge 1 ] && [ "${1#--}" = "$1" ]; then workdir=$1; shift; fi
repo=$(cd "$(dirname "$0")/.." && pwd)
for program in samplernn-train samplernn-generate; do
  command -v "$program" >/dev/null || fail "no $program on the PATH: pip install -e '$repo' first."
done

train=(samplernn-train "--config=$repo/configs/demo.py" "--workdir=$workdir" "$@")
generate=(samplernn-generate "--workdir=$workdir" "--output=$workdir/out.wav" --num_seqs=4
          --duration=5)
if $dry_run; then
  printf '%q ' "${train[@]}"; echo
  printf '%q ' "${generate[@]}"; echo
else
  "${train[@]}" && "${generate[@]}"
  echo "Clips and their gallery: $workdir/gallery/index.html"
fi
