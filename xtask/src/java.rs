//! The Java parts of the stack: a JDK to run them, Maven to fetch them, and the pinned
//! Apache Kafka and Apicurio Registry releases named in `xtask/java/pom.xml`, resolved
//! from Maven Central into the tools cache outside the repository.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::config::StackConfig;
use crate::postgres::{apt_install, has_command};

/// The folder of committed inputs: the pom, the broker's properties, JVM options.
pub fn java_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("java")
}

/// The versions pinned in the pom (its `<properties>`), the one place they are set.
#[derive(Debug, Clone)]
pub struct Pins {
    pub kafka: String,
    pub log4j: String,
    pub apicurio: String,
}

impl Pins {
    pub fn read() -> anyhow::Result<Self> {
        let path = java_dir().join("pom.xml");
        let pom =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let property = |name: &str| -> anyhow::Result<String> {
            let open = format!("<{name}>");
            let start = pom
                .find(&open)
                .with_context(|| format!("{} has no <{name}> property", path.display()))?
                + open.len();
            let end = pom[start..]
                .find('<')
                .with_context(|| format!("<{name}> is not closed in {}", path.display()))?;
            Ok(pom[start..start + end].trim().to_string())
        };
        Ok(Self {
            kafka: property("kafka.version")?,
            log4j: property("log4j.version")?,
            apicurio: property("apicurio.version")?,
        })
    }
}

/// A `java` launcher and its feature version (17, 21, 25, ...).
#[derive(Debug, Clone)]
pub struct Java {
    pub binary: PathBuf,
    pub major: u32,
}

/// The newest JDK of at least `min_major`: `JAVA_HOME` first, then `java` on the PATH,
/// then every JDK under /usr/lib/jvm. Installs Debian's OpenJDK 17 when none is found and
/// 17 is enough.
pub fn find_java(min_major: u32, purpose: &str) -> anyhow::Result<Java> {
    if let Some(java) = best_java(min_major) {
        return Ok(java);
    }
    if min_major <= 17 {
        println!("  Java: no JDK {min_major}+ found; installing Debian's openjdk-17-jre-headless");
        apt_install(&["openjdk-17-jre-headless"])?;
        if let Some(java) = best_java(min_major) {
            return Ok(java);
        }
    }
    bail!(
        "{purpose} needs Java {min_major} or newer, and none was found (looked at JAVA_HOME, \
         `java` on the PATH and /usr/lib/jvm/*). Install a JDK {min_major}+ (for example \
         Temurin) under /usr/lib/jvm or point JAVA_HOME at one."
    )
}

fn best_java(min_major: u32) -> Option<Java> {
    let mut candidates = Vec::new();
    if let Some(home) = std::env::var_os("JAVA_HOME") {
        candidates.push(PathBuf::from(home).join("bin/java"));
    }
    candidates.push(PathBuf::from("java"));
    if let Ok(entries) = fs::read_dir("/usr/lib/jvm") {
        let mut homes: Vec<PathBuf> = entries.flatten().map(|entry| entry.path()).collect();
        homes.sort();
        candidates.extend(homes.into_iter().map(|home| home.join("bin/java")));
    }
    candidates
        .into_iter()
        .filter_map(|binary| java_major(&binary).map(|major| Java { binary, major }))
        .filter(|java| java.major >= min_major)
        // The first of the newest: JAVA_HOME wins a tie.
        .fold(None, |best: Option<Java>, java| match best {
            Some(best) if best.major >= java.major => Some(best),
            _ => Some(java),
        })
}

/// The feature version `java -version` prints (`openjdk version "17.0.15"` → 17).
fn java_major(binary: &Path) -> Option<u32> {
    let output = Command::new(binary).arg("-version").output().ok()?;
    let text = String::from_utf8_lossy(&output.stderr);
    let quoted = text.split('"').nth(1)?;
    let first = quoted.split(['.', '-', '+']).next()?;
    match first.parse().ok()? {
        1 => quoted.split('.').nth(1)?.parse().ok(), // 1.8.0 style
        major => Some(major),
    }
}

fn ensure_maven() -> anyhow::Result<()> {
    if has_command("mvn") {
        return Ok(());
    }
    println!("  Maven: not installed; installing Debian's maven package");
    apt_install(&["maven"])
}

