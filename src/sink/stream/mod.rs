//! The live stream of kept frames as DECTRIS Stream V2: a `start` message when the first frame goes
//! out, an `image` message per frame, an `end` message when the run closes, each one CBOR map sent as
//! one ZeroMQ message on a PUSH (or PUB) socket that consumers connect to. This is what DECTRIS
//! detectors and Jungfraujoch emit, so the consumers beamlines already run read it unchanged.
//!
//! An image is the frame as the reducers compressed it for storage — the very bytes of the HDF5
//! sink's chunk: bitshuffle-LZ4 in the HDF5 filter's framing, which is the `bslz4` form of the
//! DECTRIS compression tag (56500) — inside an RFC 8746 typed array inside a multi-dimensional array
//! (tag 40) of `[rows, cols]`, modules stacked as in the HDF5 files (their places in the detector
//! image are in the start message's `user_data`). Per-frame facts the trigger produced travel in the
//! image's `user_data`.
//!
//! A message no consumer takes within `send_timeout_ms` is not sent and is counted: the stream is
//! live feedback and never holds the run back for longer than that.

pub mod cbor;
pub mod section;

pub use section::{StreamSection, StreamSocket};

use metrics::{Counter, counter};

use super::{Experiment, FrameRecord, Frames, Interest, Payload, Sink, SinkError, SinkReport};
use crate::codec::{StoredPixels, chunk_bound, stored_element_size};
use crate::telemetry;
use cbor::Encoder;

/// The one channel a hitgate image has (DECTRIS names channels by threshold).
pub const CHANNEL: &str = "threshold_1";

/// RFC 8746 typed-array tags, little endian.
const TYPED_U8: u64 = 64;
const TYPED_U16_LE: u64 = 69;
const TYPED_U32_LE: u64 = 70;
const TYPED_F32_LE: u64 = 85;
/// RFC 8746 multi-dimensional array, row major.
const MULTI_DIM_ARRAY: u64 = 40;
/// DECTRIS compressed byte string.
const DECTRIS_COMPRESSION: u64 = 56500;
/// RFC 8949 standard date/time string.
const DATE_TIME: u64 = 0;

/// What every message of the run says of it.
struct Series {
    id: u64,
    unique_id: String,
    arm_date: String,
    rows: usize,
    cols: usize,
    elem_size: usize,
    typed_array_tag: u64,
}

pub struct StreamSink {
    // The socket is declared before the context so that it closes first.
    socket: zmq::Socket,
    _context: zmq::Context,
    endpoint: String,
    series: Series,
    start: Vec<u8>,
    started: bool,
    message: Encoder,
    sent: u64,
    not_sent: u64,
    bytes: u64,
    payload_bytes: usize,
    not_sent_counter: Counter,
}

fn failed(endpoint: &str, e: zmq::Error) -> SinkError {
    SinkError::Network { sink: "stream", endpoint: endpoint.to_string(), reason: e.to_string() }
}

impl StreamSink {
    /// Binds the stream's socket.
    ///
    /// # Errors
    /// The endpoint cannot be bound (in use, not a local address).
    pub fn create(section: &StreamSection, experiment: &Experiment) -> Result<StreamSink, SinkError> {
        let geometry = &experiment.geometry;
        let endpoint = section.endpoint.as_str();
        let context = zmq::Context::new();
        let kind = match section.socket {
            StreamSocket::Push => zmq::PUSH,
            StreamSocket::Pub => zmq::PUB,
        };
        let socket = context.socket(kind).map_err(|e| failed(endpoint, e))?;
        let timeout = i32::try_from(section.send_timeout_ms).unwrap_or(i32::MAX);
        socket.set_sndhwm(section.high_water_mark).map_err(|e| failed(endpoint, e))?;
        socket.set_sndtimeo(timeout).map_err(|e| failed(endpoint, e))?;
        // Closing waits this long for consumers to take what is queued, then gives up.
        socket.set_linger(timeout.max(1000)).map_err(|e| failed(endpoint, e))?;
        socket.bind(endpoint).map_err(|e| failed(endpoint, e))?;

        let (panels, _, _) = geometry.panels();
        let (rows, cols) = section.pixels.image(&experiment.panel_image).shape();
        let elem_size = stored_element_size(section.pixels, geometry);
        let typed_array_tag = match (section.pixels, elem_size) {
            (StoredPixels::PhotonsF32, _) => TYPED_F32_LE,
            (_, 1) => TYPED_U8,
            (_, 2) => TYPED_U16_LE,
            _ => TYPED_U32_LE,
        };
        let started_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let series = Series {
            id: started_at.as_secs(),
            unique_id: format!("hitgate-{}-{}", std::process::id(), started_at.as_nanos()),
            arm_date: telemetry::iso8601_now(),
            rows: panels * rows,
            cols,
            elem_size,
            typed_array_tag,
        };
        let start = start_message(&series, section, experiment);
        Ok(StreamSink {
            socket,
            _context: context,
            endpoint: endpoint.to_string(),
            series,
            start,
            started: false,
            message: Encoder::default(),
            sent: 0,
            not_sent: 0,
            bytes: 0,
            payload_bytes: chunk_bound(section.pixels, geometry, &experiment.panel_image),
            not_sent_counter: counter!(telemetry::STREAM_NOT_SENT),
        })
    }

