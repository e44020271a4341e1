//! The host checked against what a config asks of it, as the detector vendor's receiver
//! documentation tells operators to: receive buffers, jumbo frames on the interfaces the detector sends
//! to, NIC rings, the pinned cores' clock governor and isolation, memory for the frame pool, disk for
//! the sinks, and clock sync. Each check that does not pass carries the command that fixes it. What
//! the host says is read through [`Host`] (files of /proc and /sys, a few tools' output), so the checks
//! are tested against made-up hosts.

use std::path::Path;

use super::Config;
use crate::detector::GeometryError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
    /// The host does not say (no such file, the tool is missing).
    Unknown,
}

#[derive(Debug)]
pub struct HostCheck {
    pub name: String,
    pub verdict: Verdict,
    pub found: String,
    pub wanted: String,
    /// The command that fixes it, for a check that did not pass (or that puts it to use).
    pub fix: String,
}

impl HostCheck {
    fn new(
        name: impl Into<String>,
        verdict: Verdict,
        found: impl Into<String>,
        wanted: impl Into<String>,
    ) -> HostCheck {
        HostCheck { name: name.into(), verdict, found: found.into(), wanted: wanted.into(), fix: String::new() }
    }

    /// What to do even when the check passes.
    fn with_advice(mut self, advice: impl Into<String>) -> HostCheck {
        self.fix = advice.into();
        self
    }

    fn fix(mut self, fix: impl Into<String>) -> HostCheck {
        if self.verdict != Verdict::Ok {
            self.fix = fix.into();
        }
        self
    }
}

/// What the checks read of the host: files of /proc and /sys, and the output of a few tools.
pub trait Host {
    fn read(&self, path: &str) -> Option<String>;
    /// The standard output of `program args`, when it ran and succeeded.
    fn run(&self, program: &str, args: &[&str]) -> Option<String>;
}

/// The machine this runs on.
pub struct ThisHost;

impl Host for ThisHost {
    fn read(&self, path: &str) -> Option<String> {
        std::fs::read_to_string(path).ok()
    }

    fn run(&self, program: &str, args: &[&str]) -> Option<String> {
        let out = std::process::Command::new(program).args(args).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).to_string())
    }
}

/// Every check of `host` against `config`, the sinks' disks held to `hours` at `frame_rate_hz`.
///
/// # Errors
/// The config's detector geometry cannot be built.
pub fn check_host(
    config: &Config,
    host: &dyn Host,
    frame_rate_hz: f64,
    hours: f64,
) -> Result<Vec<HostCheck>, GeometryError> {
    let geometry = config.geometry()?;
    let mut checks = Vec::new();
    if config.dma.device.is_none() {
        checks.push(receive_buffer(config, host));
        checks.push(backlog(host));
        let datagram = geometry.model.payload_bytes + 48;
        for (iface, address) in interfaces(config, host) {
            checks.push(mtu(host, &iface, &address, datagram));
            checks.push(rings(host, &iface));
        }
    }
    checks.extend(cores(config, host));
    let frame_bytes = geometry.frame_bytes() as u64;
    checks.push(memory(config, host, frame_bytes));
    checks.extend(disks(config, host, frame_bytes, frame_rate_hz, hours));
    checks.push(clock(host));
    Ok(checks)
}

fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes >> 20)
}

fn number(host: &dyn Host, path: &str) -> Option<u64> {
    host.read(path)?.trim().parse().ok()
}

fn receive_buffer(config: &Config, host: &dyn Host) -> HostCheck {
    let wanted = config.udp.recv_buffer_bytes as u64;
    let name = "receive buffer (net.core.rmem_max)";
    let wanted_text = format!("≥ {} (udp.recv_buffer_bytes)", mib(wanted));
    match number(host, "/proc/sys/net/core/rmem_max") {
        None => HostCheck::new(name, Verdict::Unknown, "unreadable", wanted_text),
        Some(have) => HostCheck::new(name, if have >= wanted { Verdict::Ok } else { Verdict::Fail }, mib(have), wanted_text)
            .fix(format!(
                "sysctl -w net.core.rmem_max={wanted}; for good: sysctl --system with /etc/sysctl.d/60-hitgate.conf (the package installs it; deploy/sysctl/ in a checkout)"
            )),
    }
}

