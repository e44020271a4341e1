#!/usr/bin/env bash
# The C simulation without Vitis: the same test bench and kernel source, built with g++ (as
# tests/fpga_kernel.rs does). Exit code 0 when the kernel matches the expected logits bit for bit.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${TMPDIR:-/tmp}/tb_hitgate_trigger"
g++ -O2 -std=c++11 -Wall -Wextra -Werror -Wno-unknown-pragmas -Wno-unused-label \
    -o "$out" tb/tb_hitgate_trigger.cpp kernels/hitgate_trigger.cpp
cd tb && "$out" data/inputs.txt data/expected.txt
