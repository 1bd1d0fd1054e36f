#!/bin/sh
# The GPU checks in one run, for a machine with CUDA where aits is not installed (from the repository
# root; about 5 minutes, most of it compiling: five compiled benchmark cells and the compiled training):
#
#     PYTHONPATH=. sh benchmarks/gpu_check.sh OUT_DIR
#
# Each step is cut after STEP_TIMEOUT seconds (default 300); the steps run most important first.
# Each step writes its output under OUT_DIR (NAME.log, and the benchmark's figures as JSON); a failing
# step is reported and the next one still runs. Target on a GPU (issue 16): Part 2 at N = 2,
# M = 65,536 at least 10^7 samples/s (bench_65536.log, compiled and eager). train_nccl: aits train under
# torchrun on one GPU (NCCL), 5 epochs, about 10 s (9 s on an H200, torch 2.11).
out=${1:-gpu_check}
mkdir -p "$out"

step() {  # step NAME COMMAND...: run COMMAND, output to OUT_DIR/NAME.log, report its exit status
    name=$1
    shift
    start=$(date +%s)
    timeout "${STEP_TIMEOUT:-300}" "$@" > "$out/$name.log" 2>&1
    echo "$name: exit $? in $(( $(date +%s) - start )) s" | tee -a "$out/summary.txt"
}

nvidia-smi --query-gpu=name,memory.total --format=csv > "$out/gpu.txt" 2>&1
step bench_65536   python benchmarks/bench.py --device cuda --compile --only part2 --nets 64,64 --bodies 2 \
                   --minibatch 65536 --min-time 0.3 --ref-samples 0 --json "$out/bench_65536.json"
step train         python -m aits train --device cuda --out "$out/train"
step train_nccl    python -m torch.distributed.run --standalone --nproc_per_node=1 -m aits train --device cuda \
                   --epochs 5 --set training.checkpoint_every=2 --out "$out/train_nccl"
step simulate      python -m aits simulate --device cuda --checkpoint "$out/train/model.pt" \
                   -p e=0.9 --target-error 1e-4 --json
step bench         python benchmarks/bench.py --device cuda --compile --only part2 simulate --nets 64,64 \
                   --bodies 2 32 --minibatch 512 65536 --sim-batch 1024 --min-time 0.3 --ref-samples 50 \
                   --json "$out/bench.json"
step train_compile python -m aits train --device cuda --set compile=true --out "$out/train_compile"