fn backlog(host: &dyn Host) -> HostCheck {
    let name = "packet backlog (net.core.netdev_max_backlog)";
    match number(host, "/proc/sys/net/core/netdev_max_backlog") {
        None => HostCheck::new(name, Verdict::Unknown, "unreadable", "≥ 250000"),
        Some(have) => HostCheck::new(
            name,
            if have >= 250_000 { Verdict::Ok } else { Verdict::Warn },
            have.to_string(),
            "≥ 250000",
        )
        .fix("sysctl -w net.core.netdev_max_backlog=250000 (/etc/sysctl.d/60-hitgate.conf sets it)"),
    }
}

/// The interfaces that own the addresses the detector sends to, as `ip -o addr` lists them; for an
/// unspecified address, every interface but loopback.
fn interfaces(config: &Config, host: &dyn Host) -> Vec<(String, String)> {
    let listing = host.run("ip", &["-o", "addr", "show"]).unwrap_or_default();
    let owners: Vec<(String, String)> = listing
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace().skip(1);
            let iface = words.next()?.trim_end_matches(':').to_string();
            let _family = words.next()?;
            let address = words.next()?.split('/').next()?.to_string();
            Some((iface, address))
        })
        .collect();
    let mut wanted: Vec<std::net::IpAddr> = vec![config.udp.bind_address];
    wanted.extend(&config.udp.module_bind_addresses);
    let mut found = Vec::new();
    for address in wanted {
        let matches: Vec<_> = owners
            .iter()
            .filter(|(iface, a)| if address.is_unspecified() { iface != "lo" } else { *a == address.to_string() })
            .cloned()
            .collect();
        if matches.is_empty() {
            found.push(("?".to_string(), address.to_string()));
        }
        for m in matches {
            if !found.contains(&m) {
                found.push(m);
            }
        }
    }
    found
}

fn mtu(host: &dyn Host, iface: &str, address: &str, datagram: usize) -> HostCheck {
    // The datagram, its UDP header (8) and its IPv4 header (20) in one Ethernet frame.
    let wanted = datagram + 28;
    let name = format!("MTU of {iface} ({address})");
    let wanted_text = format!("≥ {wanted} ({datagram}-byte datagrams)");
    match number(host, &format!("/sys/class/net/{iface}/mtu")) {
        None => HostCheck::new(name, Verdict::Fail, "no interface owns this address", wanted_text)
            .fix("set udp.bind_address to an address of the interface the detector sends to (ip -o addr)"),
        Some(have) => HostCheck::new(
            name,
            if have as usize >= wanted { Verdict::Ok } else { Verdict::Fail },
            have.to_string(),
            wanted_text,
        )
        .fix(format!("ip link set dev {iface} mtu 9000 (and jumbo frames on the switch ports between)")),
    }
}

fn rings(host: &dyn Host, iface: &str) -> HostCheck {
    let name = format!("NIC receive ring of {iface}");
    if iface == "lo" || iface == "?" {
        return HostCheck::new(name, Verdict::Ok, "no ring (not a NIC)", "the ring's maximum");
    }
    let Some(text) = host.run("ethtool", &["-g", iface]) else {
        return HostCheck::new(name, Verdict::Unknown, "ethtool -g does not say", "the ring's maximum")
            .fix("apt install ethtool, then ethtool -g IFACE (virtual interfaces have no ring)");
    };
    // The first `RX:` line is the maximum, the second the current setting.
    let rx: Vec<u64> =
        text.lines().filter_map(|l| l.trim().strip_prefix("RX:")).filter_map(|v| v.trim().parse().ok()).collect();
    match rx[..] {
        [most, now, ..] => HostCheck::new(
            name,
            if now >= most { Verdict::Ok } else { Verdict::Warn },
            now.to_string(),
            format!("{most} (its maximum)"),
        )
        .fix(format!("ethtool -G {iface} rx {most}")),
        _ => HostCheck::new(name, Verdict::Unknown, "ethtool -g does not say", "the ring's maximum"),
    }
}

/// Cores in a list such as `2-5,8` (the kernel's format); empty for an empty or unreadable list.
fn core_list(text: &str) -> Vec<usize> {
    let mut cores = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                    cores.extend(a..=b);
                }
            }
            None => cores.extend(part.parse::<usize>().ok()),
        }
    }
    cores
}

