//! Packages the tests need besides the stack itself, installed once into the tools cache
//! from PyPI and npm.

use std::fs;
use std::process::Command;

use anyhow::{Context, bail};

use crate::config::StackConfig;

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
