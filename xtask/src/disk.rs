//! Free disk space before a build: a build that runs out of space fails deep inside cargo
//! ("failed to write query cache"), after many minutes, naming no cause a newcomer would
//! recognise. The gate checks first and says what is missing and where.

use std::path::Path;

use anyhow::{Context, bail};

const GIB: u64 = 1 << 30;

/// What the test build of the whole workspace writes into `target/debug` on a clean clone,
/// with room to spare for the incremental caches of a few rebuilds.
const FRESH_TEST_BUILD: u64 = 8 * GIB;
/// Room for everything else a test run writes: PostgreSQL's scratch databases, the broker's
/// topics, logs.
const RUN_MARGIN: u64 = 2 * GIB;

/// Fails with a clear message unless the disk under `target` has room for the workspace's test
/// build (less what an earlier build already left there) and for the run itself.
pub fn ensure_room_for_test_build(target: &Path) -> anyhow::Result<()> {
    let existing = directory_size(&target.join("debug"));
    let needed = FRESH_TEST_BUILD.saturating_sub(existing) + RUN_MARGIN;
    let probe = nearest_existing(target);
    let stat = rustix::fs::statvfs(probe)
        .with_context(|| format!("reading the free space of {}", probe.display()))?;
    let free = stat.f_bavail.saturating_mul(stat.f_frsize);
    if free < needed {
        bail!(
            "only {} free on the disk holding {}, and the test build with its run needs about {} \
             more ({} already built there). Free some space (an old `target/`, stopped \
             benchmarks' data) and run the command again.",
            gib(free),
            target.display(),
            gib(needed),
            gib(existing),
        );
    }
    println!(
        "==> disk: {} free under {}, about {} needed",
        gib(free),
        probe.display(),
        gib(needed)
    );
    Ok(())
}

fn gib(bytes: u64) -> String {
    // Display only: one decimal of GiB.
    #[allow(clippy::cast_precision_loss)]
    let value = bytes as f64 / GIB as f64;
    format!("{value:.1} GiB")
}

/// The path itself, or its closest ancestor that exists (a clean clone has no `target/` yet).
fn nearest_existing(path: &Path) -> &Path {
    path.ancestors()
        .find(|candidate| candidate.exists())
        .unwrap_or(Path::new("/"))
}

/// Bytes of the regular files under `dir`; 0 when it does not exist. Symbolic links are not
/// followed, so nothing is counted twice.
fn directory_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => directory_size(&entry.path()),
            Ok(kind) if kind.is_file() => entry.metadata().map_or(0, |meta| meta.len()),
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_nested_files_and_ignores_a_missing_directory() {
        let root = std::env::temp_dir().join(format!("keel-disk-{}", std::process::id()));
        let nested = root.join("a").join("b");
        std::fs::create_dir_all(&nested).expect("create test directories");
        std::fs::write(root.join("one"), [0_u8; 10]).expect("write a file");
        std::fs::write(nested.join("two"), [0_u8; 32]).expect("write a nested file");

        assert_eq!(directory_size(&root), 42);
        assert_eq!(directory_size(&root.join("missing")), 0);
        assert_eq!(nearest_existing(&root.join("missing").join("deeper")), root);

        std::fs::remove_dir_all(&root).expect("remove test directories");
    }
}