fn cores(config: &Config, host: &dyn Host) -> Vec<HostCheck> {
    let mut pinned: Vec<usize> = config.udp.receiver_cpu.into_iter().collect();
    pinned.extend(&config.udp.receiver_cpus);
    pinned.extend(&config.reducer.cpus);
    pinned.sort_unstable();
    pinned.dedup();
    if pinned.is_empty() {
        return vec![
            HostCheck::new("pinned cores", Verdict::Warn, "none pinned", "udp.receiver_cpu, reducer.cpus")
                .fix("pin the receiving and reducing threads to cores near the NIC (lscpu -e; /sys/class/net/IFACE/device/numa_node)"),
        ];
    }
    let online = core_list(&host.read("/sys/devices/system/cpu/online").unwrap_or_default());
    let mut checks = Vec::new();
    for &core in &pinned {
        let name = format!("core {core}: clock governor");
        if !online.is_empty() && !online.contains(&core) {
            checks.push(HostCheck::new(format!("core {core}"), Verdict::Fail, "not online", "an online core").fix(
                format!(
                    "pin to cores this host has: {}",
                    host.read("/sys/devices/system/cpu/online").unwrap_or_default().trim()
                ),
            ));
            continue;
        }
        let path = format!("/sys/devices/system/cpu/cpu{core}/cpufreq/scaling_governor");
        checks.push(match host.read(&path) {
            None => {
                HostCheck::new(name, Verdict::Unknown, "no cpufreq (a fixed clock or a virtual machine)", "performance")
            }
            Some(g) => {
                let g = g.trim();
                HostCheck::new(name, if g == "performance" { Verdict::Ok } else { Verdict::Warn }, g, "performance")
                    .fix(format!("cpupower -c {core} frequency-set -g performance"))
            }
        });
    }
    let isolated = core_list(&host.read("/sys/devices/system/cpu/isolated").unwrap_or_default());
    let list = pinned.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
    let shared: Vec<_> = pinned.iter().filter(|c| !isolated.contains(c)).collect();
    checks.push(
        HostCheck::new(
            "pinned cores isolated from the scheduler",
            if shared.is_empty() { Verdict::Ok } else { Verdict::Warn },
            if isolated.is_empty() { "none isolated".to_string() } else { format!("isolated: {isolated:?}") },
            list.clone(),
        )
        .fix(format!("add isolcpus={list} nohz_full={list} to GRUB_CMDLINE_LINUX, update-grub, reboot")),
    );
    // The unit's other threads (control plane, sinks, ordering) belong on the cores nothing is pinned to.
    let rest: Vec<String> = online.iter().filter(|c| !pinned.contains(c)).map(usize::to_string).collect();
    if !rest.is_empty() {
        checks.push(
            HostCheck::new(
                "the service's other threads",
                Verdict::Ok,
                format!("cores {}", rest.join(",")),
                "off the pinned cores",
            )
            .with_advice(format!("systemctl edit hitgate@NAME: [Service] CPUAffinity={}", rest.join(" "))),
        );
    }
    checks
}

/// Sinks that keep whole frames in their queues and on disk.
fn stores_frames(kind: &str) -> bool {
    matches!(kind, "raw" | "hdf5")
}

fn memory(config: &Config, host: &dyn Host, frame_bytes: u64) -> HostCheck {
    let sinks = config.sinks.iter().filter(|s| stores_frames(s.kind_name())).count() as u64;
    let pool = config.assembler.pool_frames as u64 * frame_bytes;
    let queues = sinks * config.storage.queue_frames as u64 * frame_bytes;
    let need = pool + queues;
    let wanted = format!("≥ {} (pool {} + sink queues {})", mib(need), mib(pool), mib(queues));
    let available = host.read("/proc/meminfo").and_then(|text| {
        let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
        line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kib| kib * 1024)
    });
    match available {
        None => HostCheck::new("free memory", Verdict::Unknown, "unreadable", wanted),
        Some(have) => {
            let verdict = if need > have {
                Verdict::Fail
            } else if need * 5 > have * 4 {
                Verdict::Warn
            } else {
                Verdict::Ok
            };
            HostCheck::new("free memory", verdict, mib(have), wanted)
                .fix("lower assembler.pool_frames or storage.queue_frames, or stop what else uses the memory")
        }
    }
}

