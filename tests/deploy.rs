//! What an edge node installs beside the binary: the systemd unit (checked by `systemd-analyze
//! verify`), the readiness and watchdog it relies on (a run speaking to a notification socket as
//! systemd's), and the Prometheus rules and Grafana dashboard (every metric they name exists in a live
//! run's `/metrics`; the rules pass `promtool check rules`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::live::{bin, free_ports, http};

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A tool the check needs, or `None` (failing where everything is required).
fn tool(name: &str, package: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(name)).find(|p| p.is_file()));
    if found.is_none() {
        common::missing(&format!("{name} (Debian's {package}; scripts/setup installs it)"));
    }
    found
}

/// `systemd-analyze verify` of `unit` saved as `name` in `dir`: its exit status and what it said.
fn verify(dir: &Path, name: &str, unit: &str, analyze: &Path) -> (bool, String) {
    let path = dir.join(name);
    std::fs::write(&path, unit).unwrap();
    let out = Command::new(analyze).arg("verify").arg(&path).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).trim().to_string())
}

#[test]
fn the_service_unit_passes_systemd_analyze_verify() {
    let Some(analyze) = tool("systemd-analyze", "systemd") else { return };
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(repo("deploy/systemd/hitgate@.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/bin/hitgate run --config /etc/hitgate/%i.toml"),
        "as the package installs it"
    );
    for wanted in ["Type=notify", "WatchdogSec=", "LimitMEMLOCK=", "Restart=on-failure", "ExecReload="] {
        assert!(unit.contains(wanted), "the unit sets {wanted}");
    }
    // Verified against the binary this build made, where the package puts /usr/bin/hitgate.
    let unit = unit.replace("/usr/bin/hitgate", bin());
    let (ok, said) = verify(dir.path(), "hitgate@beamline.service", &unit, &analyze);
    assert!(ok && said.is_empty(), "systemd-analyze verify: {said}");
    // The check is one that can fail: a misspelt setting is reported.
    let broken = unit.replace("Type=notify", "Type=notfy");
    let (_, said) = verify(dir.path(), "hitgate@broken.service", &broken, &analyze);
    assert!(said.contains("notfy"), "a broken unit is reported: {said:?}");
}

#[test]
fn the_sysctl_file_raises_the_receive_buffer_to_what_configs_ask() {
    let text = std::fs::read_to_string(repo("deploy/sysctl/60-hitgate.conf")).unwrap();
    let value = |key: &str| -> u64 {
        let line = text.lines().find(|l| l.starts_with(key)).unwrap_or_else(|| panic!("{key} set"));
        line.split('=').nth(1).unwrap().trim().parse().unwrap()
    };
    let live = hitgate::config::Config::load(&repo("configs/jungfrau-live.toml")).unwrap();
    assert!(value("net.core.rmem_max") >= live.udp.recv_buffer_bytes as u64);
    assert!(value("net.core.netdev_max_backlog") >= 10_000);
}

