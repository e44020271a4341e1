/* C-simulation test bench: runs the top function on data files and compares with what the Rust model
 * of the kernel's arithmetic computed (written by `hitgate fpga-export`).
 *
 *   tb_hitgate_trigger INPUTS EXPECTED     (defaults: data/inputs.txt data/expected.txt)
 *
 * INPUTS holds one quantized summary per line (HG_INPUTS integers), EXPECTED one logit accumulator per
 * line. Prints each mismatch and a summary line; exits 1 on any mismatch (Vitis csim reads the exit
 * code the same way). */
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "../include/hitgate_trigger_regs.h"
#include "../kernels/hit_classifier.h"
#include "../kernels/hitgate_trigger.h"

int main(int argc, char **argv) {
    const char *inputs_path = argc > 1 ? argv[1] : "data/inputs.txt";
    const char *expected_path = argc > 2 ? argv[2] : "data/expected.txt";
    FILE *in = std::fopen(inputs_path, "r");
    FILE *ex = std::fopen(expected_path, "r");
    if (!in || !ex) {
        std::fprintf(stderr, "cannot open %s or %s\n", inputs_path, expected_path);
        return 2;
    }
    std::vector<int8_t> inputs;
    std::vector<long long> expected;
    for (;;) {
        int v;
        if (std::fscanf(in, "%d", &v) != 1) break;
        inputs.push_back((int8_t)v);
    }
    long long e;
    while (std::fscanf(ex, "%lld", &e) == 1) expected.push_back(e);
    std::fclose(in);
    std::fclose(ex);
    const size_t frames = inputs.size() / HG_INPUTS;
    if (frames == 0 || frames != expected.size() || inputs.size() % HG_INPUTS != 0) {
        std::fprintf(stderr, "%zu input values (%zu frames) for %zu expected results\n", inputs.size(), frames,
                     expected.size());
        return 2;
    }
    std::vector<int64_t> output(frames, 0);
    uint32_t status = 99, judged = 0, kernel_id = 0, abi = 0;
    uint64_t hash = 0;
    hitgate_trigger(inputs.data(), output.data(), (uint32_t)frames, &status, &judged, &kernel_id, &abi, &hash);
    int bad = 0;
    for (size_t f = 0; f < frames; f++) {
        if (output[f] != expected[f]) {
            std::printf("frame %zu: kernel %lld, expected %lld\n", f, (long long)output[f], expected[f]);
            bad++;
        }
    }
    /* The batch-size check and the identity registers. */
    uint32_t refused = 99;
    hitgate_trigger(inputs.data(), output.data(), 0, &refused, &judged, &kernel_id, &abi, &hash);
    if (refused != HG_STATUS_BAD_FRAME_COUNT || status != HG_STATUS_OK || kernel_id != HG_KERNEL_ID ||
        abi != HG_ABI_VERSION || hash != HG_MODEL_FNV1A64) {
        std::printf("status %u / %u, kernel id %08x, abi %u, model %016llx\n", status, refused, kernel_id, abi,
                    (unsigned long long)hash);
        bad++;
    }
    std::printf("csim: %zu frames, %d mismatches, model %016llx\n", frames, bad, (unsigned long long)HG_MODEL_FNV1A64);
    return bad == 0 ? 0 : 1;
}