fn disks(config: &Config, host: &dyn Host, frame_bytes: u64, frame_rate_hz: f64, hours: f64) -> Vec<HostCheck> {
    let kept = config.trigger.rate.target_accept_rate.unwrap_or(0.1);
    let mut config = config.clone();
    let mut checks = Vec::new();
    for (i, sink) in config.sinks.iter_mut().enumerate() {
        let kind = sink.kind_name();
        let Some(path) = sink.config_mut().output_mut().map(|p| p.clone()) else { continue };
        // Whole frames uncompressed for the frame-storing sinks (an upper bound); a record a frame else.
        let bytes_per_s =
            if stores_frames(kind) { kept * frame_rate_hz * frame_bytes as f64 } else { frame_rate_hz * 400.0 };
        let name = format!("disk for sink[{i}] ({kind})");
        let wanted = format!(
            "≥ {:.0} GiB: {hours} h at {frame_rate_hz} frames/s, {:.0}% kept",
            bytes_per_s * hours * 3600.0 / (1u64 << 30) as f64,
            kept * 100.0
        );
        let Some(free) = free_bytes(host, &path) else {
            checks.push(HostCheck::new(name, Verdict::Unknown, format!("df cannot read {}", path.display()), wanted));
            continue;
        };
        let lasts = free as f64 / bytes_per_s.max(1.0) / 3600.0;
        checks.push(
            HostCheck::new(
                name,
                if lasts >= hours { Verdict::Ok } else { Verdict::Fail },
                format!("{} free: {lasts:.1} h", mib(free)),
                wanted,
            )
            .fix(format!("free space under {}, or point sink[{i}] at a larger disk", path.display())),
        );
    }
    checks
}

/// Free bytes of the file system that holds `path` (or the nearest folder above it that exists).
fn free_bytes(host: &dyn Host, path: &Path) -> Option<u64> {
    let existing = path.ancestors().find(|p| !p.as_os_str().is_empty() && p.exists()).unwrap_or(Path::new("."));
    let text = host.run("df", &["-B1", "--output=avail", existing.to_str()?])?;
    text.lines().nth(1)?.trim().parse().ok()
}

fn clock(host: &dyn Host) -> HostCheck {
    let name = "clock synchronised";
    let fix = "apt install chrony (or timedatectl set-ntp true): frame times and logs of several nodes must agree";
    if let Some(answer) = host.run("timedatectl", &["show", "-p", "NTPSynchronized", "--value"]) {
        let yes = answer.trim() == "yes";
        return HostCheck::new(
            name,
            if yes { Verdict::Ok } else { Verdict::Fail },
            format!("timedatectl: {}", answer.trim()),
            "yes",
        )
        .fix(fix);
    }
    if let Some(tracking) = host.run("chronyc", &["-n", "tracking"]) {
        let normal = tracking.lines().any(|l| l.starts_with("Leap status") && l.contains("Normal"));
        return HostCheck::new(
            name,
            if normal { Verdict::Ok } else { Verdict::Fail },
            "chronyc tracking",
            "leap status normal",
        )
        .fix(fix);
    }
    HostCheck::new(name, Verdict::Unknown, "neither timedatectl nor chronyc answers", "yes").fix(fix)
}

/// The checks as a table, each shortfall followed by its fix, and a count at the end.
pub fn table(checks: &[HostCheck]) -> String {
    let width = |f: fn(&HostCheck) -> &str, least: usize| {
        checks.iter().map(|c| f(c).chars().count()).max().unwrap_or(0).max(least)
    };
    let (wn, wf) = (width(|c| &c.name, 5), width(|c| &c.found, 5));
    let mut out = format!("{:<wn$}  {:<7}  {:<wf$}  wanted\n", "check", "result", "found");
    for c in checks {
        let verdict = match c.verdict {
            Verdict::Ok => "ok",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
            Verdict::Unknown => "unknown",
        };
        out += &format!("{:<wn$}  {verdict:<7}  {:<wf$}  {}\n", c.name, c.found, c.wanted);
        if !c.fix.is_empty() {
            out += &format!("{:<wn$}  fix: {}\n", "", c.fix);
        }
    }
    let count = |v: Verdict| checks.iter().filter(|c| c.verdict == v).count();
    out += &format!(
        "{} ok, {} to improve, {} failed, {} unknown\n",
        count(Verdict::Ok),
        count(Verdict::Warn),
        count(Verdict::Fail),
        count(Verdict::Unknown)
    );
    out
}

#[cfg(test)]
#[path = "host_tests.rs"]
mod tests;
