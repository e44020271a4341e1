/* The int8 hit classifier's arithmetic, apart from the top function's interfaces. Plain C++ with
 * fixed-width integers, so the same source builds with g++ (test bench, emulator) and with Vitis HLS
 * (where the typedefs become exact-width ap_int types). Every rounding is the one
 * src/trigger/fpga/quant.rs defines: the three must agree bit for bit. */
#ifndef HITGATE_HIT_CLASSIFIER_H
#define HITGATE_HIT_CLASSIFIER_H

#include <stdint.h>

#include "../weights/hit_classifier_weights.h"

#ifdef __SYNTHESIS__
#include <ap_int.h>
typedef ap_int<8> hg_q8;
typedef ap_int<32> hg_acc32;
typedef ap_int<48> hg_acc48;
typedef ap_int<64> hg_wide;
#else
typedef int8_t hg_q8;
typedef int32_t hg_acc32;
typedef int64_t hg_acc48;
typedef int64_t hg_wide;
#endif

/* round(value * multiplier * 2^-(31 + shift)), halves rounded up. */
static inline hg_acc32 hg_requantize(hg_acc32 value, int32_t multiplier, int32_t shift) {
    const int total = 31 + shift;
    const hg_wide product = (hg_wide)value * (hg_wide)multiplier;
    return (hg_acc32)((product + ((hg_wide)1 << (total - 1))) >> total);
}

/* The logit accumulator of one quantized summary (see quant.rs for the scales). */
static inline int64_t hg_hit_logit(const int8_t x[HG_INPUTS]) {
    int32_t hidden[HG_HIDDEN1];
#pragma HLS ARRAY_PARTITION variable = hidden complete
    /* Each pipelined step reads a whole column of weights: one register bank per input row. */
#pragma HLS ARRAY_PARTITION variable = HG_W1 dim = 1 complete
#pragma HLS ARRAY_PARTITION variable = HG_W2 dim = 1 complete
layer1:
    for (int j = 0; j < HG_HIDDEN1; j++) {
#pragma HLS PIPELINE II = 1
        hg_acc32 acc = HG_B1[j];
        for (int i = 0; i < HG_INPUTS; i++) {
            acc += ((hg_acc32)x[i] - HG_INPUT_ZERO) * (hg_acc32)HG_W1[i][j];
        }
        hg_acc32 q = hg_requantize(acc, HG_REQUANT1_MULTIPLIER, HG_REQUANT1_SHIFT) + HG_HIDDEN_ZERO;
        if (q < HG_HIDDEN_ZERO) q = HG_HIDDEN_ZERO; /* the ReLU */
        if (q > 127) q = 127;
        hidden[j] = q - HG_HIDDEN_ZERO;
    }
    hg_acc48 logit = HG_B3;
layer2:
    for (int k = 0; k < HG_HIDDEN2; k++) {
#pragma HLS PIPELINE II = 1
        hg_acc32 acc = HG_B2[k];
        for (int j = 0; j < HG_HIDDEN1; j++) {
            acc += (hg_acc32)hidden[j] * (hg_acc32)HG_W2[j][k];
        }
        if (acc < 0) acc = 0;
        logit += (hg_acc48)acc * (hg_acc48)HG_W3[k];
    }
    return (int64_t)logit;
}

#endif
