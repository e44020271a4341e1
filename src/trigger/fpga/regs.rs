//! The Rust mirror of `hls/include/hitgate_trigger_regs.h`, the host ↔ card ABI: register offsets
//! in the kernel's AXI4-Lite control window, control bits, identity constants and status codes.
//! `tests/fpga_regs.rs` compiles the header and checks every value here against it.

pub const CTRL: usize = 0x00;
pub const CTRL_START: u32 = 0x01;
pub const CTRL_DONE: u32 = 0x02;
pub const CTRL_IDLE: u32 = 0x04;
pub const CTRL_READY: u32 = 0x08;
pub const CTRL_AUTO_RESTART: u32 = 0x80;

pub const GIE: usize = 0x04;
pub const IER: usize = 0x08;
pub const ISR: usize = 0x0c;

pub const INPUT_ADDR_LO: usize = 0x10;
pub const INPUT_ADDR_HI: usize = 0x14;
pub const OUTPUT_ADDR_LO: usize = 0x1c;
pub const OUTPUT_ADDR_HI: usize = 0x20;
pub const FRAMES: usize = 0x28;

pub const STATUS: usize = 0x30;
pub const STATUS_CTRL: usize = 0x34;
pub const JUDGED: usize = 0x40;
pub const JUDGED_CTRL: usize = 0x44;

pub const KERNEL_ID: usize = 0x50;
pub const ABI_VERSION: usize = 0x58;
pub const MODEL_HASH_LO: usize = 0x60;
pub const MODEL_HASH_HI: usize = 0x64;

pub const KERNEL_ID_VALUE: u32 = 0x4847_5452;
pub const ABI_VERSION_VALUE: u32 = 1;
pub const MAX_FRAMES: u32 = 4096;

pub const STATUS_OK: u32 = 0;
pub const STATUS_BAD_FRAME_COUNT: u32 = 1;

/// Bytes of the control window the driver maps (the registers end below it).
pub const WINDOW_BYTES: usize = 0x1000;

/// Every constant by its name in the C header, for the layout test.
pub const ALL: &[(&str, u64)] = &[
    ("HG_REG_CTRL", CTRL as u64),
    ("HG_CTRL_START", CTRL_START as u64),
    ("HG_CTRL_DONE", CTRL_DONE as u64),
    ("HG_CTRL_IDLE", CTRL_IDLE as u64),
    ("HG_CTRL_READY", CTRL_READY as u64),
    ("HG_CTRL_AUTO_RESTART", CTRL_AUTO_RESTART as u64),
    ("HG_REG_GIE", GIE as u64),
    ("HG_REG_IER", IER as u64),
    ("HG_REG_ISR", ISR as u64),
    ("HG_REG_INPUT_ADDR_LO", INPUT_ADDR_LO as u64),
    ("HG_REG_INPUT_ADDR_HI", INPUT_ADDR_HI as u64),
    ("HG_REG_OUTPUT_ADDR_LO", OUTPUT_ADDR_LO as u64),
    ("HG_REG_OUTPUT_ADDR_HI", OUTPUT_ADDR_HI as u64),
    ("HG_REG_FRAMES", FRAMES as u64),
    ("HG_REG_STATUS", STATUS as u64),
    ("HG_REG_STATUS_CTRL", STATUS_CTRL as u64),
    ("HG_REG_JUDGED", JUDGED as u64),
    ("HG_REG_JUDGED_CTRL", JUDGED_CTRL as u64),
    ("HG_REG_KERNEL_ID", KERNEL_ID as u64),
    ("HG_REG_ABI_VERSION", ABI_VERSION as u64),
    ("HG_REG_MODEL_HASH_LO", MODEL_HASH_LO as u64),
    ("HG_REG_MODEL_HASH_HI", MODEL_HASH_HI as u64),
    ("HG_KERNEL_ID", KERNEL_ID_VALUE as u64),
    ("HG_ABI_VERSION", ABI_VERSION_VALUE as u64),
    ("HG_MAX_FRAMES", MAX_FRAMES as u64),
    ("HG_STATUS_OK", STATUS_OK as u64),
    ("HG_STATUS_BAD_FRAME_COUNT", STATUS_BAD_FRAME_COUNT as u64),
];
