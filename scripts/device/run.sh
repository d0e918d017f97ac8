#!/usr/bin/env bash
# Runs on a GPU host lent by the `device` tool (after scripts/device/prepare.sh here, carrying .device and .gl):
# the kernel correctness tests on the real driver, then the kernel and model benchmarks. Results go to $OUT.
#
#   run(command: "bash scripts/device/run.sh", carry: [".device", ".gl"], timeout_s: 540)
set -uo pipefail
cd "$(dirname "$0")/../.."
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export VK_DRIVER_FILES=${VK_DRIVER_FILES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}
export XDG_RUNTIME_DIR=/tmp DENO_DIR=/tmp/deno-dir PIXTRAL_LOG_LEVEL=warn
xz -dc .device/deno.xz >/tmp/deno && chmod +x /tmp/deno
out=${OUT:-/tmp/out}
mkdir -p "$out"
run() { echo "== $*"; timeout "${STEP_TIMEOUT:-240}" /tmp/deno "$@" 2>&1 | tee -a "$out/log.txt"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$out/gpu.txt"
run eval 'const a = await navigator.gpu.requestAdapter(); console.log(a?.info, a?.limits.maxBufferSize, [...a?.features ?? []])'
run test --no-config --no-npm --no-remote --allow-read --allow-env \
  tests/kernels_linear_test.ts tests/kernels_test.ts tests/attention_test.ts tests/sampling_test.ts tests/random_test.ts
run bench --no-config --no-npm --no-remote --allow-read --allow-env bench/kernels_bench.ts
run run --no-config --no-npm --no-remote --allow-read --allow-env bench/model.ts --synthetic 12b | tee "$out/model.md"
