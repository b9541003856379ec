#!/usr/bin/env bash
# Wall time of the runner's two scale-out paths, on the cells of issue 22, in one session:
#   --workers 2 against --workers 1 (one torch thread per cell process), and
#   two runners started together on one --out against one runner alone.
# Usage: bash tools/scale_out.sh [REPEATS] [OUT_DIR]   (from the repository root)
# Prints each pair and the ratio, then checks that every run stored each cell once.
set -euo pipefail
repeats=${1:-4}
out=${2:-$(mktemp -d)}
run() { python -m harness run "$@" >/dev/null 2>&1; }
W=(--arch lmu,lmu-fft,lstm --workload forward --seq-len 64,128,256 --batch 2 --device cpu --threads 1)
R=(--arch lmu-fft,lstm --workload forward --seq-len 16,32,64 --batch 1 --budget-s 0.3 --device cpu --threads 1)
secs() { local s; s=$(date +%s.%N); "$@"; echo "$(date +%s.%N) - $s" | bc; }
for i in $(seq "$repeats"); do
  w1=$(secs run "${W[@]}" --workers 1 --out "$out/w1-$i")
  w2=$(secs run "${W[@]}" --workers 2 --out "$out/w2-$i")
  one=$(secs run "${R[@]}" --out "$out/one-$i")
  two=$(secs bash -c "$(declare -f run); run ${R[*]} --out $out/two-$i & run ${R[*]} --out $out/two-$i; wait")
  printf 'workers 1 %6.2f s  2 %6.2f s  ratio %.2f   runners 1 %6.2f s  2 %6.2f s  ratio %.2f\n' \
    "$w1" "$w2" "$(echo "$w2 / $w1" | bc -l)" "$one" "$two" "$(echo "$two / $one" | bc -l)"
done
python - "$out" <<'PY'
import json, sys
from pathlib import Path
for d in sorted(Path(sys.argv[1]).iterdir()):
    ids = [json.loads(line)["cell_id"] for line in (d / "records.jsonl").read_text().splitlines()]
    assert len(ids) == len(set(ids)), f"{d}: a cell stored twice"
    print(f"{d.name}: {len(ids)} cells, each once")
PY
