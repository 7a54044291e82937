//! Platform operations (`ops`, docs/ops.md): user code asks the control plane to perform a named
//! operation with `POST http://sbx-ops/NAME` through the proxy, and the gate — never the sandbox —
//! talks to the control plane. Nothing is opened upstream for it.
//!
//! The request is held to more than other requests: POST only (405), NAME among the context's
//! `ops` (403; a context without ops has none), a `Content-Length` (411; no
//! `Transfer-Encoding`) of at most [`MAX_PARAMS`] (413), the body read within
//! `net.limits.idle_timeout` (408) and parsed as JSON (400). The gate then gets a connection from
//! whoever started it ([`crate::run::net::ops`]: the header line naming the context is written
//! on it already), writes one request line `{"op":NAME,"params":VALUE}` re-serialized from the
//! parsed body (so it is exactly one line, whatever the sandbox sent), reads one answer line of
//! at most [`MAX_ANSWER`] within [`ANSWER_TIMEOUT`] (504), checks it is JSON (502) and answers
//! `200` with it as an `application/json` body, scrubbed of the call's bound secrets like every
//! other response. No control plane: 503 naming its socket. Every call, allowed or refused, goes
//! to the audit hook with the operation's name, never its params.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use super::http::{Framing, Head};
use super::*;
use crate::model::validate::OPS_SOCKET;

/// The host user code sends operations to (port 80, through the proxy).
pub const HOST: &str = "sbx-ops";
/// The largest params body accepted.
pub const MAX_PARAMS: usize = 64 * 1024;
/// The longest answer line accepted from the control plane.
pub const MAX_ANSWER: usize = 1 << 20;
/// How long the control plane has to answer (a deploy may take a while; fixed, not
/// `net.limits`, which are about the sandbox's own traffic).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the gate waits for a connection from whoever started it.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// The context's operations and how to reach the control plane.
pub struct Ops {
    names: Vec<String>,
    dial: Box<dyn Fn() -> Option<UnixStream> + Send + Sync>,
}

impl Ops {
    /// The gate's: connections asked for on `dialer` (one end of a SOCK_SEQPACKET pair; one
    /// request at a time).
    pub fn over(names: Vec<String>, dialer: OwnedFd) -> Ops {
        let tv = nix::sys::time::TimeVal::new(DIAL_TIMEOUT.as_secs() as i64, 0);
        let _ =
            nix::sys::socket::setsockopt(&dialer, nix::sys::socket::sockopt::ReceiveTimeout, &tv);
        let dialer = Mutex::new(dialer);
        Ops::with(
            names,
            Box::new(move || {
                let d = dialer.lock().unwrap_or_else(|e| e.into_inner());
                crate::sys::write_raw(d.as_raw_fd(), &[1]).ok()?;
                let mut fds = crate::sys::recv_fds(d.as_raw_fd(), 1).ok()?;
                fds.pop().map(UnixStream::from)
            }),
        )
    }

    /// With any way to connect (tests).
    pub fn with(
        names: Vec<String>,
        dial: Box<dyn Fn() -> Option<UnixStream> + Send + Sync>,
    ) -> Ops {
        Ops { names, dial }
    }
}

/// Is this request for the platform operations?
pub(super) fn addressed(host: &str, port: u16) -> bool {
    host.eq_ignore_ascii_case(HOST) && port == 80
}

/// A refusal: the status and what the client is told.
type Refusal = (u16, String);

/// The operation a request asks for, and its body's length, if the request may be served.
pub(super) fn check(
    ops: Option<&Ops>,
    request: &Head,
    path: &str,
) -> Result<(String, usize), Refusal> {
    let name = path
        .split(['?', '#'])
        .next()
        .unwrap_or("")
        .trim_start_matches('/');
    if request.method != "POST" {
        return Err((
            405,
            format!(
                "platform operations are called with POST, not {}",
                request.method
            ),
        ));
    }
    if !ops.is_some_and(|o| o.names.iter().any(|n| n == name)) {
        return Err((
            403,
            format!("operation {name} is not in this context's ops"),
        ));
    }
    match super::http::request_framing(request) {
        Ok(Framing::Length(n)) if n > MAX_PARAMS as u64 => Err((
            413,
            format!("the params are {n} bytes; at most {MAX_PARAMS} are accepted"),
        )),
        Ok(Framing::Length(n)) => Ok((name.to_string(), n as usize)),
        Ok(Framing::Chunked) => Err((
            411,
            "send the params with a Content-Length, not chunked".into(),
        )),
        Ok(_) => Err((411, "send the params (JSON) with a Content-Length".into())),
        Err((status, why)) => Err((status, why)),
    }
}

/// How a refusal is answered: [`super::request::respond`].
pub(super) type Respond = fn(&TcpStream, u16, &str);

