#!/usr/bin/env bash
# The first run on a GPU host, as one command (under 9 minutes on one GPU): records the
# environment, runs the tests that exercise the GPU, then the benchmark suite at the default and
# dim-256 (small) configs, in float32 and bfloat16, both RNN forms, with XLA's command buffers
# for while loops and conditionals and without them. Every step gets a share of the time left;
# one that runs out is stopped and the summary says so.
#
#   scripts/gpu_check.sh --out=DIR [--wheels=WHEELS] [--dry_run]
#
#   --out=DIR        where everything goes (created): env/ (nvidia-smi, JAX's environment,
#                    pip freeze), tests/*.log, bench/*.{json,md,log}, SUMMARY.md (every step
#                    with its status and time, then the tables of benchmarks/compare.py)
#   --wheels=WHEELS  for a host without network: install the package and whatever it misses
#                    from a folder of wheels (pip install --no-index --find-links WHEELS
#                    -e 'REPO[cuda12,test]'). Fill the folder on a machine with network and the
#                    same Python: pip download -d WHEELS 'REPO[cuda12,test]' setuptools wheel
#   --dry_run        the same steps on the CPU, with the tiny config and a few tests, in under a
#                    minute: checks the script, measures nothing
#
# $PYTHON picks the interpreter (default: python3). Send DIR back; SUMMARY.md says what ran.
set -euo pipefail

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }
fail() { echo "scripts/gpu_check.sh: $*" >&2; exit 2; }

out="" wheels="" dry_run=false
for arg in "$@"; do
  case "$arg" in
    -h|--help) usage; exit 0 ;;
    --out=*) out=${arg#--out=} ;;
    --wheels=*) wheels=${arg#--wheels=} ;;
    --dry_run) dry_run=true ;;
    *) fail "unknown argument $arg (see --help)." ;;
  esac
done
[ -n "$out" ] || fail "no --out=DIR given (see --help)."
[ -z "$wheels" ] || [ -d "$wheels" ] || fail "--wheels=$wheels is not a folder."
repo=$(cd "$(dirname "$0")/.." && pwd)
python=$(command -v "${PYTHON:-python3}") || fail "no ${PYTHON:-python3} on the PATH."
mkdir -p "$out"/env "$out"/tests "$out"/bench
out=$(cd "$out" && pwd)
cd "$repo"

# What runs: the real check, or its dry run on the CPU.
# Seconds: for every step (the summary comes after), the tests' share, and what each benchmark
# run leaves to each later one (0: the runs share the time left evenly).
if $dry_run; then
  budget=50 tests_budget=10 reserve_per_run=12
  extras=test
  export JAX_PLATFORMS=cpu
  tests=(tests/wavefront_test.py)
  test_selection=(-k 'auto_form_per_backend or unknown_form')
  configs=(tiny)
  parts=(train)
  bench_flags=(--suite=quick --dtype=float32 --rnn_form=auto --rounds=1)
else
  budget=510 tests_budget=120 reserve_per_run=0
  extras=cuda12,test
  # The forms' and precisions' numerics, the sampler and the model on the GPU; PRiSM parity in
  # both forms is in wavefront_test. (data_parallel_test runs forced CPU devices: not here.)
  tests=(tests/wavefront_test.py tests/precision_test.py tests/sampler_test.py
         tests/model_test.py tests/fast_paths_test.py tests/tiers_test.py)
  test_selection=()
  configs=(default small)
  parts=(train generate)
  bench_flags=(--suite=full --dtype=float32,bfloat16 --rnn_form=layered,wavefront --rounds=2)
fi
# XLA:GPU's command buffers (CUDA graphs) with and without loops and conditionals, on top of
# the defaults of the installed jaxlib ("+"/"-": add to or remove from its list).
variants=(cmdbuf_while cmdbuf_no_while)
declare -A cmdbuf=([cmdbuf_while]=+WHILE,+CONDITIONAL [cmdbuf_no_while]=-WHILE,-CONDITIONAL)

