//! The trigger backends hitgate knows, one line each: `[trigger] kind` names one, and each has its
//! section `[trigger.<kind>]`. A new backend is a new file (its section, prepared backend and scorer,
//! see `trigger::backend`) and one line here.

use serde::{Deserialize, Serialize};

use super::accept_all::AcceptAllSection;
use super::backend::BackendSection;
use super::familiar::{InputsSection, OnUnfamiliar};
use super::fpga::backend::FpgaTriggerSection;
use super::rate::RateSection;
use super::spots::SpotsTriggerSection;
use super::tract::TractTriggerSection;

/// Declares the backends: the `kind` enum (as configs and the command line name them), and the
/// `[trigger]` section holding every backend's own section beside the rate control's.
macro_rules! trigger_backends {
    ($($(#[$doc:meta])* $name:ident: $kind:ident($section:ty)),+ $(,)?) => {
        /// Which backend scores frames.
        #[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
        #[serde(rename_all = "snake_case")]
        pub enum TriggerKind {
            $($(#[$doc])* $kind,)+
        }

        impl TriggerKind {
            /// Every backend, in the order they are declared.
            pub const ALL: &[TriggerKind] = &[$(TriggerKind::$kind),+];

            /// The name configs give it (`[trigger] kind`, `[trigger.<name>]`).
            pub fn name(self) -> &'static str {
                match self {
                    $(TriggerKind::$kind => stringify!($name),)+
                }
            }
        }

        /// Which trigger decides, every backend's parameters, and the rate control.
        #[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Default)]
        #[serde(deny_unknown_fields, default)]
        pub struct TriggerSection {
            pub kind: TriggerKind,
            $(pub $name: $section,)+
            pub rate: RateSection,
            /// When a learned backend's inputs count as unfamiliar.
            pub inputs: InputsSection,
            /// What the trigger does while they are.
            pub on_unfamiliar: OnUnfamiliar,
        }

        impl TriggerSection {
            /// The section of the backend `kind`.
            pub fn section_of(&self, kind: TriggerKind) -> &dyn BackendSection {
                match kind {
                    $(TriggerKind::$kind => &self.$name,)+
                }
            }

            /// Every backend's section, by name.
            pub fn sections_mut(&mut self) -> [(&'static str, &mut dyn BackendSection); TriggerKind::ALL.len()] {
                [$((stringify!($name), &mut self.$name as &mut dyn BackendSection)),+]
            }
        }
    };
}

trigger_backends! {
    /// Classical: count connected spots of photons, accept at a minimum count.
    #[default]
    spots: Spots(SpotsTriggerSection),
    /// Learned: a hit classifier run by tract on the frame's summary; score = hit probability.
    tract: Tract(TractTriggerSection),
    /// Keep every frame (commissioning, calibration runs).
    accept_all: AcceptAll(AcceptAllSection),
    /// The int8 hit classifier on an FPGA co-processor (or its emulated card); the same decisions,
    /// judged in software (the kernel's arithmetic on the CPU) whenever the card fails.
    fpga: Fpga(FpgaTriggerSection),
}

impl TriggerSection {
    /// The configured backend's section.
    pub fn backend(&self) -> &dyn BackendSection {
        self.section_of(self.kind)
    }
}
