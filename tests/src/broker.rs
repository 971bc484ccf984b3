//! A private Tansu broker for tests that stop and restart the broker: the shared one of
//! `cargo xtask up` must stay up for every other test.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{PROBE_TIMEOUT, check_broker};

/// A Tansu process with in-memory storage on a fixed loopback port; stopping and starting
/// it keeps the address, as a broker restart in production does. Killed when dropped.
#[derive(Debug)]
pub struct TestBroker {
    binary: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl TestBroker {
    /// Starts a broker on a free port and waits until it answers a metadata request.
    ///
    /// # Panics
    /// If the Tansu binary is missing (run `cargo xtask up` once) or it does not start.
    pub async fn start() -> Self {
        let binary = tansu_binary();
        assert!(
            binary.is_file(),
            "Tansu binary not found at {} (set KEEL_TANSU_BIN or run `cargo xtask up`)",
            binary.display()
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let port = listener.local_addr().expect("local address").port();
        drop(listener);
        let mut broker = Self {
            binary,
            port,
            child: None,
        };
        broker.resume().await;
        broker
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the broker (everything it held is lost: storage is in memory).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same port and waits until it answers.
    ///
    /// # Panics
    /// If it does not answer within 30 s.
    pub async fn resume(&mut self) {
        assert!(self.child.is_none(), "the test broker is already running");
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new(&self.binary)
            .args([
                "broker",
                "--storage-engine",
                "memory://tansu/",
                "--kafka-listener-url",
                &url,
                "--kafka-advertised-listener-url",
                &url,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match check_broker(&self.address(), PROBE_TIMEOUT).await {
                Ok(()) => return,
                Err(error) if Instant::now() >= deadline => {
                    panic!("test broker on port {} did not start: {error}", self.port)
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.stop();
    }
}

fn tansu_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("KEEL_TANSU_BIN") {
        return PathBuf::from(path);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache/keel/tools/tansu-0.6.0/bin/tansu")
}
