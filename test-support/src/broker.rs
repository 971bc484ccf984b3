//! A private Apache Kafka node for tests that stop and restart the broker: the shared one
//! of `cargo xtask up` must stay up for every other test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::{PROBE_TIMEOUT, check_broker};

/// The stack's broker configuration, with `{broker_port}`, `{controller_port}` and
/// `{data_dir}` to fill in: the private broker is configured exactly as the shared one.
const SERVER_PROPERTIES: &str = include_str!("../../xtask/java/kafka-server.properties");
const JAVA_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../xtask/java");

/// One KRaft node (broker and controller) on fixed loopback ports with its data in a
/// folder of its own. Stopping it is a crash (SIGKILL); starting it again keeps the ports
/// and the data, as a broker restart in production does. Killed, and its folder removed,
/// when dropped.
#[derive(Debug)]
pub struct TestBroker {
    java: PathBuf,
    libs: PathBuf,
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl TestBroker {
    /// Formats a fresh node on free ports and waits until it answers a metadata request.
    ///
    /// # Panics
    /// If the Kafka jars are missing (run `cargo xtask up` once) or the node does not start.
    pub async fn start() -> Self {
        let libs = std::env::var_os("KEEL_KAFKA_LIBS")
            .map(PathBuf::from)
            .expect("KEEL_KAFKA_LIBS names the broker's jars (`cargo xtask test` sets it)");
        assert!(
            libs.is_dir(),
            "Apache Kafka jars not found at {} (run `cargo xtask up`)",
            libs.display()
        );
        let java = std::env::var_os("KEEL_KAFKA_JAVA").map_or_else(|| "java".into(), PathBuf::from);
        let port = free_port();
        let controller_port = free_port();
        let dir =
            std::env::temp_dir().join(format!("keel-test-broker-{}", Uuid::new_v4().simple()));
        let data = dir.join("data");
        std::fs::create_dir_all(&data).expect("create the test broker's folder");
        let properties = SERVER_PROPERTIES
            .replace("{broker_port}", &port.to_string())
            .replace("{controller_port}", &controller_port.to_string())
            .replace("{data_dir}", &data.display().to_string());
        std::fs::write(dir.join("server.properties"), properties).expect("write server.properties");
        let broker = Self {
            java,
            libs,
            dir,
            port,
            child: None,
        };
        broker.format();
        let mut broker = broker;
        broker.resume().await;
        broker
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the broker with SIGKILL: a crash, not a clean shutdown.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same ports and data, and waits until it answers.
    ///
    /// # Panics
    /// If it does not answer within 90 s.
    pub async fn resume(&mut self) {
        assert!(self.child.is_none(), "the test broker is already running");
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("broker.log"))
            .expect("open the test broker's log");
        let child = self
            .java_command()
            .arg(format!("@{JAVA_DIR}/kafka-jvm.options"))
            .arg("kafka.Kafka")
            .arg(self.dir.join("server.properties"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.java.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            match check_broker(&self.address(), PROBE_TIMEOUT).await {
                Ok(()) => return,
                Err(error) if Instant::now() >= deadline => panic!(
                    "test broker on port {} did not start: {error}; its log: {}",
                    self.port,
                    self.dir.join("broker.log").display()
                ),
                Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
            }
        }
    }

    fn format(&self) {
        let output = self
            .java_command()
            .arg("-Xmx256m")
            .args(["kafka.tools.StorageTool", "format"])
            // `=`: a base64url id may start with `-`, which the tool would take for a flag
            // (1 start in 64 failed with "--cluster-id: expected one argument").
            .arg(format!("--cluster-id={}", cluster_id()))
            .arg("--config")
            .arg(self.dir.join("server.properties"))
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.java.display()));
        assert!(
            output.status.success(),
            "formatting the test broker's storage failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn java_command(&self) -> Command {
        let mut command = Command::new(&self.java);
        command
            .arg(format!(
                "-Dlog4j2.configurationFile={JAVA_DIR}/kafka-log4j2.properties"
            ))
            .arg("-cp")
            .arg(classpath(&self.libs));
        command
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn classpath(libs: &Path) -> String {
    format!("{}/*", libs.display())
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// A Kafka cluster id: 16 random bytes, base64url without padding (what
/// `kafka-storage random-uuid` prints).
fn cluster_id() -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Uuid::new_v4().as_bytes())
}
