//! Just enough HTTP/1.1 for a control plane: one request per connection, a request line and headers
//! of at most 8 KiB, answers with a length and `Connection: close`.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use metrics_exporter_prometheus::PrometheusHandle;

use super::{ControlPlane, retune, trigger_status};

const MAX_HEAD: usize = 8192;

/// The live monitor: one page, its script and styles inline, nothing fetched from elsewhere.
const MONITOR_PAGE: &str = include_str!("monitor.html");

pub(super) async fn handle(
    mut stream: TcpStream,
    plane: &ControlPlane<'_>,
    prometheus: &PrometheusHandle,
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() + n > MAX_HEAD {
            return respond(&mut stream, 400, "text/plain", "bad request\n").await;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let mut words = text.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    // The page itself holds no data of the run: it asks for the token, and every request it makes
    // carries it.
    let page = (method, path) == ("GET", "/");
    if let Some(token) = &plane.token
        && !page
        && !carries(&text, token)
    {
        return respond(&mut stream, 401, "text/plain", "a bearer token is required\n").await;
    }
    match (method, path) {
        ("GET", "/metrics") => respond(&mut stream, 200, "text/plain; version=0.0.4", &prometheus.render()).await,
        ("GET", "/status") => {
            respond(&mut stream, 200, "application/json", &format!("{}\n", plane.target.status())).await
        }
        ("POST", "/retune") | ("PUT", "/retune") => {
            let trigger = plane.target.trigger();
            let (code, body) = match retune(trigger, query) {
                Ok(applied) => {
                    eprintln!("hitgate: trigger retuned: {applied}");
                    (200, trigger_status(trigger))
                }
                Err(refused) => (refused.http_status(), serde_json::json!({ "error": refused.to_string() })),
            };
            respond(&mut stream, code, "application/json", &format!("{body}\n")).await
        }
        ("GET", "/") => respond(&mut stream, 200, "text/html; charset=utf-8", MONITOR_PAGE).await,
        ("GET", "/monitor") => match plane.target.monitor() {
            Some(view) => respond(&mut stream, 200, "application/json", &format!("{view}\n")).await,
            None => respond(&mut stream, 404, "text/plain", "this run has no monitor\n").await,
        },
        ("GET", "/monitor/last-hit.png") => match plane.target.last_hit_png() {
            Some(png) => respond_bytes(&mut stream, 200, "image/png", &png).await,
            None => respond(&mut stream, 404, "text/plain", "no frame kept yet\n").await,
        },
        _ => respond(&mut stream, 404, "text/plain", "not found\n").await,
    }
}

/// Whether the request's head carries `Authorization: Bearer <token>`, compared in time that does
/// not depend on where the first difference is.
fn carries(head: &str, token: &str) -> bool {
    let given = head.lines().skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim().eq_ignore_ascii_case("authorization").then(|| value.trim())
    });
    let Some(given) = given.and_then(|v| v.strip_prefix("Bearer ")) else { return false };
    let (a, b) = (given.trim().as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

async fn respond(stream: &mut TcpStream, code: u16, content_type: &str, body: &str) -> std::io::Result<()> {
    respond_bytes(stream, code, content_type, body.as_bytes()).await
}

async fn respond_bytes(stream: &mut TcpStream, code: u16, content_type: &str, body: &[u8]) -> std::io::Result<()> {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        409 => "Conflict",
        _ => "Error",
    };
    let challenge = if code == 401 { "WWW-Authenticate: Bearer\r\n" } else { "" };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n{challenge}Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::carries;

    #[test]
    fn only_the_exact_bearer_token_is_taken() {
        let token = "0123456789abcdef";
        let head = |auth: &str| format!("GET /status HTTP/1.1\r\nHost: x\r\n{auth}\r\n\r\n");
        assert!(carries(&head("Authorization: Bearer 0123456789abcdef"), token));
        assert!(carries(&head("authorization:   Bearer 0123456789abcdef  "), token));
        assert!(!carries(&head("Authorization: Bearer 0123456789abcdeg"), token));
        assert!(!carries(&head("Authorization: Bearer 0123456789abcde"), token));
        assert!(!carries(&head("Authorization: Basic 0123456789abcdef"), token));
        assert!(!carries(&head("X-Token: 0123456789abcdef"), token));
        assert!(!carries("GET /status HTTP/1.1\r\n\r\n", token));
    }
}
