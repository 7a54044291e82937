//! One HTTP/1.0 client for the servers tests talk to on 127.0.0.1 (a control plane, Jupyter, a
//! dev server): a request as the test words it, the whole answer read until the server closes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// An answer: its status (0 if there is no status line), the body after the head, and the whole
/// text as it came.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: String,
    pub raw: String,
}

/// A request to `127.0.0.1:PORT`: `METHOD PATH HTTP/1.0`, the headers in the order given, and a
/// body (with its `Content-Length`) if there is one.
pub struct Request {
    port: u16,
    head: String,
    body: Option<String>,
    timeout: Duration,
}

impl Request {
    pub fn new(port: u16, method: &str, path: &str) -> Request {
        Request {
            port,
            head: format!("{method} {path} HTTP/1.0\r\n"),
            body: None,
            timeout: Duration::from_secs(30),
        }
    }

    pub fn get(port: u16, path: &str) -> Request {
        Request::new(port, "GET", path)
    }

    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.head.push_str(&format!("{name}: {value}\r\n"));
        self
    }

    /// The body; `Content-Length` is written after the headers given.
    pub fn body(mut self, body: &str) -> Request {
        self.body = Some(body.to_string());
        self
    }

    /// How long the answer may take to come (30 s unless set).
    pub fn timeout(mut self, timeout: Duration) -> Request {
        self.timeout = timeout;
        self
    }

    pub fn send(self) -> std::io::Result<Response> {
        let mut text = self.head;
        if let Some(b) = &self.body {
            text.push_str(&format!("Content-Length: {}\r\n", b.len()));
        }
        text.push_str("\r\n");
        text.push_str(self.body.as_deref().unwrap_or(""));
        raw(self.port, &text, self.timeout)
    }
}

/// `request` sent as it is to `127.0.0.1:PORT`; the answer read until the server closes.
pub fn raw(port: u16, request: &str, timeout: Duration) -> std::io::Result<Response> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(timeout))?;
    s.write_all(request.as_bytes())?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map_or("", |x| x.1).to_string();
    Ok(Response { status, body, raw })
}
