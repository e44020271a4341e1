//! `hitgate demo`: the built-in default. A simulated JUNGFRAU run replayed through the whole pipeline
//! with the learned trigger and the localiser, scored against the simulator's truth.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use clap::Args;

use hitgate::config::{Config, Hdf5Section, SinkSection, TriggerKind};
use hitgate::ingest::send::{SendFaults, SendOptions, SendPace, SendTarget, send};
use hitgate::pipeline::{LiveOptions, Pace, Plan, Progress};
use hitgate::sim::{PacketFaults, SimConfig};
use hitgate::sink::null::NullSection;

use super::out::{say, show};
use super::{damaged_input, load_config, open_capture, print, replay, simulate, stop_on_signals};

#[derive(Args)]
pub struct DemoArgs {
    /// Folder for the simulated run and the results.
    #[arg(long, default_value = "out/demo")]
    out: PathBuf,
    #[arg(long, default_value_t = 400)]
    frames: u64,
    /// Then keep the live monitor running at this address (http://ADDR/) on the same run, received
    /// over loopback and sent again and again at `--monitor-rate`, until Ctrl-C.
    #[arg(long)]
    monitor: Option<std::net::SocketAddr>,
    /// Frames a second sent to the monitored run.
    #[arg(long, default_value_t = 20.0)]
    monitor_rate: f64,
}

pub fn run(args: &DemoArgs) -> Result<()> {
    let (out, frames) = (&args.out, args.frames);
    let cfg = SimConfig {
        frames,
        faults: PacketFaults { loss: 0.0005, reorder: 0.001, duplicate: 0.0005 },
        ..SimConfig::default()
    };
    say!("== simulating a JUNGFRAU run ({frames} frames, 25% hits, light packet damage) into {}", out.display());
    let outputs = simulate::with_progress(&cfg, out)?;
    print::simulation(&outputs);
    say!("\n== replaying it through assembly → calibration → spot finding → learned trigger → localiser → sinks");
    let mut config = load_config(&outputs.replay_config)?;
    // The built-in default is the learned trigger; the simulator's replay.toml keeps the classical one.
    config.trigger.kind = TriggerKind::Tract;
    if cfg!(feature = "hdf5") {
        // Kept frames also go where the X-ray world reads them: NeXus NXmx with bitshuffle-LZ4, in
        // whole photons (raw ADU would make every pixel strong to a spot finder such as DIALS's).
        let mut nexus = Hdf5Section::in_dir(out.join("replay/nexus"));
        nexus.frames_per_file = 50;
        nexus.pixels = hitgate::codec::StoredPixels::PhotonsU32;
        config.sinks.push(SinkSection::Hdf5(nexus));
    }
    let summary = replay::replay(config.clone(), &outputs.capture, Pace::AsFastAsPossible)?;
    show!("{summary}");
    replay::report_truth(&config, &replay::load_truth(&outputs.truth)?)?;
    damaged_input(&summary)?;
    match args.monitor {
        Some(address) => monitor(config, &outputs.capture, address, args.monitor_rate),
        None => Ok(()),
    }
}

/// The demo's run received live with the control plane at `address`, the capture sent over loopback
/// at `rate` frames a second, looping, until SIGINT or SIGTERM. Nothing is stored: the monitor is
/// what this is for.
fn monitor(mut config: Config, capture: &Path, address: SocketAddr, rate: f64) -> Result<()> {
    // Ports free now, bound again by the run at once.
    let ports: Vec<u16> = {
        let n = config.geometry()?.ports();
        let held: Vec<_> = (0..n).map(|_| std::net::UdpSocket::bind("127.0.0.1:0")).collect::<Result<_, _>>()?;
        held.iter().map(|s| s.local_addr().map(|a| a.port())).collect::<Result<_, _>>()?
    };
    config.detector.udp_ports = Some(ports.clone());
    config.detector.first_udp_port = None;
    config.udp.bind_address = "127.0.0.1".parse()?;
    config.control.enabled = true;
    config.control.listen_address = address;
    config.sinks = vec![SinkSection::Null(NullSection::default())];
    let _ = hitgate::control::prometheus();
    let plan = Plan::new(config).context("preparing the monitored run")?;
    let source = plan.open_live_source().context("binding the monitored run's ports")?;
    let listener = hitgate::control::bind(address)?;
    let capture = open_capture(capture)?;
    let stop = stop_on_signals()?;
    say!(
        "\n== the live monitor: http://{}/ — the run above sent again at {rate} frames/s; Ctrl-C to stop",
        listener.local_addr()?
    );
    let progress = Progress::default();
    let options = LiveOptions {
        stop: Arc::clone(&stop),
        reload: Arc::new(AtomicBool::new(false)),
        control: Some(listener),
        config_path: None,
        duration: None,
        progress: &progress,
    };
    let send_options = SendOptions {
        target: SendTarget::Udp([127, 0, 0, 1].into()),
        ports,
        pace: SendPace::FrameRate { hz: rate },
        loops: u32::MAX,
        faults: SendFaults::default(),
        batch: 64,
        send_buffer_bytes: 4 << 20,
    };
    let summary = std::thread::scope(|s| {
        let sender = s.spawn(|| {
            let sent = send(&capture, &send_options, &stop);
            // The run ends with the sender, whichever stops first.
            stop.store(true, Ordering::Relaxed);
            sent
        });
        let summary = plan.serve_live(source, options);
        stop.store(true, Ordering::Relaxed);
        let _ = sender.join();
        summary
    })?;
    show!("{summary}");
    Ok(())
}
