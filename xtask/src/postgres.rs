//! PostgreSQL 15 on 127.0.0.1: use the running server, else start the installed
//! cluster, else install Debian's package; then create the project's role and database.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::config::StackConfig;

pub fn ensure_server(config: &StackConfig) -> anyhow::Result<()> {
    let port = config.pg_port;
    if is_ready(port) {
        println!("  PostgreSQL: already running on 127.0.0.1:{port}");
        return Ok(());
    }
    if !server_installed() {
        println!(
            "  PostgreSQL: the server is not installed; installing Debian's postgresql package"
        );
        apt_install(&["postgresql"])?;
    }
    let cluster = find_cluster(port)?;
    match cluster {
        Some((version, name)) => {
            println!("  PostgreSQL: starting cluster {version}/{name}");
            run_checked(
                Command::new("pg_ctlcluster").args([
                    "--skip-systemctl-redirect",
                    &version,
                    &name,
                    "start",
                ]),
                "pg_ctlcluster start",
            )?;
        }
        None => {
            println!("  PostgreSQL: no cluster on port {port}; creating 15/main");
            run_checked(
                Command::new("pg_createcluster").args([
                    "15",
                    "main",
                    "--port",
                    &port.to_string(),
                    "--start",
                ]),
                "pg_createcluster",
            )?;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !is_ready(port) {
        if Instant::now() >= deadline {
            bail!(
                "PostgreSQL did not accept connections on 127.0.0.1:{port} within 30s; see /var/log/postgresql/"
            );
        }
        thread::sleep(Duration::from_millis(300));
    }
    println!("  PostgreSQL: running on 127.0.0.1:{port}");
    Ok(())
}

/// Creates (or updates) the login role and the database; safe to run any number of times.
pub fn ensure_database(config: &StackConfig) -> anyhow::Result<()> {
    const SQL: &str = r#"
SELECT format('CREATE ROLE %I', :'role') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN CREATEDB PASSWORD %L', :'role', :'password') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'database', :'role') WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'database') \gexec
"#;
    let mut psql = superuser_psql(config);
    psql.args(["-v", &format!("role={}", config.pg_user)])
        .args(["-v", &format!("password={}", config.pg_password)])
        .args(["-v", &format!("database={}", config.pg_database)]);
    let output =
        run_with_stdin(&mut psql, SQL).context("creating the project's role and database")?;
    if !output.status.success() {
        bail!(
            "creating role {} and database {} failed: {}",
            config.pg_user,
            config.pg_database,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    // Prove the credentials the platform will use work over TCP, as the services connect.
    let check = Command::new("psql")
        .args(["-X", "-q", "-t", "-c", "SELECT 1"])
        .arg(config.database_url())
        .output()
        .context("running psql")?;
    if !check.status.success() {
        bail!(
            "cannot log in as {}: {}",
            config.database_url_redacted(),
            String::from_utf8_lossy(&check.stderr).trim()
        );
    }
    println!(
        "  PostgreSQL: database ready at {}",
        config.database_url_redacted()
    );
    Ok(())
}

fn is_ready(port: u16) -> bool {
    Command::new("pg_isready")
        .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string(), "-t", "2"])
        .status()
        .is_ok_and(|status| status.success())
}

/// As root, Debian's clusters are administered as the `postgres` OS user over the
/// socket; otherwise try the `postgres` role over TCP.
fn superuser_psql(config: &StackConfig) -> Command {
    let port = config.pg_port.to_string();
    let psql_args = [
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-p",
        &port,
        "-d",
        "postgres",
    ];
    if is_root() {
        let mut command = Command::new("runuser");
        command
            .args(["-u", "postgres", "--", "psql"])
            .args(psql_args)
            .current_dir("/");
        command
    } else {
        let mut command = Command::new("psql");
        command
            .args(psql_args)
            .args(["-h", "127.0.0.1", "-U", "postgres"]);
        command
    }
}

fn find_cluster(port: u16) -> anyhow::Result<Option<(String, String)>> {
    let output = Command::new("pg_lsclusters")
        .arg("--no-header")
        .output()
        .context("running pg_lsclusters")?;
    let listing = String::from_utf8_lossy(&output.stdout);
    Ok(listing.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [version, name, cluster_port, ..] if *cluster_port == port.to_string() => {
                Some((version.to_string(), name.to_string()))
            }
            _ => None,
        }
    }))
}

/// A client alone (psql, pg_lsclusters) is not enough: the cluster tools and a server
/// binary must be there too.
fn server_installed() -> bool {
    has_command("pg_ctlcluster")
        && std::fs::read_dir("/usr/lib/postgresql").is_ok_and(|versions| {
            versions
                .flatten()
                .any(|version| version.path().join("bin/postgres").is_file())
        })
}

/// Installs Debian packages; needs root, and says so rather than failing obscurely.
pub fn apt_install(packages: &[&str]) -> anyhow::Result<()> {
    let list = packages.join(" ");
    if !is_root() {
        bail!(
            "{list} is not installed and installing it needs root: run `apt-get install {list}` as root, then `cargo xtask up` again"
        );
    }
    run_checked(Command::new("apt-get").arg("update"), "apt-get update")?;
    run_checked(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
        &format!("apt-get install {list}"),
    )
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

pub fn has_command(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn run_checked(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("running {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

fn run_with_stdin(command: &mut Command, input: &str) -> anyhow::Result<Output> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting psql")?;
    child
        .stdin
        .take()
        .context("psql stdin")?
        .write_all(input.as_bytes())?;
    Ok(child.wait_with_output()?)
}
