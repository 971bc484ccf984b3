//! Health probes that speak each component's own protocol, each bounded in time.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, bail};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

const LOOPBACK: [u8; 4] = [127, 0, 0, 1];

/// True when something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_in_use(port: u16) -> bool {
    let addr = SocketAddr::from((LOOPBACK, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// The process listening on `port`, found through /proc, so a taken port can be
/// reported with its owner instead of a bare "address in use".
pub fn port_owner(port: u16) -> Option<(u32, String)> {
    let inode = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| fs::read_to_string(table).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter_map(|line| listening_inode(line, port))
                .collect::<Vec<_>>()
        })
        .next()?;
    let socket = format!("socket:[{inode}]");
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let owns = fds.flatten().any(|fd| {
            fs::read_link(fd.path()).is_ok_and(|target| target.to_string_lossy() == socket)
        });
        if owns {
            return Some((pid, process_cmdline(pid).unwrap_or_default()));
        }
    }
    None
}

fn listening_inode(line: &str, port: u16) -> Option<String> {
    const TCP_LISTEN: &str = "0A";
    let fields: Vec<&str> = line.split_whitespace().collect();
    let local = fields.get(1)?;
    let state = fields.get(3)?;
    let local_port = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
    (local_port == port && *state == TCP_LISTEN).then(|| fields.get(9).map(|s| s.to_string()))?
}

/// The command line of a live (non-zombie) process.
pub fn process_cmdline(pid: u32) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The state follows the parenthesised command name, which may itself hold spaces.
    let state = stat.rsplit_once(')')?.1.split_whitespace().next()?;
    if state == "Z" {
        return None;
    }
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|part| !part.is_empty())
            .map(|part| String::from_utf8_lossy(part).into_owned())
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// A Kafka Metadata request: proves the broker answers the protocol, not just TCP.
/// Returns the number of brokers and topics it reports.
pub fn kafka_metadata(bootstrap: &str, timeout: Duration) -> anyhow::Result<(usize, usize)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("socket.connection.setup.timeout.ms", "2000")
        .set("log_level", "3")
        .create()
        .context("creating the Kafka metadata client")?;
    let metadata = consumer
        .fetch_metadata(None, timeout)
        .with_context(|| format!("Kafka metadata request to {bootstrap} failed"))?;
    Ok((metadata.brokers().len(), metadata.topics().len()))
}

/// `GET path` on a local HTTP service answers 200.
pub fn http_ok(port: u16, path: &str, timeout: Duration) -> anyhow::Result<()> {
    let (status_line, _) = http_get(port, path, timeout)?;
    if !status_line.contains(" 200") {
        bail!("GET {path} on 127.0.0.1:{port} answered {status_line:?}");
    }
    Ok(())
}

fn http_get(port: u16, path: &str, timeout: Duration) -> anyhow::Result<(String, String)> {
    http_request(port, "GET", path, None, timeout)
}

/// One HTTP/1.1 request over a fresh connection; returns the status line and the body.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    json_body: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<(String, String)> {
    let addr = SocketAddr::from((LOOPBACK, port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let body = json_body.unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: application/vnd.schemaregistry.v1+json, application/json\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .with_context(|| format!("reading the answer of {addr}"))?;
    let status_line = response.lines().next().unwrap_or_default().to_string();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.trim().to_string())
        .unwrap_or_default();
    Ok((status_line, body))
}

/// `GET <api>/subjects` on the schema registry: a 200 with a JSON array means it serves
/// the Confluent REST API. Returns the body.
pub fn registry_subjects(port: u16, api: &str, timeout: Duration) -> anyhow::Result<String> {
    let (status_line, body) = http_get(port, &format!("{api}/subjects"), timeout)
        .context("schema registry did not answer GET /subjects")?;
    if !status_line.contains(" 200") {
        bail!("schema registry on 127.0.0.1:{port} answered {status_line:?} to GET /subjects");
    }
    // The body may be chunked; the JSON array is what matters.
    let json = body
        .lines()
        .find(|line| line.trim_start().starts_with('['))
        .with_context(|| {
            format!("schema registry on 127.0.0.1:{port} did not return a JSON array: {body:?}")
        })?;
    Ok(json.trim().to_string())
}