#[test]
fn a_run_tells_the_service_manager_it_is_ready_and_feeds_its_watchdog() {
    let _turn = common::live::turn();
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let ports = free_ports(4);
    let config = dir.path().join("eiger.toml");
    std::fs::write(
        &config,
        format!(
            "[detector]\nmodel = \"eiger-10g-16bit\"\nmodules = 2\nudp_ports = {ports:?}\n\
             [udp]\nbind_address = \"127.0.0.1\"\nrealtime_priority = 5\n[control]\nlisten_address = \"127.0.0.1:0\"\n\
             [[sink]]\nkind = \"null\"\n"
        ),
    )
    .unwrap();
    let live = common::live::LiveRun::spawn(
        &config,
        dir.path(),
        &[("NOTIFY_SOCKET", socket_path.as_os_str()), ("WATCHDOG_USEC", std::ffi::OsStr::new("400000"))],
    );
    let control = live.control.clone();
    let started = Instant::now();
    let mut said = Vec::new();
    let mut buf = [0u8; 256];
    while started.elapsed() < Duration::from_secs(15) && said.iter().filter(|s| *s == "WATCHDOG=1").count() < 3 {
        if let Ok(n) = socket.recv(&mut buf) {
            let message = String::from_utf8_lossy(&buf[..n]).to_string();
            if message == "READY=1" {
                // Ready means serving: the control plane answers at once.
                assert_eq!(http(&control, "GET", "/status").0, 200);
            }
            said.push(message);
        }
    }
    let fed = said.iter().filter(|s| *s == "WATCHDOG=1").count();
    assert_eq!(said.first().map(String::as_str), Some("READY=1"), "readiness first: {said:?}");
    assert!(fed >= 3, "the watchdog fed every 200 ms (half of WATCHDOG_USEC): {said:?}");
    // Fields 4 on of a thread's stat (after its state), by the thread's name.
    let thread_stat = |wanted: &str| -> Option<Vec<i64>> {
        std::fs::read_dir(format!("/proc/{}/task", live.child.id())).unwrap().find_map(|t| {
            let stat = std::fs::read_to_string(t.ok()?.path().join("stat")).ok()?;
            let (name, rest) = stat.split_once(" (")?.1.split_once(") ")?;
            (name == wanted).then(|| rest.split_whitespace().skip(1).map(|f| f.parse().unwrap_or(-1)).collect())
        })
    };
    // The control plane runs at the lowest priority: drawing the monitor's pictures never keeps the
    // receiving thread from a core. Field 19 of stat is the nice value.
    assert_eq!(thread_stat("hg-control").map(|f| f[15]), Some(19), "the control plane's thread is niced");
    // Fields 40 and 41: the real-time priority and the policy (1, SCHED_FIFO) of the receiving thread.
    let source = thread_stat("hg-source").map(|f| (f[36], f[37]));
    let (output, _) = live.terminate();
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    // SAFETY: geteuid only reads the process's credentials.
    if unsafe { libc::geteuid() } == 0 {
        assert_eq!(source, Some((5, 1)), "the receiving thread runs at real-time priority 5: {stderr}");
    } else {
        assert!(stderr.contains("udp.realtime_priority = 5 refused"), "a refused priority is said: {stderr}");
    }
}

