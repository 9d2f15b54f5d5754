#!/usr/bin/env bash
# The full benchmark suite, this project against PRiSM SampleRNN (TF2) side by side, written
# where the results of other machines are kept. Takes an hour or more: run it on a quiet machine.
#
#   scripts/benchmark.sh [--dry_run] PRISM_DIR [NAME] [FLAG...]
#
#   PRISM_DIR  a PRiSM SampleRNN checkout at commit f05a772:
#                git clone https://github.com/rncm-prism/prism-samplernn ../prism-samplernn
#                git -C ../prism-samplernn checkout f05a772
#   NAME       the results' name (default: this host's short name and today's date, HOST_DATE):
#              writes benchmarks/results/NAME.json (machine, settings, every round) and NAME.md
#              (the table); the host's earlier results move to benchmarks/results/history/
#   FLAG...    more flags of benchmarks/run.py, e.g. --dtype=bfloat16, --configs=default,small,
#              --parts=train,generate (default: every config's train, generate and pipeline)
#   --dry_run  print the command instead of running it
#
# Needs the package with its reference extra (pip install -e '.[reference]'); $PYTHON picks the
# interpreter (default: python3). docs/benchmarks.md says what each figure means.
set -euo pipefail

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; }
fail() { echo "scripts/benchmark.sh: $*" >&2; exit 2; }

dry_run=false
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  --dry_run) dry_run=true; shift ;;
esac
[ $# -ge 1 ] || fail "no PRISM_DIR given (see --help)."
prism_dir=$1; shift
name="$(hostname -s)_$(date -u +%F)"
if [ $# -ge 1 ] && [ "${1#--}" = "$1" ]; then name=$1; shift; fi
[ -f "$prism_dir/samplernn/model.py" ] \
  || fail "$prism_dir is not a PRiSM SampleRNN checkout (no samplernn/model.py; see --help)."

repo=$(cd "$(dirname "$0")/.." && pwd)
python=$(command -v "${PYTHON:-python3}") || fail "no ${PYTHON:-python3} on the PATH."
"$python" -c 'import importlib.util as u, sys; sys.exit(not u.find_spec("tensorflow"))' \
  || fail "$python has no TensorFlow: pip install -e '$repo[reference]' first."

command=("$python" -m benchmarks.run --suite=full "--prism_dir=$(cd "$prism_dir" && pwd)"
         "--out=$repo/benchmarks/results/$name" "$@")
if $dry_run; then
  printf '%q ' "${command[@]}"; echo
  exit 0
fi
# results/ holds each host's newest run; the earlier ones of this name's host go to history/.
host=${name%%_*}
for old in "$repo"/benchmarks/results/"$host"_*.json "$repo"/benchmarks/results/"$host"_*.md; do
  [ -e "$old" ] && [ "$(basename "${old%.*}")" != "$name" ] \
    && mkdir -p "$repo/benchmarks/results/history" && mv "$old" "$repo/benchmarks/results/history/"
done
cd "$repo" && exec "${command[@]}"
