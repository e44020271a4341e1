//! Running `hitgate run` as operators do, over loopback, and talking to its control plane: shared
//! by the live tests and the monitor's browser test.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The live tests assert zero loss, so they take turns rather than share the two cores.
pub fn turn() -> std::sync::MutexGuard<'static, ()> {
    super::one_at_a_time()
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_hitgate")
}

/// `n` UDP ports free right now (bound and released).
pub fn free_ports(n: usize) -> Vec<u16> {
    let sockets: Vec<_> = (0..n).map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
    sockets.iter().map(|s| s.local_addr().unwrap().port()).collect()
}

pub struct LiveRun {
    pub child: Child,
    pub out: PathBuf,
    pub config: PathBuf,
    /// Where the control plane listens.
    pub control: String,
    /// Everything the run has written to stderr so far.
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl LiveRun {
    /// Starts `hitgate run` for a simulated run's detector on `ports` and waits until it receives.
    /// `extra` is added to the config's `[assembler]` section (and may open new sections).
    pub fn start(sim_dir: &Path, model: &str, ports: &[u16], out: &Path, extra: &str) -> LiveRun {
        Self::start_with(sim_dir, model, ports, out, extra, "")
    }

    /// As [`LiveRun::start`], with `udp_extra` added to the `[udp]` section.
    pub fn start_with(sim_dir: &Path, model: &str, ports: &[u16], out: &Path, extra: &str, udp_extra: &str) -> LiveRun {
        Self::start_full(sim_dir, model, ports, out, extra, udp_extra, "")
    }

    /// As [`LiveRun::start_with`], with `control_extra` added to the `[control]` section.
    pub fn start_full(
        sim_dir: &Path,
        model: &str,
        ports: &[u16],
        out: &Path,
        extra: &str,
        udp_extra: &str,
        control_extra: &str,
    ) -> LiveRun {
        let config = out.join("live.toml");
        std::fs::create_dir_all(out).unwrap();
        let ports_list: Vec<String> = ports.iter().map(u16::to_string).collect();
        std::fs::write(
            &config,
            format!(
                r#"[detector]
model = "{model}"
modules = 1
udp_ports = [{ports}]

[assembler]
frame_timeout_us = 200000
{extra}

[udp]
bind_address = "127.0.0.1"
recv_buffer_bytes = 67108864
{udp_extra}

[control]
listen_address = "127.0.0.1:0"
{control_extra}

[calibration]
file = "{calibration}"

[[sink]]
kind = "raw"
dir = "raw"

[[sink]]
kind = "features"
path = "features.jsonl"
"#,
                ports = ports_list.join(", "),
                calibration = sim_dir.join("calibration.bin").display(),
            ),
        )
        .unwrap();
        Self::spawn(&config, out, &[])
    }

    /// Starts `hitgate run --config config` with `env` added to its environment, and waits until it
    /// receives.
    pub fn spawn(config: &Path, out: &Path, env: &[(&str, &std::ffi::OsStr)]) -> LiveRun {
        // The duration is a safety net: every test stops its run itself. The control plane answers
        // at the lowest priority, so on a loaded machine a test can take over a minute, and a run
        // that stopped by itself before its test was done would take the control plane with it.
        let mut child = Command::new(bin())
            .args(["run", "--config", config.to_str().unwrap(), "--duration-s", "300"])
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        let mut control = String::new();
        let mut receiving = String::new();
        let started = Instant::now();
        while !line.contains("receiving") {
            line.clear();
            assert!(stderr.read_line(&mut line).unwrap() > 0, "hitgate run exited before receiving");
            assert!(started.elapsed() < Duration::from_secs(20), "hitgate run did not start");
            if let Some(rest) = line.strip_prefix("control plane on http://") {
                control = rest.split_whitespace().next().unwrap().to_string();
            }
            receiving.clone_from(&line);
        }
        // Keep draining stderr so the child never blocks on a full pipe, and keep what it says.
        let said = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = std::sync::Arc::clone(&said);
        std::thread::spawn(move || {
            let mut line = String::new();
            while stderr.read_line(&mut line).unwrap_or(0) > 0 {
                sink.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        said.lock().unwrap().push_str(&receiving);
        LiveRun { child, out: out.to_path_buf(), config: config.to_path_buf(), control, stderr: said }
    }

    /// SIGTERM, then the exit status and the summary it printed.
    pub fn terminate(mut self) -> (Output, String) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let started = Instant::now();
        loop {
            if self.child.try_wait().unwrap().is_some() {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "hitgate run did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
        let output = self.child.wait_with_output().unwrap();
        let summary = String::from_utf8_lossy(&output.stdout).to_string();
        (output, summary)
    }
}

pub fn send(capture: &Path, ports: &[u16], args: &[&str]) -> String {
    let to = format!("127.0.0.1:{}", ports.iter().map(u16::to_string).collect::<Vec<_>>().join(","));
    send_to(capture, &to, args)
}

pub fn send_to(capture: &Path, to: &str, args: &[&str]) -> String {
    let o = Command::new(bin()).args(["send", capture.to_str().unwrap(), "--to", to]).args(args).output().unwrap();
    assert!(o.status.success(), "send: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// The number just before the first `word` in `text`, e.g. 710 in `710 placed`.
pub fn number_before(text: &str, word: &str) -> u64 {
    let at = text.find(word).unwrap_or_else(|| panic!("{word:?} not in:\n{text}"));
    let head = text[..at].trim_end();
    head.rsplit(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
}

/// A sink's frames written and frames it could not take, from the run's summary.
pub fn sink_counts(summary: &str, name: &str) -> (u64, u64) {
    let line = summary.lines().find(|l| l.starts_with(&format!("sink {name} "))).unwrap();
    let written = line.split_whitespace().nth(2).unwrap().parse().unwrap();
    let dropped = summary
        .lines()
        .find(|l| l.ends_with(&format!("the {name} sink's queue full")))
        .map_or(0, |l| l.split_whitespace().next().unwrap().parse().unwrap());
    (written, dropped)
}

pub fn wait_for_status(control: &str, what: &str, done: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        let (code, body) = http(control, "GET", "/status");
        assert_eq!(code, 200, "{body}");
        let status: serde_json::Value = serde_json::from_str(&body).unwrap();
        if done(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "{what}: never came; last /status {status}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn http(addr: &str, method: &str, path: &str) -> (u16, String) {
    http_with(addr, method, path, "")
}

/// As [`http`], with `headers` (each ending in CRLF) in the request.
pub fn http_with(addr: &str, method: &str, path: &str, headers: &str) -> (u16, String) {
    let (code, body) = request(addr, method, path, headers);
    (code, String::from_utf8_lossy(&body).to_string())
}

/// As [`http`], for a body that is not text: the status and the body's bytes.
pub fn http_bytes(addr: &str, path: &str) -> (u16, Vec<u8>) {
    request(addr, "GET", path, "")
}

/// One request and its answer: the status and the body's bytes.
fn request(addr: &str, method: &str, path: &str, headers: &str) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // One write: `write!` on a socket sends each piece of the format by itself, and a piece that
    // arrives after the control plane gave up on the request is answered with a reset.
    stream.write_all(format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}\r\n").as_bytes()).unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).unwrap();
    let head_end = reply.windows(4).position(|w| w == b"\r\n\r\n").map_or(reply.len(), |at| at + 4);
    let head = String::from_utf8_lossy(&reply[..head_end]).to_string();
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, reply[head_end..].to_vec())
}
