//! Installs the broker and registry binaries with `cargo install` into a per-version
//! cache outside the repository, and only when the cached copy is missing or wrong.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};

use crate::config::{StackConfig, Tool};

/// Returns the path of the tool's binary, installing it first if needed.
pub fn ensure_installed(config: &StackConfig, tool: &Tool) -> anyhow::Result<PathBuf> {
    let binary = config.tool_binary(tool);
    match installed_problem(config, tool) {
        None => {
            println!(
                "  {} {}: cached at {}",
                tool.crate_name,
                tool.version,
                binary.display()
            );
            return Ok(binary);
        }
        Some(reason) => println!(
            "  {} {}: {reason}; installing with cargo install (about {} minutes, once per machine)",
            tool.crate_name, tool.version, tool.build_minutes
        ),
    }
    let root = config.tool_root(tool);
    let mut install = Command::new(cargo());
    install
        .args([
            "install",
            tool.crate_name,
            "--locked",
            "--version",
            tool.version,
        ])
        .arg("--root")
        .arg(&root);
    if !tool.features.is_empty() {
        install.args(["--features", &tool.features.join(",")]);
    }
    let status = install
        .status()
        .with_context(|| format!("running cargo install {}", tool.crate_name))?;
    if !status.success() {
        bail!(
            "cargo install {} {} failed ({status}); see its output above",
            tool.crate_name,
            tool.version
        );
    }
    if let Some(reason) = installed_problem(config, tool) {
        bail!(
            "{} {} still unusable after install: {reason}",
            tool.crate_name,
            tool.version
        );
    }
    Ok(binary)
}

/// Why the cached install cannot be used, or `None` when it can. Relies on the
/// `.crates2.json` that `cargo install --root` writes, which records version and features.
pub fn installed_problem(config: &StackConfig, tool: &Tool) -> Option<String> {
    let binary = config.tool_binary(tool);
    if !binary.is_file() {
        return Some(format!("no binary at {}", binary.display()));
    }
    let manifest = config.tool_root(tool).join(".crates2.json");
    let Ok(record) = fs::read_to_string(&manifest) else {
        return Some(format!("no install record at {}", manifest.display()));
    };
    let wanted = format!("\"{} {} (", tool.crate_name, tool.version);
    let Some(start) = record.find(&wanted) else {
        return Some(format!("{} records another version", manifest.display()));
    };
    let entry = &record[start..];
    let entry = &entry[..entry.find('}').unwrap_or(entry.len())];
    if let Some(missing) = tool
        .features
        .iter()
        .find(|feature| !entry.contains(&format!("\"{feature}\"")))
    {
        return Some(format!("installed without feature {missing}"));
    }
    match Command::new(&binary).arg("--help").output() {
        Ok(output) if output.status.success() => None,
        Ok(output) => Some(format!(
            "{} --help exited with {}",
            binary.display(),
            output.status
        )),
        Err(error) => Some(format!("{} does not run: {error}", binary.display())),
    }
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Schemas the deployment-manifest tests validate against, shipped in packages of PyPI
/// and npm (nothing is fetched from anywhere else). Installed once into the tools cache.
pub fn ensure_schema_packages(config: &StackConfig) -> anyhow::Result<()> {
    ensure_package(
        config,
        "kubernetes-validate",
        "1.37.0",
        "kubernetes_validate/kubernetes-json-schema/v1.34.0-local-strict/_definitions.json",
        |dir| {
            let mut command = Command::new("python3");
            command
                .env("PIP_ROOT_USER_ACTION", "ignore")
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .args(["--no-deps", "--target"])
                .arg(dir)
                .arg("kubernetes-validate==1.37.0");
            vec![command]
        },
    )?;
    ensure_package(
        config,
        "dclint",
        "3.1.0",
        "package/schemas/compose.schema.json",
        |dir| {
            let mut pack = Command::new("npm");
            pack.current_dir(dir)
                .args(["pack", "--silent", "dclint@3.1.0"]);
            let mut unpack = Command::new("tar");
            unpack.current_dir(dir).args(["xzf", "dclint-3.1.0.tgz"]);
            vec![pack, unpack]
        },
    )
}

fn ensure_package(
    config: &StackConfig,
    name: &str,
    version: &str,
    marker: &str,
    steps: impl Fn(&std::path::Path) -> Vec<Command>,
) -> anyhow::Result<()> {
    let dir = config.tools_dir.join(format!("{name}-{version}"));
    let file = dir.join(marker);
    if file.is_file() {
        println!("  {name} {version}: cached at {}", dir.display());
        return Ok(());
    }
    println!(
        "  {name} {version}: not cached; installing into {}",
        dir.display()
    );
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for mut step in steps(&dir) {
        let status = step
            .status()
            .with_context(|| format!("running {step:?} (is it installed?)"))?;
        if !status.success() {
            bail!("installing {name} {version} failed: {step:?} exited with {status}");
        }
    }
    if !file.is_file() {
        bail!(
            "{name} {version} installed but {} is missing",
            file.display()
        );
    }
    Ok(())
}
