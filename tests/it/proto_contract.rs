//! The proto contract: `deploy/buf-breaking.sh` (which CI runs on the repository) passes
//! the protos as they are and fails a copy broken the ways that would break a client
//! or a reader of stored events — a field renumbered, an RPC removed, an enum value
//! removed — naming what broke.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// A scratch copy of the module, removed when dropped (whatever the test's outcome).
struct Copy(PathBuf);

impl Drop for Copy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A copy of the module (buf.yaml and proto/), with `edit` applied to one file.
fn copy_with(name: &str, file: &str, edit: impl Fn(&str) -> String) -> anyhow::Result<Copy> {
    let root = repository();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    let copy = Copy(std::env::temp_dir().join(format!(
        "circle-proto-{name}-{}-{nanos}",
        std::process::id()
    )));
    copy_tree(&root.join("proto"), &copy.0.join("proto"))?;
    std::fs::copy(root.join("buf.yaml"), copy.0.join("buf.yaml"))?;
    let path = copy.0.join("proto").join(file);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {file}"))?;
    let edited = edit(&text);
    anyhow::ensure!(edited != text, "the edit of {file} changed nothing");
    std::fs::write(&path, edited)?;
    Ok(copy)
}

/// Runs the check on `dir`: (passed, what it printed).
fn check(dir: &Path) -> anyhow::Result<(bool, String)> {
    let output = Command::new("bash")
        .arg(repository().join("deploy/buf-breaking.sh"))
        .arg(dir)
        .output()
        .context("running deploy/buf-breaking.sh")?;
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((output.status.success(), printed))
}

#[test]
fn the_contract_check_passes_the_protos_and_fails_a_breaking_change() -> anyhow::Result<()> {
    let (passed, printed) = check(&repository())?;
    assert!(
        passed,
        "the repository's protos break the released ones:\n{printed}"
    );

    // A comment changes nothing a client or a stored event depends on.
    let harmless = copy_with("harmless", "circle/eventstore/v1/commit.proto", |text| {
        text.replacen("// The tenant: the clinic network.", "// The tenant.", 1)
    })?;
    let (passed, printed) = check(&harmless.0)?;
    assert!(passed, "a comment was called breaking:\n{printed}");

    // A stored commit's field renumbered: every event already written would misread.
    let renumbered = copy_with("renumbered", "circle/eventstore/v1/commit.proto", |text| {
        text.replacen("string request_id = 1;", "string request_id = 11;", 1)
    })?;
    let (passed, printed) = check(&renumbered.0)?;
    assert!(!passed, "a renumbered field passed");
    assert!(printed.contains("request_id"), "{printed}");

    // An RPC removed: its clients would get UNIMPLEMENTED.
    let removed = copy_with(
        "removed-rpc",
        "circle/enrollment/v1/enrollment.proto",
        |text| {
            text.lines()
                .filter(|line| !line.trim_start().starts_with("rpc ListWaitlist("))
                .collect::<Vec<_>>()
                .join("\n")
        },
    )?;
    let (passed, printed) = check(&removed.0)?;
    assert!(!passed, "a removed RPC passed");
    assert!(printed.contains("ListWaitlist"), "{printed}");

    // An enum value of an event removed: a reader of an old event could not name it.
    let enum_value = copy_with(
        "enum-value",
        "circle/enrollment/events/v1/events.proto",
        |text| {
            text.lines()
                .filter(|line| {
                    !line
                        .trim_start()
                        .starts_with("DISCHARGE_REASON_NO_SHOW = 4;")
                })
                .collect::<Vec<_>>()
                .join("\n")
        },
    )?;
    let (passed, printed) = check(&enum_value.0)?;
    assert!(!passed, "a removed enum value passed");
    assert!(
        printed.contains("DISCHARGE_REASON_NO_SHOW") || printed.contains("\"4\""),
        "{printed}"
    );
    Ok(())
}
