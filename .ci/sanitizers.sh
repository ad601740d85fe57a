#!/usr/bin/env bash
# The native kernels built once with -fsanitize=address,undefined (CMake option I2F_SANITIZE) and
# their direct tests run against that build (the installed libraries are left as they are). The
# OpenVINO extension is left out: under the preloaded sanitizer runtime OpenVINO's own
# (uninstrumented) compile_model aborts without a sanitizer report, before any kernel runs.
set -euo pipefail
cd "$(dirname "$0")/.."
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
cmake -S custom_ops/cpp -B "$build/cmake" -G Ninja -DI2F_SANITIZE=ON -DI2F_OPENVINO=OFF > /dev/null
cmake --build "$build/cmake" > /dev/null
cmake --install "$build/cmake" --prefix "$build/lib" > /dev/null
# Python itself is not instrumented: the sanitizer runtimes are preloaded; its own leaks are not ours
export I2F_NATIVE_LIB_DIR="$build/lib"
export LD_PRELOAD="$(g++ -print-file-name=libasan.so):$(g++ -print-file-name=libubsan.so)"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
python -m pytest -q -p no:cacheprovider tests/test_native_kernels.py -k "not openvino"
# where the CPU has AVX-512 the expert products, the full attention, the prompt convolution and the
# logits' upsampling ran their AVX-512 versions above: the portable ones too
I2F_NATIVE_PORTABLE=1 python -m pytest -q -p no:cacheprovider tests/test_native_kernels.py \
  -k "(moe or full_attention or prompt or upsampling) and not openvino"