/// Every `hitgate_…` metric a PromQL text names, with the label values it matches on (`label="v"`,
/// or each alternative of `label=~"a|b"`), the node's own `instance` aside.
fn named_metrics(promql: &str) -> Vec<(String, Vec<(String, String)>)> {
    let metric = regex::Regex::new(r#"(hitgate_[a-z0-9_]+)(\{([^}]*)\})?"#).unwrap();
    let matcher = regex::Regex::new(r#"(\w+)=(~?)"([^"]*)""#).unwrap();
    metric
        .captures_iter(promql)
        .map(|c| {
            let mut labels = Vec::new();
            for m in matcher.captures_iter(c.get(3).map_or("", |m| m.as_str())) {
                if &m[1] == "instance" {
                    continue;
                }
                let values: Vec<&str> = if &m[2] == "~" { m[3].split('|').collect() } else { vec![&m[3]] };
                labels.extend(values.into_iter().map(|v| (m[1].to_string(), v.to_string())));
            }
            (c[1].to_string(), labels)
        })
        .collect()
}

/// The samples of a `/metrics` text: each name with its label pairs.
fn samples(text: &str) -> Vec<(String, Vec<(String, String)>)> {
    text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).map(|l| named_metrics(l).remove(0)).collect()
}

/// `/metrics` of a live run of a simulated module with `trigger` (config sections), after it judged
/// 30 frames.
fn live_metrics(trigger: &str) -> String {
    let _turn = common::live::turn();
    let dir = tempfile::tempdir().unwrap();
    let sim = common::simulated(
        &dir.path().join("sim"),
        &hitgate::sim::SimConfig { frames: 30, hit_rate: 0.5, seed: 44, ..hitgate::sim::SimConfig::default() },
    );
    let ports = free_ports(1);
    let live = common::live::LiveRun::start(
        &dir.path().join("sim"),
        "jungfrau-1if",
        &ports,
        &dir.path().join("live"),
        trigger,
    );
    common::live::send(&sim.capture, &ports, &["--frame-rate-hz", "100"]);
    common::live::wait_for_status(&live.control, "30 frames judged", |s| s["frames_done"].as_u64() == Some(30));
    // The ordering thread publishes queue and pool levels every 100 ms.
    std::thread::sleep(Duration::from_millis(300));
    let (code, text) = http(&live.control, "GET", "/metrics");
    assert_eq!(code, 200);
    let (output, _) = live.terminate();
    assert!(output.status.success());
    text
}

#[test]
fn every_metric_the_dashboard_and_the_alert_rules_name_is_exported() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo("deploy/grafana/hitgate.json")).unwrap()).unwrap();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            exprs.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    assert!(exprs.len() >= 20, "a dashboard of {} queries", exprs.len());
    let rules = std::fs::read_to_string(repo("deploy/prometheus/hitgate-rules.yml")).unwrap();
    for wanted in ["hitgate_packets_lost_total", "hitgate_sink_behind", "hitgate_fpga_card_up", "up{job=\"hitgate\"}"] {
        assert!(rules.contains(wanted), "an alert on {wanted}");
    }
    let named: Vec<_> = exprs.iter().map(String::as_str).chain([rules.as_str()]).flat_map(named_metrics).collect();

    // The spots trigger's run shows its cut in spots; the FPGA trigger's (its emulated card), held to
    // a target rate, shows the card, the threshold and the target.
    let spots = "\n[trigger]\nkind = \"spots\"\n[trigger.spots]\nmin_spots = 4\n";
    let fpga = "\n[trigger]\nkind = \"fpga\"\n[trigger.fpga]\ncard = \"emulated\"\nmodel = \"builtin-int8\"\n\
                [trigger.rate]\ntarget_accept_rate = 0.3\n";
    let exported: Vec<_> = [spots, fpga].into_iter().flat_map(|t| samples(&live_metrics(t))).collect();
    let mut dead = Vec::new();
    for (name, labels) in &named {
        // Each label value matched on is exported by some sample of the metric.
        let found = exported.iter().any(|(n, _)| n == name)
            && labels.iter().all(|pair| exported.iter().any(|(n, l)| n == name && l.contains(pair)));
        if !found {
            dead.push(format!("{name}{labels:?}"));
        }
    }
    dead.sort();
    dead.dedup();
    assert!(dead.is_empty(), "named but never exported by a live run: {dead:?}");

    let Some(promtool) = tool("promtool", "prometheus") else { return };
    let out = Command::new(promtool)
        .args(["check", "rules"])
        .arg(repo("deploy/prometheus/hitgate-rules.yml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_doctor_reports_on_this_host_and_fails_strictly_on_a_shortfall() {
    let config = repo("configs/jungfrau-live.toml");
    let out = Command::new(bin()).args(["doctor", "--config", config.to_str().unwrap()]).output().unwrap();
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{table}{}", String::from_utf8_lossy(&out.stderr));
    for check in [
        "receive buffer (net.core.rmem_max)",
        "MTU of lo (127.0.0.1)",
        "pinned cores",
        "free memory",
        "disk for sink[0] (raw)",
        "clock synchronised",
    ] {
        assert!(table.contains(check), "{check} in:\n{table}");
    }
    assert!(table.lines().last().unwrap().contains(" ok, "), "a count at the end:\n{table}");
    // No disk holds a billion hours of frames: with --strict, a failed check fails the command.
    let out = Command::new(bin())
        .args(["doctor", "--config", config.to_str().unwrap(), "--strict", "--hours", "1e9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
}
