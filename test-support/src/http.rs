//! HTTP in tests: a service started on port 0 and stopped within a bound, a client bound
//! to its address, and answers read whole with the assertions of the platform's HTTP
//! contract (problem+json, command answers with their version and ETag).

use std::future::Future;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// How long a test waits for a service to drain and stop.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Services a test runs in its own process, stopped together by one token.
#[derive(Debug, Default)]
pub struct Servers {
    stop: CancellationToken,
    running: Vec<JoinHandle<std::io::Result<()>>>,
}

impl Servers {
    /// Runs `serve` (an application's `run_until_stopped`) until [`Servers::stop`].
    pub fn spawn<S, F>(&mut self, serve: S)
    where
        S: FnOnce(WaitForCancellationFutureOwned) -> F,
        F: Future<Output = std::io::Result<()>> + Send + 'static,
    {
        let shutdown = self.stop.clone().cancelled_owned();
        self.running.push(tokio::spawn(serve(shutdown)));
    }

    /// The token that stops them all.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Hands over the first server still running, for a test that watches it stop.
    pub fn take_first(&mut self) -> Option<JoinHandle<std::io::Result<()>>> {
        (!self.running.is_empty()).then(|| self.running.remove(0))
    }

    /// Signals shutdown and waits for every server, each within [`STOP_TIMEOUT`]; the first
    /// server error is returned.
    ///
    /// # Panics
    /// If a server does not stop in time or its task panicked.
    pub async fn stop(&mut self) -> std::io::Result<()> {
        self.stop.cancel();
        let mut outcome = Ok(());
        for server in self.running.drain(..) {
            let stopped = tokio::time::timeout(STOP_TIMEOUT, server)
                .await
                .expect("server stops in time")
                .expect("server task");
            if outcome.is_ok() {
                outcome = stopped;
            }
        }
        outcome
    }
}

/// A client for one service, bounded in time per request.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    client: reqwest::Client,
}