impl Shared {
    /// A platform operation asked for, answered with `status`.
    fn op_event(&self, op: &str, status: u16, reason: &str) {
        self.emit(Event {
            verdict: Verdict::Op,
            protocol: Protocol::Http,
            host: HOST.to_string(),
            port: 80,
            addr: None,
            reason: reason.to_string(),
            secret: None,
            status: Some(status),
            op: Some(op.to_string()),
        });
    }
}

/// Serve one operation request (after its head was parsed; `body`: what followed the head, then
/// the client's socket).
pub(super) fn call(
    shared: &Shared,
    client: &TcpStream,
    (request, path): (&Head, &str),
    body: &mut dyn Read,
    respond: Respond,
) {
    let ops = shared.ops.as_deref();
    let (status, answer) = match check(ops, request, path) {
        Err(refusal) => (None, Err(refusal)),
        Ok((name, len)) => {
            let result = ops
                .ok_or((403, String::new()))
                .and_then(|o| perform(shared, o, client, &name, (len, body)));
            (Some(name), result)
        }
    };
    let name = status.unwrap_or_else(|| audited_name(path));
    match answer {
        Ok(body) => {
            let ok = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("ok").and_then(serde_json::Value::as_bool));
            let why = match ok {
                Some(b) => format!("performed by the control plane (ok: {b})"),
                None => "performed by the control plane".to_string(),
            };
            shared.op_event(&name, 200, &why);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = (&*client).write_all(head.as_bytes());
            let _ = (&*client).write_all(&body);
            let _ = client.shutdown(Shutdown::Write);
        }
        Err((status, why)) => {
            shared.op_event(&name, status, &why);
            respond(client, status, &why);
            drain(client);
        }
    }
}

/// After a refusal: read (and drop) what the client still sends, a little and briefly, so that
/// closing with its unread params does not reset the connection before it reads the answer.
fn drain(client: &TcpStream) {
    let _ = client.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 16 * 1024];
    let mut left = 4 * MAX_PARAMS;
    while left > 0 {
        match (&*client).read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

/// The name the audit log gets for a request refused before its name was admitted: the name
/// when it is one a policy could list, else nothing of it.
fn audited_name(path: &str) -> String {
    let name = path
        .split(['?', '#'])
        .next()
        .unwrap_or("")
        .trim_start_matches('/');
    match crate::model::OpName::try_from(name.to_string()) {
        Ok(n) => n.0,
        Err(_) => String::new(),
    }
}

/// Read the params, hand them to the control plane, and return its answer (scrubbed).
fn perform(
    shared: &Shared,
    ops: &Ops,
    client: &TcpStream,
    name: &str,
    (len, from): (usize, &mut dyn Read),
) -> Result<Vec<u8>, Refusal> {
    let _ = client.set_read_timeout(Some(shared.limits.idle_timeout));
    let mut body = vec![0u8; len];
    from.read_exact(&mut body)
        .map_err(|_| (408, "the params were not received in time".to_string()))?;
    let params: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| (400, format!("the params are not JSON: {e}")))?;
    let line = request_line(name, &params);
    let conn = (ops.dial)().ok_or_else(|| {
        (
            503,
            format!(
                "no control plane answers platform operations (nothing listens on {OPS_SOCKET})"
            ),
        )
    })?;
    let answer = exchange(&conn, &line)?;
    Ok(match &shared.bound {
        Some(b) => bound::scrub::Scrubber::all(b.needles(), &answer).0,
        None => answer,
    })
}

/// `{"op":NAME,"params":VALUE}` and a newline: serde_json never writes a raw newline inside.
pub(super) fn request_line(name: &str, params: &serde_json::Value) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Request<'a> {
        op: &'a str,
        params: &'a serde_json::Value,
    }
    let mut line = serde_json::to_vec(&Request { op: name, params }).expect("JSON serializes");
    line.push(b'\n');
    line
}

