#!/usr/bin/env bash
# The prepared device check (issue 22): one script, one call on a lent GPU, tables written to OUT_DIR.
#
#   benchmarks/gpu_check.sh OUT_DIR          # on a CUDA machine: aims to finish within 8 minutes
#   benchmarks/gpu_check.sh OUT_DIR --cpu    # the same steps at tiny sizes on the CPU: shows the script works
#
# Steps, each writing OUT_DIR/<step>.txt (a failing step is recorded and the script goes on; the exit status is
# the number of failed steps):
#   1. machine:  what ran it (nvidia-smi or lscpu, torch and CUDA versions);
#   2. tests:    the CUDA tests (deterministic crash/resume, the deterministic flag, CCF pooling parity) and
#                the engine's resume tests, with the device the machine has;
#   3. train:    benchmarks/bench_train.py: demo config fp32 and bf16; paper config fp32, bf16, bf16 compiled and
#                bf16 with the per-tensor optimiser loop, bf16 deterministic (demo config in fp32 only with --cpu);
#   4. eval:     benchmarks/bench_eval.py at HITSZ-VCM size, the CPU path and the CUDA rows side by side
#                (--quick sizes with --cpu);
#   5. loader:   benchmarks/bench_loader.py, paper-size JPEG clips: loader workers, PIL vs nvJPEG decode, and
#                the model step beside them (--quick demo sizes with --cpu);
#   6. scale:    `cmft demo` on a generated set, both IR looks: 200 ids, 40 epochs, T = 8 on the GPU;
#                12 ids, 1 epoch, T = 3 with --cpu.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: benchmarks/gpu_check.sh OUT_DIR [--cpu]}
MODE=${2:-gpu}
mkdir -p "$OUT"
failed=0

step() {  # step NAME COMMAND...: run it, keep its output, note how long it took and whether it passed
    local name=$1
    shift
    local t0=$SECONDS
    echo "== $name: $*" | tee -a "$OUT/summary.txt"
    if "$@" >"$OUT/$name.txt" 2>&1; then
        echo "   ok in $((SECONDS - t0)) s" | tee -a "$OUT/summary.txt"
    else
        echo "   FAILED (exit $?) in $((SECONDS - t0)) s: see $OUT/$name.txt" | tee -a "$OUT/summary.txt"
        failed=$((failed + 1))
    fi
}

if [ "$MODE" = "--cpu" ]; then
    DEVICE=cpu
    TRAIN=(python benchmarks/bench_train.py --configs demo --cases fp32 --steps 2 --warmup 1 --device cpu)  # bf16: ~50 s a step here
    EVAL=(python benchmarks/bench_eval.py --quick --no-memory --device cpu)
    LOADER=(python benchmarks/bench_loader.py --quick)
    SCALE=(--ids 12 --test-ids 4 train.epochs=1 data.seq_len=3 eval.seq_len=3 data.height=64 data.width=32 data.workers=0)
else
    DEVICE=cuda
    if ! python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        echo "no CUDA GPU here: run with --cpu for the tiny CPU path" >&2
        exit 2
    fi
    TRAIN=(bash -c "python benchmarks/bench_train.py --configs demo --cases fp32 bf16 --device cuda --steps 10 &&
        python benchmarks/bench_train.py --configs paper --cases fp32 bf16 bf16+compile bf16+nofused bf16+deterministic --device cuda --steps 10")
    EVAL=(python benchmarks/bench_eval.py --no-memory --no-write --repeats 3 --device cuda)
    LOADER=(python benchmarks/bench_loader.py --config paper --batches 8)
    SCALE=(--ids 200 train.epochs=40 data.seq_len=8 data.workers=12 train.device=cuda)
fi
: >"$OUT/summary.txt"
echo "gpu_check $(date -u +%Y-%m-%dT%H:%MZ) mode=$MODE commit=$(git rev-parse --short HEAD 2>/dev/null || echo none)" | tee -a "$OUT/summary.txt"

step machine bash -c "(nvidia-smi || lscpu | head -20); python -c 'import torch; print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, \"gpu\", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)'"
step tests python -m pytest -q -p no:cacheprovider tests/test_layers.py tests/test_models.py::test_exact_adaptive_pool_equals_pytorchs \
    tests/test_engine.py::test_crash_and_resume_is_exact_on_cuda_with_the_deterministic_flag \
    tests/test_engine.py::test_deterministic_flag_holds_during_training_and_is_undone tests/test_engine.py::test_crash_and_resume_is_exact \
    tests/test_engine.py::test_compiled_training_equals_eager_and_saves_plain_weights \
    tests/test_engine.py::test_fused_optimiser_matches_the_per_tensor_loop tests/test_retrieval.py tests/test_metrics.py
step train "${TRAIN[@]}"
step eval "${EVAL[@]}"
step loader "${LOADER[@]}"
for look in nir thermal; do
    step "scale_$look" python -m cmft demo --out "$OUT/demo_$look" --ir-look "$look" "${SCALE[@]}"
done
grep -h -E "ir_to_rgb|rgb_to_ir|rank1|mAP" "$OUT"/demo_*/metrics.json >/dev/null 2>&1 && \
    for look in nir thermal; do echo "scale $look: $(tr -d '\n ' <"$OUT/demo_$look/metrics.json" | head -c 400)" >>"$OUT/summary.txt"; done
echo "device=$DEVICE failed_steps=$failed" | tee -a "$OUT/summary.txt"
exit "$failed"