impl Client {
    /// A client for the service at `address` (`host:port`).
    ///
    /// # Panics
    /// If the HTTP client cannot be built.
    pub fn new(address: impl std::fmt::Display) -> Self {
        Self {
            base: format!("http://{address}"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("http client"),
        }
    }

    /// `http://host:port`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The underlying client, for requests the helpers do not cover.
    pub fn inner(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends `body` as JSON (or nothing for `Value::Null`) with extra `headers`.
    ///
    /// # Panics
    /// If the request cannot be sent or its body read.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Value,
        headers: &[(&str, &str)],
    ) -> TestResponse {
        let mut request = self.client.request(method, self.url(path));
        if !body.is_null() {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        TestResponse::read(request.send().await.expect("request sent")).await
    }

    /// A GET with extra `headers`.
    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> TestResponse {
        self.send(Method::GET, path, Value::Null, headers).await
    }

    /// A GET.
    pub async fn get(&self, path: &str) -> TestResponse {
        self.get_with(path, &[]).await
    }

    /// A POST with extra `headers`.
    pub async fn post_with(
        &self,
        path: &str,
        body: Value,
        headers: &[(&str, &str)],
    ) -> TestResponse {
        self.send(Method::POST, path, body, headers).await
    }

    /// A POST.
    pub async fn post(&self, path: &str, body: Value) -> TestResponse {
        self.post_with(path, body, &[]).await
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The body as JSON, `Null` when it is not JSON.
    pub body: Value,
    pub text: String,
}

impl TestResponse {
    /// Reads `response` whole.
    ///
    /// # Panics
    /// If its body cannot be read.
    pub async fn read(response: reqwest::Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("response body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Self {
            status,
            headers,
            body,
            text,
        }
    }

    /// A header's value, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `ETag` header.
    ///
    /// # Panics
    /// If there is none.
    #[track_caller]
    pub fn etag(&self) -> &str {
        self.header("etag").expect("ETag header")
    }

    /// Asserts a 2xx answer and returns its body.
    #[track_caller]
    pub fn assert_success(&self) -> &Value {
        assert!(self.status.is_success(), "status; body: {}", self.text);
        &self.body
    }

    /// Asserts a 200 JSON answer and returns its body.
    #[track_caller]
    pub fn assert_ok(&self) -> &Value {
        assert_eq!(self.status, StatusCode::OK, "status; body: {}", self.text);
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{}",
            self.text
        );
        &self.body
    }

    /// Asserts a command's answer: `status`, the aggregate's new `version` in the body and
    /// as the ETag. Returns the body.
    #[track_caller]
    pub fn assert_accepted(&self, status: u16, version: u64) -> &Value {
        assert_eq!(self.status.as_u16(), status, "status; body: {}", self.text);
        assert_eq!(self.body["version"], version, "{}", self.text);
        assert_eq!(self.etag(), format!("\"{version}\""));
        &self.body
    }

    /// The `event_type`s a command's answer lists.
    pub fn event_types(&self) -> Vec<String> {
        self.body["events"]
            .as_array()
            .map(|events| {
                events
                    .iter()
                    .map(|e| e["event_type"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Asserts a problem+json answer with `status` and `code` whose `type` is the code's
    /// URN (`urn:keel:problem:<code>`), and returns its body.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, code: &str) -> &Value {
        let body = self.assert_problem_document(status, code);
        assert_eq!(body["type"], format!("urn:keel:problem:{code}"), "{body}");
        body
    }

    /// Asserts a problem+json answer with `status` and `code`, a `type` in the
    /// `urn:keel:problem:` namespace (a problem may document a type of its own), a title
    /// and a detail, and returns its body.
    #[track_caller]
    pub fn assert_problem_document(&self, status: u16, code: &str) -> &Value {
        assert_problem_answer(
            self.status.as_u16(),
            self.header("content-type"),
            &self.text,
            &self.body,
            status,
            code,
        );
        &self.body
    }

    /// Asserts a 400 naming `parameter` (in its own field and first in the detail), and
    /// returns its body.
    #[track_caller]
    pub fn assert_bad_parameter(&self, code: &str, parameter: &str) -> &Value {
        let body = self.assert_problem(400, code);
        assert_eq!(body["parameter"], parameter, "{body}");
        assert!(
            body["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with(&format!("{parameter}: "))),
            "{body}"
        );
        body
    }
}

/// What came back on a raw connection: the status, the header lines (names lowercased) and
/// the body as text.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResponse {
    /// The first header named `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header == name)
            .map(|(_, value)| value.as_str())
    }

    /// Asserts a problem+json answer as [`TestResponse::assert_problem`] does, and returns
    /// its body.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, code: &str) -> Value {
        let body: Value = serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("a JSON body ({e}): {self:?}"));
        assert_problem_answer(
            self.status,
            self.header("content-type"),
            &self.body,
            &body,
            status,
            code,
        );
        assert_eq!(body["type"], format!("urn:keel:problem:{code}"), "{body}");
        body
    }
}

/// The checks every problem+json answer passes: `status`, the media type, and a body with
/// that status and `code`, a `type` in the `urn:keel:problem:` namespace, a title and a
/// detail.
#[track_caller]
fn assert_problem_answer(
    actual: u16,
    content_type: Option<&str>,
    text: &str,
    body: &Value,
    status: u16,
    code: &str,
) {
    assert_eq!(actual, status, "status; body: {text}");
    assert_eq!(
        content_type,
        Some("application/problem+json"),
        "content type; body: {text}"
    );
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("urn:keel:problem:")),
        "{body}"
    );
    assert!(
        body["title"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
}

/// Writes `request` as is on a new TCP connection to `base` (`http://host:port`) and reads
/// the answer until the server closes: for requests no HTTP client would send (heads too
/// large to be accepted). Writing and reading run together, and a failed write is ignored:
/// a server that refuses a head may answer and close before it has read all of it.
///
/// # Panics
/// If nothing parseable comes back.
pub async fn raw_exchange(base: &str, request: Vec<u8>) -> RawResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let address = base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let (mut read, mut write) = stream.split();
    let writer = async move {
        let _ = write.write_all(&request).await;
    };
    let reader = async move {
        let mut answer = Vec::new();
        // A reset after the answer arrived ends the read; what was read counts.
        let _ = read.read_to_end(&mut answer).await;
        answer
    };
    let ((), answer) = tokio::join!(writer, reader);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("an HTTP answer: {text:?}"));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {head:?}"));
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    RawResponse {
        status,
        headers,
        body: body.to_owned(),
    }
}
