//! Metric names as constants, described once, and the clocks stages share. Nothing here runs per
//! packet: stages count in plain integers and turn the difference since their last flush into counter
//! increments once per batch.

pub mod latency;

use std::sync::OnceLock;
use std::time::Instant;

use metrics::{describe_counter, describe_gauge, describe_histogram};

pub const PACKETS_RECEIVED: &str = "hitgate_packets_received_total";
pub const BYTES_RECEIVED: &str = "hitgate_bytes_received_total";
pub const PACKETS_PLACED: &str = "hitgate_packets_placed_total";
pub const PACKETS_MISPLACED: &str = "hitgate_packets_misplaced_total";
pub const PACKETS_DROPPED: &str = "hitgate_packets_dropped_total";
pub const PACKETS_LOST: &str = "hitgate_packets_lost_total";
pub const FRAMES: &str = "hitgate_frames_total";
pub const FRAMES_ACCEPTED: &str = "hitgate_frames_accepted_total";
pub const FRAMES_REJECTED: &str = "hitgate_frames_rejected_total";
pub const QUEUE_PUSHED: &str = "hitgate_queue_pushed_total";
pub const QUEUE_POPPED: &str = "hitgate_queue_popped_total";
pub const POOL_FREE_SLOTS: &str = "hitgate_pool_free_slots";
pub const PACKET_TO_VERDICT: &str = "hitgate_packet_to_verdict_seconds";
pub const REDUCE_TIME: &str = "hitgate_reduce_seconds";
pub const TRIGGER_MIN_SPOTS: &str = "hitgate_trigger_min_spots";
pub const TRIGGER_THRESHOLD: &str = "hitgate_trigger_threshold";
pub const TRIGGER_TARGET_RATE: &str = "hitgate_trigger_target_accept_rate";
pub const TRIGGER_RATE_HELD: &str = "hitgate_trigger_target_rate_held";
pub const TRIGGER_UNFAMILIAR_SHARE: &str = "hitgate_trigger_inputs_unfamiliar_share";
pub const TRIGGER_FALLBACK: &str = "hitgate_trigger_fallback";
pub const SUMMARY_PERSISTENT_BLOCKS: &str = "hitgate_summary_persistent_blocks";
pub const FRAMES_AUDIT: &str = "hitgate_frames_audit_total";
pub const TRIGGER_FAILURES: &str = "hitgate_trigger_failures_total";
pub const LOCALISER_SPOTS: &str = "hitgate_spots_localised_total";
pub const LOCALISER_FAILED_BATCHES: &str = "hitgate_localiser_failed_batches_total";
pub const FPGA_FRAMES: &str = "hitgate_fpga_frames_total";
pub const FPGA_FALLBACKS: &str = "hitgate_fpga_fallbacks_total";
pub const FPGA_UP: &str = "hitgate_fpga_card_up";
pub const FPGA_BATCH_FRAMES: &str = "hitgate_fpga_batch_frames";
pub const STREAM_NOT_SENT: &str = "hitgate_stream_not_sent_total";
pub const SINK_DROPPED: &str = "hitgate_sink_dropped_total";
pub const SINK_BEHIND: &str = "hitgate_sink_behind";
pub const SINK_BACKLOG: &str = "hitgate_sink_backlog_frames";
pub const STORAGE_RATE_CEILING: &str = "hitgate_storage_accept_rate_ceiling";