    /// Sends one message; false when no consumer took it in time.
    fn send(&mut self, message: &[u8]) -> Result<bool, SinkError> {
        match self.socket.send(message, 0) {
            Ok(()) => {
                self.bytes += message.len() as u64;
                Ok(true)
            }
            Err(zmq::Error::EAGAIN) => Ok(false),
            Err(e) => Err(failed(&self.endpoint, e)),
        }
    }
}

impl Sink for StreamSink {
    fn interest(&self) -> Interest {
        Interest { frames: Frames::Kept, payload: Payload::Chunk, payload_bytes: self.payload_bytes }
    }

    fn write(&mut self, record: &FrameRecord) -> Result<(), SinkError> {
        if !self.started {
            let start = std::mem::take(&mut self.start);
            // A start nobody took is sent again before the next image.
            self.started = self.send(&start)?;
            self.start = start;
        }
        let mut message = std::mem::take(&mut self.message);
        image_message(&mut message, &self.series, record);
        let sent = self.started && self.send(&message.out)?;
        self.message = message;
        if sent {
            self.sent += 1;
        } else {
            self.not_sent += 1;
            self.not_sent_counter.increment(1);
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<SinkReport, SinkError> {
        if self.started {
            let mut end = Encoder::default();
            end.map(3).key("type").text("end");
            end.key("series_id").uint(self.series.id);
            end.key("series_unique_id").text(&self.series.unique_id);
            self.send(&end.out)?;
        }
        Ok(SinkReport {
            name: "stream",
            frames_written: self.sent,
            bytes_written: self.bytes,
            location: Some(self.endpoint.clone().into()),
            frames_not_sent: self.not_sent,
            ..SinkReport::default()
        })
    }
}

/// The series' `start` message: the geometry and beam a consumer needs to make sense of the images.
fn start_message(series: &Series, section: &StreamSection, experiment: &Experiment) -> Vec<u8> {
    let geometry = &experiment.geometry;
    let energy_kev = experiment.photon_energy_kev;
    let pixel_size_m = f64::from(geometry.model.pixel_size_um) * 1e-6;
    let (image, (beam_row, beam_col)) = experiment.stored(section.pixels);
    let rows = image.shape().0;
    let origins = experiment.panel_origins.clone();
    let mut e = Encoder::default();
    e.map(19).key("type").text("start");
    e.key("series_id").uint(series.id);
    e.key("series_unique_id").text(&series.unique_id);
    e.key("arm_date").tag(DATE_TIME).text(&series.arm_date);
    e.key("beam_center_x").float(beam_col);
    e.key("beam_center_y").float(beam_row);
    e.key("channels").array(1).text(CHANNEL);
    e.key("detector_description").text(&format!("{}, {} modules", geometry.model.name, geometry.modules));
    e.key("image_size_x").uint(series.cols as u64);
    e.key("image_size_y").uint(series.rows as u64);
    e.key("incident_energy").float(energy_kev * 1000.0);
    e.key("incident_wavelength").float(experiment.wavelength_angstrom());
    // Frames are chosen as they come: how many is not known when the series starts.
    e.key("number_of_images").uint(0);
    e.key("pixel_size_x").float(pixel_size_m);
    e.key("pixel_size_y").float(pixel_size_m);
    e.key("saturation_value").uint((1u64 << (8 * series.elem_size).min(32)) - 1);
    e.key("sensor_material").text("Si");
    e.key("sensor_thickness").float(320e-6);
    e.key("user_data").map(1).key("hitgate").map(4);
    e.key("pixels").text(section.pixels.description());
    e.key("module_rows").uint(rows as u64);
    e.key("module_origins").array(origins.len());
    for (r, c) in origins {
        e.array(2).uint(r as u64).uint(c as u64);
    }
    e.key("trigger").text(experiment.trigger);
    e.out
}

/// One kept frame's `image` message, written into `e` (reused).
fn image_message(e: &mut Encoder, series: &Series, record: &FrameRecord) {
    let (meta, f) = (&record.meta, &record.features);
    e.clear();
    e.map(7).key("type").text("image");
    e.key("series_id").uint(series.id);
    e.key("series_unique_id").text(&series.unique_id);
    e.key("image_id").uint(meta.sequence);
    // The detector's 10 MHz clock: the image's start time in its own time base.
    e.key("start_time").array(2).uint(meta.detector_timestamp).uint(10_000_000);
    e.key("data").map(1).key(CHANNEL);
    e.tag(MULTI_DIM_ARRAY).array(2).array(2).uint(series.rows as u64).uint(series.cols as u64);
    e.tag(series.typed_array_tag).tag(DECTRIS_COMPRESSION).array(3).text("bslz4").uint(series.elem_size as u64);
    e.bytes(&record.payload);
    e.key("user_data").map(8);
    e.key("frame_number").uint(meta.frame_number);
    e.key("bunch_id").uint(meta.bunch_id);
    e.key("score").float(f64::from(f.score));
    e.key("accepted").bool(f.accepted);
    e.key("audit").bool(f.audit);
    e.key("spots_found").uint(u64::from(f.spots_found));
    e.key("packets_received").uint(u64::from(meta.packets_received));
    e.key("packets_expected").uint(u64::from(meta.packets_expected));
}
