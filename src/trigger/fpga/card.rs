//! The card's hardware primitives: its control registers in a memory-mapped BAR window, and two DMA
//! channels (host to card, card to host) addressed by card memory address — as the Xilinx XDMA driver
//! offers them (`/dev/xdma0_user`, `/dev/xdma0_h2c_0`, `/dev/xdma0_c2h_0`: the file offset is the card
//! address). The emulated card (`emulator.rs`) offers the same three files.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use memmap2::{MmapMut, MmapOptions};

use super::regs;

#[derive(Debug, thiserror::Error)]
pub enum CardError {
    #[error("cannot open {path}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("cannot map the register window of {path}")]
    Map { path: PathBuf, source: std::io::Error },
    #[error("register window of {path} is {bytes} bytes, the kernel's registers need {needed}")]
    WindowTooSmall { path: PathBuf, bytes: usize, needed: usize },
    #[error("DMA {direction} of {bytes} bytes at card address {address:#x} failed")]
    Dma { direction: &'static str, bytes: usize, address: u64, source: std::io::Error },
}

/// Where a card's primitives are.
#[derive(Clone, Debug, PartialEq)]
pub struct CardPaths {
    /// The BAR holding the kernel's control registers (XDMA: `/dev/xdma0_user`, or a PCIe
    /// `resource` file).
    pub registers: PathBuf,
    /// Host-to-card DMA channel (XDMA: `/dev/xdma0_h2c_0`).
    pub to_card: PathBuf,
    /// Card-to-host DMA channel (XDMA: `/dev/xdma0_c2h_0`).
    pub from_card: PathBuf,
}

impl CardPaths {
    /// The XDMA driver's devices for card `index`.
    pub fn xdma(index: u32) -> CardPaths {
        CardPaths {
            registers: format!("/dev/xdma{index}_user").into(),
            to_card: format!("/dev/xdma{index}_h2c_0").into(),
            from_card: format!("/dev/xdma{index}_c2h_0").into(),
        }
    }
}

/// 32-bit registers in a shared mapping, read and written whole (the device, or the emulator's
/// device thread, sees every access in program order).
pub struct RegisterWindow {
    map: MmapMut,
}

impl RegisterWindow {
    /// Maps the first [`regs::WINDOW_BYTES`] of `path`, shared.
    ///
    /// # Errors
    /// The file cannot be opened or mapped, or is too small.
    pub fn open(path: &Path) -> Result<RegisterWindow, CardError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|source| CardError::Open { path: path.into(), source })?;
        let bytes = file.metadata().map(|m| m.len() as usize).unwrap_or(0);
        // A device file reports no size; a plain file (the emulator's) must hold the window.
        if bytes != 0 && bytes < regs::WINDOW_BYTES {
            return Err(CardError::WindowTooSmall { path: path.into(), bytes, needed: regs::WINDOW_BYTES });
        }
        // SAFETY: the mapping is of a register window that other parties (the card, or the emulator's
        // device thread) change underneath: it is only ever accessed through `AtomicU32` (see
        // `register`), never as plain memory, so no Rust reference to its bytes assumes they stay put.
        let map = unsafe { MmapOptions::new().len(regs::WINDOW_BYTES).map_mut(&file) }
            .map_err(|source| CardError::Map { path: path.into(), source })?;
        Ok(RegisterWindow { map })
    }

    fn register(&self, offset: usize) -> &AtomicU32 {
        let offset = offset.min(regs::WINDOW_BYTES - 4) & !3;
        // SAFETY: the mapping is page-aligned and `WINDOW_BYTES` long, `offset` is clamped inside it
        // and rounded to a multiple of 4, so the pointer is valid and aligned for a u32 for as long as
        // `self` keeps the mapping; all access to these bytes, here and in the device, is atomic.
        unsafe { AtomicU32::from_ptr(self.map.as_ptr().add(offset).cast_mut().cast()) }
    }

    pub fn read(&self, offset: usize) -> u32 {
        self.register(offset).load(Ordering::Acquire)
    }

    pub fn write(&self, offset: usize, value: u32) {
        self.register(offset).store(value, Ordering::Release);
    }

    /// Clears-on-read bits, as the device's done bit: reads the register and clears `bits` in it.
    pub fn read_and_clear(&self, offset: usize, bits: u32) -> u32 {
        self.register(offset).fetch_and(!bits, Ordering::AcqRel)
    }
}

/// A card: its register window and DMA channels.
pub struct Card {
    pub registers: RegisterWindow,
    to_card: File,
    from_card: File,
}

impl Card {
    /// Opens a card's primitives.
    ///
    /// # Errors
    /// A path cannot be opened or the window mapped.
    pub fn open(paths: &CardPaths) -> Result<Card, CardError> {
        let open = |path: &Path, write: bool| {
            OpenOptions::new()
                .read(!write)
                .write(write)
                .open(path)
                .map_err(|source| CardError::Open { path: path.into(), source })
        };
        Ok(Card {
            registers: RegisterWindow::open(&paths.registers)?,
            to_card: open(&paths.to_card, true)?,
            from_card: open(&paths.from_card, false)?,
        })
    }

    /// Copies `data` to card memory at `address` (host-to-card DMA).
    ///
    /// # Errors
    /// The channel failed.
    pub fn dma_to_card(&self, address: u64, data: &[u8]) -> Result<(), CardError> {
        self.to_card.write_all_at(data, address).map_err(|source| CardError::Dma {
            direction: "host to card",
            bytes: data.len(),
            address,
            source,
        })
    }

    /// Copies card memory at `address` into `out` (card-to-host DMA).
    ///
    /// # Errors
    /// The channel failed.
    pub fn dma_from_card(&self, address: u64, out: &mut [u8]) -> Result<(), CardError> {
        let bytes = out.len();
        self.from_card.read_exact_at(out, address).map_err(|source| CardError::Dma {
            direction: "card to host",
            bytes,
            address,
            source,
        })
    }
}