/// Describes every metric once (help text for the exporter).
pub fn describe() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        describe_counter!(PACKETS_RECEIVED, "Datagrams taken from the source");
        describe_counter!(BYTES_RECEIVED, "Bytes of datagrams taken from the source");
        describe_counter!(PACKETS_PLACED, "Detector packets placed in their frame");
        describe_counter!(
            PACKETS_MISPLACED,
            "Packets placed by a copy after they were not received straight into their place in a frame slot"
        );
        describe_counter!(PACKETS_DROPPED, "Datagrams not placed, by reason");
        describe_counter!(PACKETS_LOST, "Packets that never arrived, counted when their frame left assembly");
        describe_counter!(FRAMES, "Frames leaving assembly, by outcome");
        describe_counter!(FRAMES_ACCEPTED, "Frames the trigger accepted");
        describe_counter!(FRAMES_REJECTED, "Frames the trigger rejected");
        describe_counter!(QUEUE_PUSHED, "Frames pushed into a queue between stages");
        describe_counter!(QUEUE_POPPED, "Frames popped from a queue between stages");
        describe_gauge!(POOL_FREE_SLOTS, "Frame slots free in the pool");
        describe_histogram!(
            PACKET_TO_VERDICT,
            metrics::Unit::Seconds,
            "First packet of a frame received to its verdict written"
        );
        describe_counter!(FPGA_FRAMES, "Frames the FPGA card judged");
        describe_counter!(FPGA_FALLBACKS, "Frames the FPGA trigger judged in software because the card could not");
        describe_gauge!(FPGA_UP, "1 while the FPGA card is in use, 0 once it is given up or could not be opened");
        describe_histogram!(FPGA_BATCH_FRAMES, "Frames judged in one FPGA card call");
        describe_counter!(STREAM_NOT_SENT, "Kept frames the live stream did not send: no consumer took them in time");
        describe_histogram!(REDUCE_TIME, metrics::Unit::Seconds, "Reducer time per frame");
        describe_gauge!(TRIGGER_MIN_SPOTS, "Spots a frame needs to be accepted");
        describe_gauge!(TRIGGER_THRESHOLD, "The trigger's cut: the score a frame needs to be accepted");
        describe_gauge!(TRIGGER_TARGET_RATE, "The accept rate the cut is held at (0: the cut is fixed)");
        describe_gauge!(
            TRIGGER_UNFAMILIAR_SHARE,
            "Share of the recent frames whose learned-trigger inputs lie outside the model's training ranges"
        );
        describe_gauge!(
            TRIGGER_FALLBACK,
            "1 while the spots trigger judges in place of the learned one (on_unfamiliar = \"fallback\", inputs unfamiliar)"
        );
        describe_gauge!(
            SUMMARY_PERSISTENT_BLOCKS,
            "Blocks the latest frame's summary left out of the learned trigger's inputs: they stand out in most frames (hot pixels, fixed structure)"
        );
        describe_gauge!(
            TRIGGER_RATE_HELD,
            "1 while the cut gives the target accept rate, 0 when it cannot (scores that tie, a cut at the end of their range)"
        );
        describe_counter!(FRAMES_AUDIT, "Rejected frames kept, flagged, for the audit stream");
        describe_counter!(TRIGGER_FAILURES, "Frames the trigger's backend failed on (accepted, so no hit is lost)");
        describe_counter!(
            SINK_DROPPED,
            "Frames a sink should have taken and did not, by reason (queue_full: storage behind)"
        );
        describe_gauge!(SINK_BEHIND, "Alarm: 1 while a sink's queue is full and frames for it are being dropped");
        describe_gauge!(SINK_BACKLOG, "Frames waiting for or in a sink");
        describe_gauge!(
            STORAGE_RATE_CEILING,
            "Accept rate storage keeps up with, while it holds the trigger's cut up (0: no ceiling)"
        );
        describe_counter!(LOCALISER_SPOTS, "Spots the localiser gave a refined centre");
        describe_counter!(
            LOCALISER_FAILED_BATCHES,
            "Batches of patches the localiser failed on (their spots keep the centre of mass only)"
        );
    });
}

/// Nanoseconds on one monotonic clock shared by every thread of the process, so a time taken by the
/// receiver can be compared with one taken by the sink.
pub fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// CPU seconds (user + system) the calling thread has used so far, from `/proc/thread-self/stat`
/// (10 ms resolution); 0 where that is not available.
pub fn thread_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Now as an ISO 8601 UTC time (`2026-11-24T10:00:00Z`).
pub fn iso8601_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (the proleptic Gregorian calendar).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}
