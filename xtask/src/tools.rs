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
