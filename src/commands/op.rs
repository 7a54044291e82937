//! `sbx-exec op NAME [PARAMS | -]`: the client of platform operations for user code, run inside
//! a sandbox whose context lists them (`ops`, docs/ops.md). It needs no privilege and no policy:
//! it POSTs the params to `http://sbx-ops/NAME` through the egress proxy named by `HTTP_PROXY`
//! and prints the control plane's answer. Exit 0 when the answer says `"ok": true` (or says
//! nothing of `ok`), 1 when it says `"ok": false`, 125 on a refusal or a transport error.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};

/// How long the answer may take: the gate's own limit and a margin.
const WAIT: Duration = Duration::from_secs(130);
/// The most bytes of answer read (the gate passes at most 1 MiB of body).
const MAX_ANSWER: u64 = 2 << 20;

/// Call operation `name` with `params` (JSON text; `-`: stdin; absent: `{}`); the exit code.
pub fn run(name: &str, params: Option<&str>) -> Result<i32> {
    crate::model::OpName::try_from(name.to_string()).map_err(|e| anyhow!("{e}"))?;
    let body = match params {
        None => b"{}".to_vec(),
        Some("-") => {
            let mut v = Vec::new();
            std::io::stdin()
                .take(1 << 20)
                .read_to_end(&mut v)
                .context("cannot read the params from stdin")?;
            v
        }
        Some(p) => p.as_bytes().to_vec(),
    };
    let proxy = proxy_addr()?;
    let (status, answer) = post(&proxy, name, &body)?;
    if status != 200 {
        let text = String::from_utf8_lossy(&answer);
        let text = text.trim().trim_start_matches("sbx-exec egress proxy: ");
        bail!("operation {name} was refused ({status}): {text}");
    }
    std::io::stdout()
        .write_all(&answer)
        .context("cannot write the answer")?;
    let ok = serde_json::from_slice::<serde_json::Value>(&answer)
        .ok()
        .and_then(|v| v.get("ok").and_then(serde_json::Value::as_bool));
    Ok(if ok == Some(false) { 1 } else { 0 })
}

/// `host:port` of the proxy from `HTTP_PROXY` (or `http_proxy`): `http://HOST:PORT[/]`.
fn proxy_addr() -> Result<String> {
    let url = std::env::var("HTTP_PROXY")
        .or_else(|_| std::env::var("http_proxy"))
        .map_err(|_| {
            anyhow!(
                "HTTP_PROXY is not set: sbx-exec op runs inside a sandbox whose context lists ops \
                 (policy key ops, with net.mode = \"private\" and a non-empty net.allow)"
            )
        })?;
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("HTTP_PROXY={url:?} is not an http:// URL"))?;
    let hostport = rest.trim_end_matches('/');
    if hostport.is_empty() || hostport.contains(['/', '@']) {
        bail!("HTTP_PROXY={url:?} is not http://HOST:PORT");
    }
    Ok(hostport.to_string())
}

/// POST `body` to the operation through the proxy at `proxy`; the status and the body answered.
fn post(proxy: &str, name: &str, body: &[u8]) -> Result<(u16, Vec<u8>)> {
    let conn = TcpStream::connect(proxy)
        .with_context(|| format!("cannot reach the egress proxy at {proxy} (HTTP_PROXY)"))?;
    conn.set_read_timeout(Some(WAIT))?;
    let head = format!(
        "POST http://sbx-ops/{name} HTTP/1.1\r\nHost: sbx-ops\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    // A refusal may come before the body is read: the answer is read all the same.
    let _ = (&conn)
        .write_all(head.as_bytes())
        .and_then(|()| (&conn).write_all(body));
    let mut got = Vec::new();
    (&conn)
        .take(MAX_ANSWER)
        .read_to_end(&mut got)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                anyhow!("no answer within {}s", WAIT.as_secs())
            }
            _ => anyhow!("the egress proxy closed the connection: {e}"),
        })?;
    parse(&got)
}

/// The status and body of an HTTP/1.1 response read to its end.
fn parse(got: &[u8]) -> Result<(u16, Vec<u8>)> {
    let bad = || anyhow!("the egress proxy's answer is not an HTTP response");
    let end = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(bad)?;
    let head = std::str::from_utf8(&got[..end]).map_err(|_| bad())?;
    let status = head
        .lines()
        .next()
        .and_then(|l| {
            l.strip_prefix("HTTP/1.1 ")
                .or_else(|| l.strip_prefix("HTTP/1.0 "))
        })
        .and_then(|l| l.get(..3))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(bad)?;
    let mut body = got[end + 4..].to_vec();
    let length = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())
            .flatten()
    });
    if let Some(n) = length {
        if body.len() < n {
            bail!("the answer was cut short ({} of {n} bytes)", body.len());
        }
        body.truncate(n);
    }
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_parsed() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{\"ok\":true}\nextra";
        assert_eq!(parse(r).unwrap(), (200, b"{\"ok\":true}\n".to_vec()));
        let r = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 3\r\n\r\nno\n";
        assert_eq!(parse(r).unwrap().0, 403);
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort").is_err());
        assert!(parse(b"garbage").is_err());
    }
}
