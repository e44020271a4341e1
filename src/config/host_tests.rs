use std::collections::HashMap;

use super::*;

/// A host made of the files and tool outputs given.
#[derive(Default)]
struct Fake {
    files: HashMap<String, String>,
    tools: HashMap<String, String>,
}

impl Host for Fake {
    fn read(&self, path: &str) -> Option<String> {
        self.files.get(path).cloned()
    }

    fn run(&self, program: &str, args: &[&str]) -> Option<String> {
        self.tools.get(&format!("{program} {}", args.join(" "))).cloned()
    }
}

fn config(extra: &str) -> Config {
    let text = format!(
        "[detector]\nmodel = \"jungfrau-1if\"\n[udp]\nbind_address = \"10.1.2.3\"\nrecv_buffer_bytes = 268435456\n{extra}\n[[sink]]\nkind = \"null\"\n"
    );
    // Parsed, not validated: validation checks the cores against this machine, not the fake host.
    Config::parse(&text).unwrap()
}

fn healthy() -> Fake {
    let mut host = Fake::default();
    for (path, text) in [
        ("/proc/sys/net/core/rmem_max", "268435456\n"),
        ("/proc/sys/net/core/netdev_max_backlog", "250000\n"),
        ("/sys/class/net/ens1f0/mtu", "9000\n"),
        ("/sys/devices/system/cpu/online", "0-7\n"),
        ("/sys/devices/system/cpu/isolated", "2-5\n"),
        ("/sys/devices/system/cpu/cpu2/cpufreq/scaling_governor", "performance\n"),
        ("/sys/devices/system/cpu/cpu3/cpufreq/scaling_governor", "performance\n"),
        ("/proc/meminfo", "MemTotal: 67108864 kB\nMemAvailable: 60000000 kB\n"),
    ] {
        host.files.insert(path.into(), text.into());
    }
    host.tools.insert(
        "ip -o addr show".into(),
        "1: lo    inet 127.0.0.1/8 scope host lo\n3: ens1f0    inet 10.1.2.3/24 brd 10.1.2.255 scope global ens1f0\n"
            .into(),
    );
    host.tools.insert(
        "ethtool -g ens1f0".into(),
        "Ring parameters for ens1f0:\nPre-set maximums:\nRX:\t\t8192\nTX:\t\t8192\nCurrent hardware settings:\nRX:\t\t8192\nTX:\t\t1024\n".into(),
    );
    host.tools.insert("timedatectl show -p NTPSynchronized --value".into(), "yes\n".into());
    host
}

fn verdicts(checks: &[HostCheck]) -> Vec<(String, Verdict)> {
    checks.iter().map(|c| (c.name.clone(), c.verdict)).collect()
}

#[test]
fn a_host_set_up_as_the_config_asks_passes_every_check() {
    let cfg = config("receiver_cpu = 2\n[reducer]\ncpus = [3]\n");
    let checks = check_host(&cfg, &healthy(), 1000.0, 12.0).unwrap();
    let bad: Vec<_> = checks.iter().filter(|c| c.verdict != Verdict::Ok).collect();
    assert!(bad.is_empty(), "{bad:?}");
    let rest = checks.iter().find(|c| c.name == "the service's other threads").unwrap();
    assert_eq!(rest.fix, "systemctl edit hitgate@NAME: [Service] CPUAffinity=0 1 4 5 6 7", "the cores not pinned");
    let names: Vec<_> = verdicts(&checks).into_iter().map(|(n, _)| n).collect();
    for wanted in [
        "receive buffer",
        "MTU of ens1f0 (10.1.2.3)",
        "NIC receive ring of ens1f0",
        "core 2: clock",
        "isolated",
        "free memory",
        "clock",
    ] {
        assert!(names.iter().any(|n| n.contains(wanted)), "{wanted} in {names:?}");
    }
}

#[test]
fn each_shortfall_is_named_with_its_fix() {
    let mut host = healthy();
    host.files.insert("/proc/sys/net/core/rmem_max".into(), "212992\n".into());
    host.files.insert("/sys/class/net/ens1f0/mtu".into(), "1500\n".into());
    host.files.insert("/sys/devices/system/cpu/cpu2/cpufreq/scaling_governor".into(), "powersave\n".into());
    host.files.insert("/sys/devices/system/cpu/isolated".into(), "\n".into());
    host.files.insert("/proc/meminfo".into(), "MemAvailable: 1000 kB\n".into());
    host.tools.insert(
        "ethtool -g ens1f0".into(),
        "Pre-set maximums:\nRX:\t\t8192\nCurrent hardware settings:\nRX:\t\t512\n".into(),
    );
    host.tools.insert("timedatectl show -p NTPSynchronized --value".into(), "no\n".into());
    let cfg = config("receiver_cpu = 2\n[reducer]\ncpus = [9]\n");
    let checks = check_host(&cfg, &host, 1000.0, 12.0).unwrap();
    let find = |name: &str| checks.iter().find(|c| c.name.contains(name)).unwrap_or_else(|| panic!("{name}"));
    let rmem = find("receive buffer");
    assert_eq!((rmem.verdict, rmem.found.as_str()), (Verdict::Fail, "0 MiB"));
    assert!(rmem.fix.contains("sysctl -w net.core.rmem_max=268435456"), "{}", rmem.fix);
    let mtu = find("MTU");
    assert_eq!(mtu.verdict, Verdict::Fail);
    assert!(mtu.wanted.contains("8268") && mtu.fix.contains("ip link set dev ens1f0 mtu 9000"), "{mtu:?}");
    let ring = find("ring");
    assert_eq!((ring.verdict, ring.found.as_str()), (Verdict::Warn, "512"));
    assert!(ring.fix.contains("ethtool -G ens1f0 rx 8192"));
    assert_eq!(find("core 2: clock").verdict, Verdict::Warn);
    assert_eq!(find("core 9").verdict, Verdict::Fail, "a core the host does not have");
    assert!(find("isolated").fix.contains("isolcpus=2,9"));
    assert_eq!(find("free memory").verdict, Verdict::Fail);
    assert_eq!(find("clock synchronised").verdict, Verdict::Fail);
    let text = table(&checks);
    assert!(text.contains("FAIL") && text.contains("fix: ethtool -G ens1f0 rx 8192"), "{text}");
}

#[test]
fn what_the_host_does_not_say_is_unknown_not_passed() {
    let cfg = config("");
    let checks = check_host(&cfg, &Fake::default(), 1000.0, 12.0).unwrap();
    let find = |name: &str| checks.iter().find(|c| c.name.contains(name)).unwrap_or_else(|| panic!("{name}"));
    assert_eq!(find("receive buffer").verdict, Verdict::Unknown);
    assert_eq!(find("clock").verdict, Verdict::Unknown);
    assert_eq!(find("pinned cores").verdict, Verdict::Warn, "nothing pinned is worth saying");
    // No interface owns the configured address.
    assert_eq!(find("MTU of ?").verdict, Verdict::Fail);
}

#[test]
fn core_lists_read_as_the_kernel_writes_them() {
    assert_eq!(core_list("0-3,8,10-11\n"), vec![0, 1, 2, 3, 8, 10, 11]);
    assert_eq!(core_list("\n"), Vec::<usize>::new());
}
