//! The service manager's notification protocol (`sd_notify`), spoken directly: a datagram of
//! `KEY=VALUE` lines to the Unix socket `$NOTIFY_SOCKET` names. systemd starts a `Type=notify` unit's
//! dependants once `READY=1` arrives, and restarts it when `WATCHDOG=1` stops arriving within
//! `WatchdogSec` (`$WATCHDOG_USEC`). Without `$NOTIFY_SOCKET` (not run by systemd) nothing is sent.

use std::time::Duration;

/// Sends `state` (e.g. `READY=1`) to the service manager. Returns whether there was one to tell.
///
/// # Errors
/// The socket named by `$NOTIFY_SOCKET` cannot be reached.
pub fn notify(state: &str) -> std::io::Result<bool> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return Ok(false) };
    let socket = std::os::unix::net::UnixDatagram::unbound()?;
    let bytes = path.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        // An abstract socket: systemd's own, named with a leading `@`.
        use std::os::linux::net::SocketAddrExt;
        let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        socket.send_to_addr(state.as_bytes(), &address)?;
    } else {
        socket.send_to(state.as_bytes(), std::path::Path::new(&path))?;
    }
    Ok(true)
}

/// How often the watchdog must be fed, when the service manager asked for it: half its timeout,
/// as systemd advises. `None` without `$WATCHDOG_USEC`, or when `$WATCHDOG_PID` names another process.
pub fn watchdog_every() -> Option<Duration> {
    if let Some(pid) = std::env::var("WATCHDOG_PID").ok().and_then(|p| p.parse::<u32>().ok())
        && pid != std::process::id()
    {
        return None;
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}
