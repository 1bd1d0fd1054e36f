#!/bin/sh
# The GPU checks in one run, for a machine with CUDA where aits is not installed (from the repository
# root; about 10 minutes, most of it compiling):
#
#     PYTHONPATH=. sh benchmarks/gpu_check.sh OUT_DIR
#
# Each step writes its log under OUT_DIR; a failing step is reported and the next one still runs.
out=${1:-gpu_check}
mkdir -p "$out"

step() {  # step NAME COMMAND...: run COMMAND, output to OUT_DIR/NAME.log, report its exit status
    name=$1
    shift
    start=$(date +%s)
    "$@" > "$out/$name.log" 2>&1
    echo "$name: exit $? in $(( $(date +%s) - start )) s"
}

nvidia-smi --query-gpu=name,memory.total --format=csv > "$out/gpu.txt" 2>&1
step train         python -m aits train --device cuda --out "$out/train"
step train_compile python -m aits train --device cuda --set compile=true --out "$out/train_compile"
step simulate      python -m aits simulate --device cuda --checkpoint "$out/train/model.pt" \
                   -p e=0.9 --target-error 1e-4 --json
step bench         python benchmarks/bench.py --device cuda --compile --nets 64,64 --bodies 2 8 32 \
                   --minibatch 512 4096 65536 --json "$out/bench.json"
