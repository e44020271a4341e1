//! What an edge node installs beside the binary: the systemd unit (checked by `systemd-analyze
//! verify`), the readiness and watchdog it relies on (a run speaking to a notification socket as
//! systemd's), and the Prometheus rules and Grafana dashboard (every metric they name exists in a live
//! run's `/metrics`; the rules pass `promtool check rules`).

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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
             [udp]\nbind_address = \"127.0.0.1\"\n[control]\nlisten_address = \"127.0.0.1:0\"\n\
             [[sink]]\nkind = \"null\"\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(bin())
        .args(["run", "--config", config.to_str().unwrap(), "--duration-s", "30"])
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut control = String::new();
    let mut line = String::new();
    while control.is_empty() {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "hitgate run exited before serving");
        if let Some(rest) = line.strip_prefix("control plane on http://") {
            control = rest.split_whitespace().next().unwrap().to_string();
        }
    }
    std::thread::spawn(move || for _ in stderr.lines() {});
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
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    assert!(child.wait().unwrap().success());
}