/// The broker's jars: `<tools>/kafka-<version>/lib/*.jar`, complete once `installed.txt`
/// records the versions they were resolved at.
pub fn ensure_kafka(config: &StackConfig, pins: &Pins) -> anyhow::Result<PathBuf> {
    let root = config.kafka_root(&pins.kafka);
    let lib = root.join("lib");
    let record = root.join("installed.txt");
    let wanted = format!("kafka {} log4j {}\n", pins.kafka, pins.log4j);
    if fs::read_to_string(&record).is_ok_and(|text| text == wanted) && has_jar(&lib, "kafka_2.13-")
    {
        println!("  Apache Kafka {}: cached at {}", pins.kafka, lib.display());
        return Ok(lib);
    }
    println!(
        "  Apache Kafka {}: not cached; resolving it from Maven Central into {} (about a minute, once per machine)",
        pins.kafka,
        lib.display()
    );
    ensure_maven()?;
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(&lib).with_context(|| format!("creating {}", lib.display()))?;
    maven(&[
        "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies",
        "-DincludeScope=runtime",
        &format!("-DoutputDirectory={}", lib.display()),
    ])?;
    if !has_jar(&lib, &format!("kafka_2.13-{}", pins.kafka)) {
        bail!(
            "Maven finished but {} holds no kafka_2.13-{} jar",
            lib.display(),
            pins.kafka
        );
    }
    fs::write(&record, wanted).with_context(|| format!("writing {}", record.display()))?;
    Ok(lib)
}

/// The registry's Quarkus application: `<tools>/apicurio-registry-<version>/quarkus-run.jar`.
pub fn ensure_apicurio(config: &StackConfig, pins: &Pins) -> anyhow::Result<PathBuf> {
    let root = config.apicurio_root(&pins.apicurio);
    let jar = root.join("quarkus-run.jar");
    if jar.is_file() && root.join("lib").is_dir() {
        println!(
            "  Apicurio Registry {}: cached at {}",
            pins.apicurio,
            root.display()
        );
        return Ok(jar);
    }
    println!(
        "  Apicurio Registry {}: not cached; fetching its distribution (160 MB) from Maven Central into {}",
        pins.apicurio,
        root.display()
    );
    ensure_maven()?;
    let download = config
        .tools_dir
        .join(format!("apicurio-download-{}", pins.apicurio));
    let _ = fs::remove_dir_all(&download);
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(&download).with_context(|| format!("creating {}", download.display()))?;
    maven(&[
        "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy",
        &format!(
            "-Dartifact=io.apicurio:apicurio-registry-app:{}:tar.gz:all",
            pins.apicurio
        ),
        &format!("-DoutputDirectory={}", download.display()),
    ])?;
    let archive = download.join(format!(
        "apicurio-registry-app-{}-all.tar.gz",
        pins.apicurio
    ));
    let unpacking = config
        .tools_dir
        .join(format!("apicurio-unpacking-{}", pins.apicurio));
    let _ = fs::remove_dir_all(&unpacking);
    fs::create_dir_all(&unpacking)?;
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(&archive)
        .arg("-C")
        .arg(&unpacking)
        .status()
        .context("running tar")?;
    if !status.success() {
        bail!("unpacking {} failed ({status})", archive.display());
    }
    if !unpacking.join("quarkus-run.jar").is_file() {
        bail!(
            "{} holds no quarkus-run.jar at its root: not the runnable Apicurio distribution",
            archive.display()
        );
    }
    // Renamed into place last, so an interrupted install is never mistaken for a cached one.
    fs::rename(&unpacking, &root)
        .with_context(|| format!("moving {} into place", unpacking.display()))?;
    let _ = fs::remove_dir_all(&download);
    Ok(jar)
}

fn maven(goal_and_properties: &[&str]) -> anyhow::Result<()> {
    let pom = java_dir().join("pom.xml");
    let status = Command::new("mvn")
        .args(["-B", "-q", "-f"])
        .arg(&pom)
        .args(goal_and_properties)
        .status()
        .context("running mvn")?;
    if !status.success() {
        bail!(
            "mvn {} failed ({status}); its output above says which artifact Maven Central did not serve",
            goal_and_properties[0]
        );
    }
    Ok(())
}

fn has_jar(dir: &Path, prefix: &str) -> bool {
    fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|entry| entry.file_name().to_string_lossy().starts_with(prefix))
    })
}
