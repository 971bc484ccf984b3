//! The edge of both APIs: how large a request head may be, and problem documents for the
//! requests refused before any route sees them.
//!
//! Two layers, because hyper parses the head before the router runs:
//!
//! - hyper's read buffer for a head is bounded ([`EdgeLimits::head_buffer_bytes`]: the
//!   header budget plus the URI budget plus room for the request line). A head that does not
//!   fit, or does not parse, is answered by hyper itself, with an empty body; [`EdgeIo`]
//!   replaces those automatic answers (400, 414, 431) with problem documents.
//! - a head that fits is checked by [`limit_head`] first thing: a URI longer than
//!   [`EdgeLimits::max_uri_bytes`] is 414, headers over [`EdgeLimits::max_header_bytes`]
//!   (names, values and their `": "`/CRLF framing) are 431, before authentication, rate
//!   limits or handlers run, so nothing is written.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::problem::{PROBLEM_JSON, Problem};
use crate::settings::HttpSettings;

/// Room for the request line besides its URI: method, version, spaces, CRLF.
const REQUEST_LINE_OVERHEAD: usize = 64;

/// How large a request head may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeLimits {
    /// Bytes of all header lines together (`KEEL_HTTP_MAX_HEADER_BYTES`).
    pub max_header_bytes: usize,
    /// Bytes of the request target (`KEEL_HTTP_MAX_URI_BYTES`).
    pub max_uri_bytes: usize,
}

impl From<&HttpSettings> for EdgeLimits {
    fn from(settings: &HttpSettings) -> Self {
        Self {
            max_header_bytes: settings.max_header_bytes,
            max_uri_bytes: settings.max_uri_bytes,
        }
    }
}

impl EdgeLimits {
    /// hyper's head buffer: every head within both budgets fits, so that [`limit_head`]
    /// answers it with the precise problem; beyond it hyper refuses (431). hyper's floor is
    /// 8 KiB.
    pub fn head_buffer_bytes(&self) -> usize {
        (self.max_header_bytes + self.max_uri_bytes + REQUEST_LINE_OVERHEAD).max(8192)
    }
}

/// Middleware: 414 or 431 for a head over its budget, before anything else runs.
pub async fn limit_head(
    State(limits): State<EdgeLimits>,
    request: Request,
    next: Next,
) -> Response {
    let uri_bytes = request
        .uri()
        .path_and_query()
        .map_or(0, |target| target.as_str().len());
    if uri_bytes > limits.max_uri_bytes {
        return uri_too_long(limits.max_uri_bytes).into_response();
    }
    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if header_bytes > limits.max_header_bytes {
        return headers_too_large(limits.max_header_bytes).into_response();
    }
    next.run(request).await
}

fn uri_too_long(max: usize) -> Problem {
    Problem::new(
        StatusCode::URI_TOO_LONG,
        "request.uri_too_long",
        "URI too long",
        format!("the request target is longer than {max} bytes"),
    )
}

fn headers_too_large(max: usize) -> Problem {
    Problem::new(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "request.headers_too_large",
        "Request header fields too large",
        format!("the request's headers take more than {max} bytes"),
    )
}

/// The problem for one of hyper's automatic answers, or `None` if `head` is not one.
///
/// hyper answers a head it cannot take with a bare head (`connection: close`,
/// `content-length: 0`, no content type) and closes; every answer of the APIs has a
/// content type, so a bare 400, 414 or 431 head can only be hyper's.
fn automatic_answer(head: &[u8], limits: EdgeLimits) -> Option<Problem> {
    if !head.ends_with(b"\r\n\r\n") || contains(head, b"content-type:") {
        return None;
    }
    if !contains(head, b"\r\ncontent-length: 0\r\n") {
        return None;
    }
    let status = head.strip_prefix(b"HTTP/1.1 ")?.get(..3)?;
    match status {
        b"400" => Some(Problem::new(
            StatusCode::BAD_REQUEST,
            "request.malformed",
            "Malformed request",
            "the request is not valid HTTP/1.1",
        )),
        b"414" => Some(uri_too_long(limits.max_uri_bytes)),
        b"431" => Some(Problem::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request.headers_too_large",
            "Request header fields too large",
            format!(
                "the request line and headers take more than {} bytes",
                limits.head_buffer_bytes()
            ),
        )),
        _ => None,
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window.eq_ignore_ascii_case(needle))
}

/// The bytes of a whole response carrying `problem`, closing the connection (hyper closes
/// it after an automatic answer).
fn problem_response(problem: &Problem) -> Vec<u8> {
    let body = serde_json::to_vec(problem).unwrap_or_default();
    let status = problem.status_code();
    let mut response = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {PROBLEM_JSON}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(&body);
    response
}

/// A connection whose automatic hyper answers become problem documents.
///
/// It does not offer vectored writes, so hyper flattens each head into one buffer and the
/// first write of an automatic answer holds all of it.
#[derive(Debug)]
pub struct EdgeIo<T> {
    inner: T,
    limits: EdgeLimits,
    /// A replacement being written: its bytes, how many are written, and how many bytes of
    /// hyper's buffer it stands for.
    replacing: Option<(Vec<u8>, usize, usize)>,
}

impl<T> EdgeIo<T> {
    /// Wraps a connection.
    pub fn new(inner: T, limits: EdgeLimits) -> Self {
        Self {
            inner,
            limits,
            replacing: None,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for EdgeIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for EdgeIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.replacing.is_none()
            && let Some(problem) = automatic_answer(buf, this.limits)
        {
            this.replacing = Some((problem_response(&problem), 0, buf.len()));
        }
        let Some((bytes, written, stands_for)) = &mut this.replacing else {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        };
        while *written < bytes.len() {
            let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        let stands_for = *stands_for;
        this.replacing = None;
        Poll::Ready(Ok(stands_for))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: EdgeLimits = EdgeLimits {
        max_header_bytes: 16 * 1024,
        max_uri_bytes: 8 * 1024,
    };

    #[test]
    fn only_bare_error_heads_are_hyper_answers() {
        let bare = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\ndate: Mon, 07 Dec 2026 02:29:09 GMT\r\n\r\n";
        let problem = automatic_answer(bare, LIMITS).expect("hyper's answer");
        assert_eq!(problem.status, 431);
        let uri = b"HTTP/1.1 414 URI Too Long\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(automatic_answer(uri, LIMITS).expect("414").status, 414);
        let ours = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/problem+json\r\ncontent-length: 0\r\n\r\n";
        assert!(automatic_answer(ours, LIMITS).is_none());
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert!(automatic_answer(ok, LIMITS).is_none());
    }

    #[test]
    fn the_replacement_is_a_complete_problem_response() {
        let bytes = problem_response(&uri_too_long(10));
        let text = String::from_utf8(bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{head}");
        assert!(head.contains("content-type: application/problem+json"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let problem: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(problem["status"], 414);
        assert_eq!(problem["code"], "request.uri_too_long");
    }
}
