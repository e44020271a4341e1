/* The kernel's top function, as the test bench and the host emulator call it. */
#ifndef HITGATE_TRIGGER_H
#define HITGATE_TRIGGER_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Judges `frames` quantized summaries at `input` (HG_INPUTS int8 each), writing each one's logit
 * accumulator to `output`; reports its status, how many it judged, and its identity. */
void hitgate_trigger(const int8_t *input, int64_t *output, uint32_t frames, uint32_t *status,
                     uint32_t *judged, uint32_t *kernel_id, uint32_t *abi_version, uint64_t *model_hash);

#ifdef __cplusplus
}
#endif

#endif