start=$SECONDS
steps="$out/steps.md"
printf '| step | status | seconds | log |\n| --- | --- | --- | --- |\n' > "$steps"
left() { echo $(( budget - (SECONDS - start) )); }
# step NAME LIMIT LOG COMMAND...: COMMAND with at most LIMIT seconds, its output in LOG.
step() {
  local name=$1 limit=$2 log=$3 rc=0 t0=$SECONDS status=ok
  shift 3
  if [ "$limit" -lt 5 ]; then
    echo "| $name | skipped: out of time | 0 | – |" >> "$steps"
    return 0
  fi
  echo "== $name (at most $limit s)"
  timeout --kill-after=10 "$limit" "$@" > "$log" 2>&1 || rc=$?
  case $rc in
    0) ;;
    124|137) status="stopped after $limit s" ;;
    *) status="failed (exit $rc): $(tail -n 1 "$log" | tr '|' '/' | cut -c1-150)" ;;
  esac
  echo "| $name | $status | $(( SECONDS - t0 )) | ${log#"$out"/} |" >> "$steps"
  echo "   $status"
}

# ----- Install (offline) and environment ------------------------------------------------------
if [ -n "$wheels" ]; then
  step "install from $wheels" 300 "$out/env/pip-install.log" \
    "$python" -m pip install --no-index --find-links "$wheels" -e "$repo[$extras]"
fi
"$python" -c 'import samplernn_jax' 2>/dev/null \
  || fail "$python cannot import samplernn_jax: pip install -e '$repo[$extras]' (or --wheels=DIR)."
if command -v nvidia-smi >/dev/null; then
  step "nvidia-smi" 30 "$out/env/nvidia-smi.txt" nvidia-smi
else
  echo "| nvidia-smi | skipped: not on the PATH | 0 | – |" >> "$steps"
fi
step "JAX environment" 60 "$out/env/jax.txt" \
  "$python" -c 'import jax; jax.print_environment_info(); print(jax.devices())'
step "pip freeze" 30 "$out/env/pip-freeze.txt" "$python" -m pip freeze
no_gpu=""
if ! $dry_run && ! "$python" -c 'import jax, sys; sys.exit(jax.default_backend() != "gpu")'; then
  no_gpu="JAX sees no GPU (env/jax.txt): pip install -e '$repo[cuda12,test]' (or --wheels)"
  echo "| GPU | $no_gpu; nothing else ran | 0 | – |" >> "$steps"
  tests=() parts=()
fi

# ----- Tests -----------------------------------------------------------------------------------
tests_end=$(( SECONDS + tests_budget ))
for file in "${tests[@]}"; do
  name=$(basename "$file" .py)
  step "pytest $name" $(( tests_end - SECONDS )) "$out/tests/$name.log" \
    "$python" -m pytest -q -p no:cacheprovider "$file" "${test_selection[@]}"
done

# ----- The benchmark suite: per part and config, with and without loops in command buffers ----
# One process each, so a run stopped for time loses only its own figures; the train step first.
runs=()
for part in "${parts[@]}"; do
  for config in "${configs[@]}"; do
    for variant in "${variants[@]}"; do runs+=("$config $part $variant"); done
  done
done
for i in "${!runs[@]}"; do
  read -r config part variant <<< "${runs[$i]}"
  later=$(( ${#runs[@]} - i - 1 ))
  if [ "$reserve_per_run" -gt 0 ]; then
    share=$(( $(left) - reserve_per_run * later ))
  else
    share=$(( $(left) / (later + 1) ))
  fi
  result="$out/bench/${config}_${part}_$variant"
  step "benchmarks: $config $part, command buffers ${cmdbuf[$variant]}" "$share" "$result.log" \
    env XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_command_buffer=${cmdbuf[$variant]}" \
    "$python" -m benchmarks.run --configs="$config" --parts="$part" "${bench_flags[@]}" \
    --out="$result"
done

# ----- Summary --------------------------------------------------------------------------------
{
  echo "# scripts/gpu_check.sh$($dry_run && echo ' --dry_run'), $(date -u +%FT%TZ), $(hostname)"
  echo
  if [ -s "$out/env/nvidia-smi.txt" ]; then
    echo '```'; head -n 12 "$out/env/nvidia-smi.txt"; echo '```'; echo
  fi
  cat "$steps"
  echo
  results=("$out"/bench/*.json)
  if [ -e "${results[0]}" ]; then
    "$python" -m benchmarks.compare "${results[@]}"
  else
    echo 'No benchmark finished.'
  fi
} > "$out/SUMMARY.md"
echo "Done in $(( SECONDS - start )) s: $out/SUMMARY.md"
[ -z "$no_gpu" ] || fail "$no_gpu."
