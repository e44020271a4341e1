//! The sinks hitgate knows, one line each: `[[sink]] kind` names one, and the rest of the table is
//! that kind's section. A new sink is a new file (its section implementing `sink::SinkConfig`, and
//! the sink it opens) and one line here.

use serde::{Deserialize, Serialize};

use crate::scaleout::forward::ForwardSection;
use crate::sink::SinkConfig;
use crate::sink::features::FeaturesSinkSection;
use crate::sink::hdf5::Hdf5Section;
use crate::sink::null::NullSection;
use crate::sink::raw::RawSection;
use crate::sink::stream::StreamSection;

/// Declares the sinks: the `[[sink]]` table, tagged by `kind`, and its view as a [`SinkConfig`].
macro_rules! sink_kinds {
    ($($(#[$doc:meta])* $name:ident: $kind:ident($section:ty)),+ $(,)?) => {
        /// One output.
        #[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
        #[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
        pub enum SinkSection {
            $($(#[$doc])* $kind($section),)+
        }

        impl SinkSection {
            /// The sink's kind, as configs name it (and metrics label it).
            pub fn kind_name(&self) -> &'static str {
                match self {
                    $(SinkSection::$kind(_) => stringify!($name),)+
                }
            }

            /// The section as its sink reads it.
            pub fn config(&self) -> &dyn SinkConfig {
                match self {
                    $(SinkSection::$kind(s) => s,)+
                }
            }

            pub fn config_mut(&mut self) -> &mut dyn SinkConfig {
                match self {
                    $(SinkSection::$kind(s) => s,)+
                }
            }
        }
    };
}

sink_kinds! {
    /// Accepted frames, raw, with an index (docs/formats.md).
    raw: Raw(RawSection),
    /// One record per frame, accepted or not, as JSON lines.
    features: Features(FeaturesSinkSection),
    /// Accepted (and audit) frames as NeXus NXmx HDF5 files with bitshuffle-LZ4 chunks.
    hdf5: Hdf5(Hdf5Section),
    /// Discards frames (throughput measurements), optionally taking `write_delay_us` per frame.
    null: Null(NullSection),
    /// Accepted (and audit) frames as a live stream: DECTRIS Stream V2 CBOR messages over ZeroMQ.
    stream: Stream(StreamSection),
    /// Every frame's features record and the kept frames' compressed chunks, forwarded to a NATS
    /// JetStream stream with acknowledgements, for consumers on other machines (`hitgate consume`).
    jetstream: Jetstream(ForwardSection),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sinks_kind_name_is_its_tag_in_the_file() {
        let sinks = [
            SinkSection::Raw(RawSection { dir: "r".into() }),
            SinkSection::Features(FeaturesSinkSection { path: "f".into() }),
            SinkSection::Hdf5(Hdf5Section::in_dir("h".into())),
            SinkSection::Null(NullSection::default()),
            SinkSection::Stream(StreamSection::at("tcp://127.0.0.1:1")),
            SinkSection::Jetstream(ForwardSection::to("nats://127.0.0.1:4222")),
        ];
        for sink in sinks {
            let text = toml::to_string(&sink).unwrap();
            assert!(text.contains(&format!("kind = \"{}\"", sink.kind_name())), "{text}");
            assert_eq!(toml::from_str::<SinkSection>(&text).unwrap(), sink);
        }
    }
}
