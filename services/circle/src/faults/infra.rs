//! The processes `circle faults` kills: a PostgreSQL of its own (initdb into a scratch
//! directory), NATS as one server or as a three-node cluster on loopback ports, and the
//! services (two replicas of each, `circle serve SERVICE`). Each is a child process it
//! can SIGKILL and start again on the same port and data directory.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;

/// Free loopback ports, all bound at once (so no two are the same) and released
/// together; each child binds its own right after. Another process could still take
/// one in between: the run then fails to start, it never mixes two processes up.
pub struct Ports(Vec<u16>);

impl Ports {
    pub fn reserve(count: usize) -> anyhow::Result<Self> {
        let listeners = (0..count)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
            .collect::<Result<Vec<_>, _>>()?;
        let ports = listeners
            .iter()
            .map(|listener| listener.local_addr().map(|address| address.port()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self(ports))
    }

    pub fn take(&mut self) -> anyhow::Result<u16> {
        self.0.pop().context("no reserved port left")
    }
}

/// How to start one child again and again.
#[derive(Debug, Clone)]
pub struct Recipe {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Variables removed from the inherited environment.
    pub env_remove: Vec<String>,
    /// Run as this (uid, gid): PostgreSQL refuses to run as root.
    pub user: Option<(u32, u32)>,
    pub log: PathBuf,
    pub dir: PathBuf,
    /// A process group of its own (PostgreSQL: a kill takes its backends too);
    /// otherwise it stays in this process's group, so whatever kills the run's group
    /// kills it too.
    pub own_group: bool,
    /// What asks it to stop (SIGTERM; PostgreSQL's fast shutdown is SIGINT).
    pub stop_signal: &'static str,
}

/// A child process that is killed (SIGKILL, its whole process group) and started again.
pub struct Process {
    pub name: String,
    pub port: u16,
    recipe: Recipe,
    child: Option<tokio::process::Child>,
    /// Times it exited without being killed (found by `reap`).
    pub exited_on_its_own: u32,
}

impl Process {
    pub fn new(name: impl Into<String>, port: u16, recipe: Recipe) -> Self {
        Self {
            name: name.into(),
            port,
            recipe,
            child: None,
            exited_on_its_own: 0,
        }
    }

    pub fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.recipe.log)
            .with_context(|| format!("opening {}", self.recipe.log.display()))?;
        let mut command = tokio::process::Command::new(&self.recipe.program);
        for key in &self.recipe.env_remove {
            command.env_remove(key);
        }
        command
            .args(&self.recipe.args)
            .envs(
                self.recipe
                    .env
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .current_dir(&self.recipe.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        if self.recipe.own_group {
            command.process_group(0);
        }
        if let Some((uid, gid)) = self.recipe.user {
            command.uid(uid).gid(gid);
        }
        let child = command.spawn().with_context(|| {
            format!("starting {} ({})", self.name, self.recipe.program.display())
        })?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL (to its process group when it has one), then waits for it to be gone.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id()
                && self.recipe.own_group
            {
                signal(pid, "KILL", true);
            }
            let _ = child.kill().await;
            let _ = child.wait().await;
        }
    }

    /// Its stop signal (a graceful stop), then SIGKILL after `within`.
    pub async fn stop(&mut self, within: Duration) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                signal(pid, self.recipe.stop_signal, false);
            }
            if tokio::time::timeout(within, child.wait()).await.is_err() {
                if let Some(pid) = child.id() {
                    signal(pid, "KILL", self.recipe.own_group);
                }
                let _ = child.kill().await;
                let _ = child.wait().await;
            }
        }
    }

    pub fn is_up(&self) -> bool {
        self.child.is_some()
    }

    /// Notices a child that exited without being killed (it is started again by the
    /// caller, as an orchestrator would): true when it had.
    pub fn reap(&mut self) -> bool {
        let exited = self
            .child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(Some(_))));
        if exited {
            self.child = None;
            self.exited_on_its_own += 1;
        }
        exited
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(tokio::process::Child::id)
    }
}

impl Drop for Process {
    /// A run dropped midway (an error, or a signal to stop) leaves no process behind:
    /// `kill_on_drop` reaches the child alone, this its group.
    fn drop(&mut self) {
        if let Some(pid) = self.pid()
            && self.recipe.own_group
        {
            signal(pid, "KILL", true);
        }
    }
}

/// Sends `name` (KILL, TERM, INT) to `pid`, or to its process group (`kill(1)`: the
/// code forbids `unsafe`, which a direct `kill(2)` needs).
fn signal(pid: u32, name: &str, group: bool) {
    let target = if group {
        format!("-{pid}")
    } else {
        pid.to_string()
    };
    let sent = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg("--")
        .arg(&target)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !sent.is_ok_and(|status| status.success()) {
        eprintln!("faults: kill -{name} -- {target} failed (is kill(1) installed?)");
    }
}

/// The uid and gid of `user` (`id -u`, `id -g`).
fn user_ids(user: &str) -> anyhow::Result<(u32, u32)> {
    let id = |flag: &str| -> anyhow::Result<u32> {
        let output = std::process::Command::new("id")
            .arg(flag)
            .arg(user)
            .output()
            .context("running id")?;
        anyhow::ensure!(output.status.success(), "there is no user {user}");
        Ok(String::from_utf8_lossy(&output.stdout).trim().parse()?)
    };
    Ok((id("-u")?, id("-g")?))
}