/// Write the request line, read the answer line (its newline kept; one added if the control
/// plane closed without one), checked to be JSON.
pub(super) fn exchange(conn: &UnixStream, line: &[u8]) -> Result<Vec<u8>, Refusal> {
    let gone = |_| {
        (
            502,
            format!("the control plane ({OPS_SOCKET}) closed the connection"),
        )
    };
    (&*conn).write_all(line).map_err(gone)?;
    let _ = conn.set_read_timeout(Some(ANSWER_TIMEOUT));
    let mut answer = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let end = loop {
        if let Some(p) = answer.iter().position(|&b| b == b'\n') {
            break p;
        }
        if answer.len() > MAX_ANSWER {
            return Err((
                502,
                format!("the control plane's answer is longer than {MAX_ANSWER} bytes"),
            ));
        }
        match (&*conn).read(&mut chunk) {
            Ok(0) => break answer.len(),
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err((
                    504,
                    format!(
                        "the control plane did not answer within {}s",
                        ANSWER_TIMEOUT.as_secs()
                    ),
                ))
            }
            Err(e) => return Err(gone(e)),
        }
    };
    answer.truncate(end);
    if end > MAX_ANSWER || serde_json::from_slice::<serde_json::Value>(&answer).is_err() {
        return Err((
            502,
            "the control plane's answer is not one JSON line".to_string(),
        ));
    }
    answer.push(b'\n');
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(method: &str, headers: &[(&str, &str)]) -> Head {
        Head {
            method: method.into(),
            target: "http://sbx-ops/deploy".into(),
            minor: 1,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn ops() -> Ops {
        Ops::with(vec!["deploy".into()], Box::new(|| None))
    }

    /// Each check's status; the control (POST, a listed name, a length in bounds) passes.
    #[test]
    fn requests_are_checked() {
        let o = ops();
        let len = [("Content-Length", "2")];
        assert_eq!(
            check(Some(&o), &head("POST", &len), "/deploy").unwrap(),
            ("deploy".into(), 2)
        );
        assert_eq!(
            check(Some(&o), &head("POST", &len), "/deploy?x=1")
                .unwrap()
                .0,
            "deploy"
        );
        let status = |ops: Option<&Ops>, h: Head, path: &str| check(ops, &h, path).unwrap_err().0;
        assert_eq!(status(Some(&o), head("GET", &len), "/deploy"), 405);
        assert_eq!(status(Some(&o), head("POST", &len), "/migrate"), 403);
        assert_eq!(status(Some(&o), head("POST", &len), "/deploy/x"), 403);
        assert_eq!(status(Some(&o), head("POST", &len), "/"), 403);
        assert_eq!(status(None, head("POST", &len), "/deploy"), 403);
        let e = check(Some(&o), &head("POST", &len), "/migrate")
            .unwrap_err()
            .1;
        assert_eq!(e, "operation migrate is not in this context's ops");
        assert_eq!(status(Some(&o), head("POST", &[]), "/deploy"), 411);
        let chunked = [("Transfer-Encoding", "chunked")];
        assert_eq!(status(Some(&o), head("POST", &chunked), "/deploy"), 411);
        let big = (MAX_PARAMS + 1).to_string();
        assert_eq!(
            status(
                Some(&o),
                head("POST", &[("Content-Length", &big)]),
                "/deploy"
            ),
            413
        );
        let max = MAX_PARAMS.to_string();
        assert!(check(
            Some(&o),
            &head("POST", &[("Content-Length", &max)]),
            "/deploy"
        )
        .is_ok());
        let both = [("Content-Length", "2"), ("Transfer-Encoding", "chunked")];
        assert_eq!(status(Some(&o), head("POST", &both), "/deploy"), 400);
        assert!(addressed("SBX-OPS", 80) && !addressed("sbx-ops", 8080) && !addressed("x", 80));
    }

    /// The request line is one line whatever the params hold; the answer is read to its newline,
    /// must be JSON, and may not exceed the limit.
    #[test]
    fn the_exchange_is_one_line_each_way() {
        let params: serde_json::Value =
            serde_json::from_str("{\"ref\":\"main\\n{\\\"op\\\":\\\"x\\\"}\"}").unwrap();
        let line = request_line("deploy", &params);
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        assert!(line.starts_with(b"{\"op\":\"deploy\",\"params\":{\"ref\":"));
        let answer = |text: &'static [u8]| {
            let (a, b) = UnixStream::pair().unwrap();
            let t = std::thread::spawn(move || {
                let mut got = vec![0u8; 4096];
                let n = (&b).read(&mut got).unwrap();
                (&b).write_all(text).unwrap();
                got.truncate(n);
                got
            });
            let r = exchange(&a, b"{\"op\":\"deploy\",\"params\":1}\n");
            assert_eq!(t.join().unwrap(), b"{\"op\":\"deploy\",\"params\":1}\n");
            r
        };
        assert_eq!(answer(b"{\"ok\":true}\nmore").unwrap(), b"{\"ok\":true}\n");
        assert_eq!(answer(b"{\"ok\":false}").unwrap(), b"{\"ok\":false}\n");
        assert_eq!(answer(b"not json\n").unwrap_err().0, 502);
        assert_eq!(answer(b"").unwrap_err().0, 502);
        let (a, b) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || {
            let _ = (&b).write_all(&vec![b' '; MAX_ANSWER + 2]);
            b
        });
        assert_eq!(exchange(&a, b"{}\n").unwrap_err().0, 502);
        drop(t.join());
    }
}
