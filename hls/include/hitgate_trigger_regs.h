/* The host <-> card ABI of the hitgate trigger kernel: its AXI4-Lite control registers, as Vitis HLS
 * lays them out for the top function `hitgate_trigger` (ap_ctrl_hs block protocol, then the
 * arguments in order, 64-bit pointers as two words). The Rust driver mirrors this header
 * (src/trigger/fpga/regs.rs) and a test compiles both and compares every offset.
 *
 * Byte offsets from the start of the kernel's control BAR window. */
#ifndef HITGATE_TRIGGER_REGS_H
#define HITGATE_TRIGGER_REGS_H

/* ap_ctrl: bit 0 start (write 1; self-clearing), 1 done (clear on read), 2 idle, 3 ready,
 * 7 auto_restart. */
#define HG_REG_CTRL 0x00
#define HG_CTRL_START 0x01u
#define HG_CTRL_DONE 0x02u
#define HG_CTRL_IDLE 0x04u
#define HG_CTRL_READY 0x08u
#define HG_CTRL_AUTO_RESTART 0x80u

/* Interrupts: global enable, enable (bit 0 done, bit 1 ready), status (toggle on write). */
#define HG_REG_GIE 0x04
#define HG_REG_IER 0x08
#define HG_REG_ISR 0x0c

/* Arguments: the card address of the int8 inputs (frames x HG_INPUTS bytes) ... */
#define HG_REG_INPUT_ADDR_LO 0x10
#define HG_REG_INPUT_ADDR_HI 0x14
/* ... of the int64 logit accumulators written back (frames x 8 bytes) ... */
#define HG_REG_OUTPUT_ADDR_LO 0x1c
#define HG_REG_OUTPUT_ADDR_HI 0x20
/* ... and how many frames this call judges (1 .. HG_MAX_FRAMES). */
#define HG_REG_FRAMES 0x28

/* Outputs of the call, valid once done: its status (HG_STATUS_*) and how many frames it judged. */
#define HG_REG_STATUS 0x30
#define HG_REG_STATUS_CTRL 0x34
#define HG_REG_JUDGED 0x40
#define HG_REG_JUDGED_CTRL 0x44

/* Constants the kernel reports (read-only): what it is and which weights it was built with. */
#define HG_REG_KERNEL_ID 0x50
#define HG_REG_ABI_VERSION 0x58
#define HG_REG_MODEL_HASH_LO 0x60
#define HG_REG_MODEL_HASH_HI 0x64

#define HG_KERNEL_ID 0x48475452u /* "HGTR" */
#define HG_ABI_VERSION 1u
#define HG_MAX_FRAMES 4096u

#define HG_STATUS_OK 0u
#define HG_STATUS_BAD_FRAME_COUNT 1u

#endif