/// PostgreSQL's programs: `--postgres-bin`, else the newest `/usr/lib/postgresql/*/bin`
/// (Debian), else the directory of `initdb` on the PATH.
pub fn postgres_bin(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = given {
        return Ok(dir.to_owned());
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    let found = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|dir| dir.join("initdb").exists());
    found
        .context("no PostgreSQL programs found (initdb): install PostgreSQL or pass --postgres-bin")
}

/// A PostgreSQL of the run's own: a fresh cluster (trust authentication on loopback,
/// superuser `postgres`) in `dir`, started as the `postgres` user when this runs as
/// root.
pub fn postgres(bin: &Path, dir: &Path, port: u16) -> anyhow::Result<Process> {
    let data = dir.join("pgdata");
    let user = if is_root() {
        Some(user_ids("postgres").context(
            "PostgreSQL does not run as root, and there is no postgres user to run it as",
        )?)
    } else {
        None
    };
    std::fs::create_dir_all(dir)?;
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(dir, Some(uid), Some(gid))?;
    }
    let mut initdb = std::process::Command::new(bin.join("initdb"));
    initdb
        // As the postgres user, a caller's directory (e.g. /root) may be closed to it.
        .current_dir(dir)
        .arg("-D")
        .arg(&data)
        .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some((uid, gid)) = user {
        use std::os::unix::process::CommandExt as _;
        initdb.uid(uid).gid(gid);
    }
    let output = initdb.output().context("running initdb")?;
    anyhow::ensure!(
        output.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let recipe = Recipe {
        program: bin.join("postgres"),
        args: vec![
            "-D".into(),
            data.display().to_string(),
            "-p".into(),
            port.to_string(),
            // TCP only: no socket path to outgrow, none to share.
            "-c".into(),
            "unix_socket_directories=".into(),
            "-c".into(),
            "listen_addresses=127.0.0.1".into(),
            "-c".into(),
            "max_connections=400".into(),
            "-c".into(),
            "fsync=on".into(),
        ],
        env: Vec::new(),
        env_remove: Vec::new(),
        user,
        log: dir.join("postgres.log"),
        dir: dir.to_owned(),
        own_group: true,
        stop_signal: "INT",
    };
    Ok(Process::new("postgres", port, recipe))
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

/// The nats-server to run: `--nats-server`, else `$CIRCLE_NATS_SERVER`, else the
/// current server the repository's scripts install (`deploy/infra.sh`), else
/// `nats-server` on the PATH.
pub fn nats_server(given: Option<&Path>) -> PathBuf {
    if let Some(path) = given {
        return path.to_owned();
    }
    if let Some(path) = std::env::var_os("CIRCLE_NATS_SERVER") {
        return PathBuf::from(path);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .map(|cache| cache.join("circle/nats-current/bin/nats-server"));
    if let Some(current) = cache.filter(|path| path.exists()) {
        return current;
    }
    PathBuf::from("nats-server")
}

/// The server's version as (major, minor).
pub fn nats_version(server: &Path) -> anyhow::Result<(u32, u32)> {
    let output = std::process::Command::new(server)
        .arg("--version")
        .output()
        .with_context(|| format!("running {} --version", server.display()))?;
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    let version = text
        .split_whitespace()
        .find_map(|word| word.strip_prefix('v'))
        .with_context(|| format!("no version in {text:?}"))?;
    let mut parts = version
        .split('.')
        .map(|part| part.parse::<u32>().unwrap_or(0));
    Ok((parts.next().unwrap_or(0), parts.next().unwrap_or(0)))
}

/// NATS with JetStream: one server, or `nodes` servers clustered on loopback ports.
/// Every write is synced to disk before it is acknowledged (`sync_interval: always`,
/// servers from 2.10).
pub fn nats(
    server: &Path,
    dir: &Path,
    nodes: usize,
    ports: &mut Ports,
) -> anyhow::Result<Vec<Process>> {
    std::fs::create_dir_all(dir)?;
    anyhow::ensure!(
        nats_version(server)? >= (2, 10),
        "fault injection needs nats-server 2.10 or newer (sync_interval: always; {} is \
         older); pass --nats-server",
        server.display()
    );
    let clients: Vec<u16> = (0..nodes).map(|_| ports.take()).collect::<Result<_, _>>()?;
    let routes: Vec<u16> = (0..nodes).map(|_| ports.take()).collect::<Result<_, _>>()?;
    let mut processes = Vec::new();
    for node in 0..nodes {
        let store = dir.join(format!("nats-{node}"));
        std::fs::create_dir_all(&store)?;
        let mut conf = format!(
            "server_name: n{node}\nlisten: 127.0.0.1:{}\njetstream {{\n  store_dir: \"{}\"\n  \
             sync_interval: always\n}}\n",
            clients[node],
            store.display(),
        );
        if nodes > 1 {
            let others: Vec<String> = routes
                .iter()
                .enumerate()
                .filter(|(other, _)| *other != node)
                .map(|(_, port)| format!("\"nats-route://127.0.0.1:{port}\""))
                .collect();
            conf.push_str(&format!(
                "cluster {{\n  name: circlefaults\n  listen: 127.0.0.1:{}\n  routes: [{}]\n}}\n",
                routes[node],
                others.join(", ")
            ));
        }
        let file = dir.join(format!("nats-{node}.conf"));
        std::fs::write(&file, conf)?;
        processes.push(Process::new(
            format!("nats-{node}"),
            clients[node],
            Recipe {
                program: server.to_owned(),
                args: vec!["-c".into(), file.display().to_string()],
                env: Vec::new(),
                env_remove: Vec::new(),
                user: None,
                log: dir.join(format!("nats-{node}.log")),
                dir: dir.to_owned(),
                own_group: false,
                stop_signal: "TERM",
            },
        ));
    }
    Ok(processes)
}
