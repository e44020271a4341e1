/* The top function: the card's interfaces and the loop over a batch of frames. The arithmetic is in
 * hit_classifier.h; the register layout this produces is hls/include/hitgate_trigger_regs.h. */
#include "hitgate_trigger.h"

#include "../include/hitgate_trigger_regs.h"
#include "hit_classifier.h"

void hitgate_trigger(const int8_t *input, int64_t *output, uint32_t frames, uint32_t *status,
                     uint32_t *judged, uint32_t *kernel_id, uint32_t *abi_version, uint64_t *model_hash) {
#pragma HLS INTERFACE m_axi port = input offset = slave bundle = gmem0 depth = 172032
#pragma HLS INTERFACE m_axi port = output offset = slave bundle = gmem1 depth = 4096
#pragma HLS INTERFACE s_axilite port = input bundle = control
#pragma HLS INTERFACE s_axilite port = output bundle = control
#pragma HLS INTERFACE s_axilite port = frames bundle = control
#pragma HLS INTERFACE s_axilite port = status bundle = control
#pragma HLS INTERFACE s_axilite port = judged bundle = control
#pragma HLS INTERFACE s_axilite port = kernel_id bundle = control
#pragma HLS INTERFACE s_axilite port = abi_version bundle = control
#pragma HLS INTERFACE s_axilite port = model_hash bundle = control
#pragma HLS INTERFACE s_axilite port = return bundle = control
    *kernel_id = HG_KERNEL_ID;
    *abi_version = HG_ABI_VERSION;
    *model_hash = HG_MODEL_FNV1A64;
    if (frames == 0 || frames > HG_MAX_FRAMES) {
        *status = HG_STATUS_BAD_FRAME_COUNT;
        *judged = 0;
        return;
    }
    uint32_t n = 0;
frames_loop:
    for (uint32_t f = 0; f < frames; f++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 4096
        int8_t x[HG_INPUTS];
#pragma HLS ARRAY_PARTITION variable = x complete
    load:
        for (int i = 0; i < HG_INPUTS; i++) {
#pragma HLS PIPELINE II = 1
            x[i] = input[f * HG_INPUTS + i];
        }
        output[f] = hg_hit_logit(x);
        n++;
    }
    *status = HG_STATUS_OK;
    *judged = n;
}
