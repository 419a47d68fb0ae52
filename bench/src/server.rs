//! Switchboard as a child process: the real binary, started with a database URL and a loopback
//! port, watched until `/healthz` answers, measured through `/proc/<pid>/status`, and stopped
//! with SIGTERM (SIGKILL if it does not go).
//!
//! The child's standard output goes to a log file in the run's temporary directory, except
//! that the admin token printed on first start is also kept; its standard error (the tracing
//! log) goes to a second file. Both are shown, last lines first, when the child fails.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How to start one Switchboard process.
#[derive(Clone, Debug)]
pub struct Launch {
    /// The `switchboard` binary.
    pub binary: PathBuf,
    /// A label for logs and the report, e.g. `sqlite` or `postgres-b`.
    pub name: String,
    /// `SWITCHBOARD_DATABASE_URL`.
    pub database_url: String,
    /// `SWITCHBOARD_ENCRYPTION_KEYS`; without it a SQLite server creates its key file.
    pub encryption_keys: Option<String>,
    /// Where the child's logs go.
    pub log_dir: PathBuf,
}

/// Memory of a process, from `/proc/<pid>/status`.
#[derive(Clone, Copy, Debug)]
pub struct Memory {
    /// Resident set size now (`VmRSS`), in KiB.
    pub rss_kib: u64,
    /// Peak resident set size since start (`VmHWM`), in KiB.
    pub peak_kib: u64,
}

/// A running Switchboard child process.
pub struct Server {
    /// Its label.
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
    /// From spawn to the first `200` on `/healthz`.
    pub started_in: Duration,
    child: Child,
    token: Arc<Mutex<Option<String>>>,
    stdout_log: PathBuf,
    stderr_log: PathBuf,
}

/// A free loopback port: bound, read and released. Another process could take it in between;
/// on this machine nothing else is binding ports during a run.
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

impl Server {
    /// Start the server and wait until `/healthz` answers `200`.
    pub async fn start(launch: &Launch) -> anyhow::Result<Server> {
        let port = free_port()?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let stdout_log = launch.log_dir.join(format!("{}.stdout.log", launch.name));
        let stderr_log = launch.log_dir.join(format!("{}.stderr.log", launch.name));
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr_log)
            .with_context(|| format!("opening {}", stderr_log.display()))?;

        let mut command = Command::new(&launch.binary);
        // Only the settings given here: an operator's SWITCHBOARD_* variables must not leak
        // into a measurement.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("SWITCHBOARD_") {
                command.env_remove(&key);
            }
        }
        command
            .arg("serve")
            .env("SWITCHBOARD_DATABASE_URL", &launch.database_url)
            .env("SWITCHBOARD_BIND", addr.to_string())
            // The fake upstreams listen on loopback, which production settings refuse.
            .env("SWITCHBOARD_ALLOW_PRIVATE_NETWORKS", "true")
            // Background health checks would add upstream traffic at random moments.
            .env("SWITCHBOARD_HEALTH_INTERVAL_SECS", "0")
            // One user sends thousands of tool calls a second and the listed workspace holds
            // up to a thousand servers: with the rate limits and the server quota on, the run
            // would measure their refusals instead of the server.
            .env("SWITCHBOARD_USER_OUTBOUND_PER_MINUTE", "0")
            .env("SWITCHBOARD_WORKSPACE_OUTBOUND_PER_MINUTE", "0")
            .env("SWITCHBOARD_MAX_SERVERS_PER_WORKSPACE", "1000000")
            // The subscription scenario holds ten thousand sockets (or `--subscribers`) with the
            // one admin token: lift the per-user and per-process WebSocket caps to their maxima.
            .env("SWITCHBOARD_WS_MAX_SOCKETS_PER_USER", "1000000")
            .env("SWITCHBOARD_WS_MAX_SOCKETS", "1000000")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        if let Some(keys) = &launch.encryption_keys {
            command.env("SWITCHBOARD_ENCRYPTION_KEYS", keys);
        }

        let probe = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_millis(500))
            .build()?;
        let health = format!("http://{addr}/healthz");
        let spawned = Instant::now();
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", launch.binary.display()))?;
        // From here on, dropping `server` stops the child.
        let mut server = Server {
            name: launch.name.clone(),
            addr,
            started_in: Duration::ZERO,
            child,
            token: Arc::new(Mutex::new(None)),
            stdout_log,
            stderr_log,
        };
        let stdout = server.child.stdout.take().context("child stdout")?;
        spawn_stdout_reader(stdout, &server.stdout_log, server.token.clone())?;

        let deadline = spawned + Duration::from_secs(60);
        loop {
            if let Ok(response) = probe.get(&health).send().await
                && response.status().is_success()
            {
                server.started_in = spawned.elapsed();
                return Ok(server);
            }
            if let Some(status) = server.child.try_wait()? {
                bail!(
                    "{} exited during start-up ({status})\n{}",
                    server.name,
                    server.log_tail()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not answer /healthz within 60 s\n{}",
                    server.name,
                    server.log_tail()
                );
            }
            // Polling every millisecond bounds the start-up measurement's error to about that.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The admin token printed on first start of an empty database.
    pub async fn bootstrap_token(&self) -> anyhow::Result<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(token) = self.token.lock().expect("token slot").clone() {
                return Ok(token);
            }
            if Instant::now() > deadline {
                bail!(
                    "{} printed no admin token (was the database empty?)\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The process's memory now.
    pub fn memory(&self) -> anyhow::Result<Memory> {
        process_memory(self.pid())
    }

    /// CPU time (user and system, every thread, exited ones included) the process has used
    /// since it started.
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        process_cpu(self.pid())
    }

    /// How many times the process's live threads have gone to sleep waiting (voluntary
    /// context switches, summed over `/proc/<pid>/task/*/status`) since they started.
    pub fn sleeps(&self) -> anyhow::Result<u64> {
        process_sleeps(self.pid())
    }

    /// The last lines of both logs, for error messages.
    pub fn log_tail(&self) -> String {
        format!(
            "--- {} ---\n{}\n--- {} ---\n{}",
            self.stdout_log.display(),
            tail(&self.stdout_log, 20),
            self.stderr_log.display(),
            tail(&self.stderr_log, 40)
        )
    }

    /// Stop with SIGTERM and wait (SIGKILL after 10 s).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        terminate(self.child.id());
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                self.child.kill()?;
                self.child.wait()?;
                bail!("{} ignored SIGTERM for 10 s and was killed", self.name);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A run that fails half-way must not leave servers behind.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Ask a child to stop gracefully. `kill(1)` keeps this crate free of `unsafe`.
fn terminate(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Copy the child's stdout to a file and keep the admin token it prints on first start (the
/// one indented line starting with the token prefix).
fn spawn_stdout_reader(
    stdout: std::process::ChildStdout,
    log: &Path,
    token: Arc<Mutex<Option<String>>>,
) -> anyhow::Result<()> {
    let mut file =
        std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = writeln!(file, "{line}");
            let trimmed = line.trim();
            if trimmed.starts_with("sbt_") && !trimmed.contains(' ') {
                *token.lock().expect("token slot") = Some(trimmed.to_owned());
            }
        }
    });
    Ok(())
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `VmRSS` and `VmHWM` of a process.
pub fn process_memory(pid: u32) -> anyhow::Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok(Memory {
        rss_kib: field("VmRSS:")?,
        peak_kib: field("VmHWM:")?,
    })
}

/// CPU time a process has used, from `/proc/PID/stat` (`utime` + `stime`, fields 14 and 15,
/// which count every thread the process ever had).
pub fn process_cpu(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; fields are counted after its ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .with_context(|| format!("no command name in /proc/{pid}/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |index: usize| -> anyhow::Result<u64> {
        fields
            .get(index)
            .and_then(|field| field.parse().ok())
            .with_context(|| format!("no field {} in /proc/{pid}/stat", index + 3))
    };
    // `rest` starts at field 3 (state): utime is field 14, stime field 15.
    let total = ticks(11)? + ticks(12)?;
    Ok(Duration::from_secs_f64(
        total as f64 / clock_ticks_per_second(),
    ))
}

/// The voluntary context switches of every live thread of `pid`: each is a thread that found
/// nothing to do (or had to wait) and slept until woken. A thread that has exited no longer
/// counts, so compare readings taken while the same threads run.
pub fn process_sleeps(pid: u32) -> anyhow::Result<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .with_context(|| format!("reading /proc/{pid}/task"))?;
    let mut total = 0_u64;
    for task in tasks {
        // A thread may exit between the listing and the read.
        let Ok(status) = std::fs::read_to_string(task?.path().join("status")) else {
            continue;
        };
        total += voluntary_switches(&status)
            .with_context(|| format!("no voluntary_ctxt_switches in a thread of {pid}"))?;
    }
    Ok(total)
}

/// `voluntary_ctxt_switches` of one `/proc/.../status` text.
fn voluntary_switches(status: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        line.strip_prefix("voluntary_ctxt_switches:")
            .and_then(|rest| rest.trim().parse().ok())
    })
}

/// `sysconf(_SC_CLK_TCK)`, as `getconf CLK_TCK` reports it (100 on every Linux the harness
/// runs on, which is also the fallback).
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse::<f64>().ok())
            .filter(|ticks| *ticks > 0.0)
            .unwrap_or(100.0)
    })
}

/// Wall time of `switchboard --version`: what spawning the binary costs on this machine before
/// any of its own start-up work (the start-up baseline). The median of five runs.
pub fn exec_baseline(binary: &Path) -> anyhow::Result<Duration> {
    let mut runs = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let status = Command::new(binary)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .with_context(|| format!("running {} --version", binary.display()))?;
        if !status.success() {
            bail!("{} --version failed: {status}", binary.display());
        }
        runs.push(started.elapsed());
    }
    runs.sort();
    Ok(runs[runs.len() / 2])
}

/// The soft limit on open files of this process (children inherit it).
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voluntary_switches_are_read_from_a_status_text() {
        let status = "Name:\tswitchboard\nvoluntary_ctxt_switches:\t1234\n\
                      nonvoluntary_ctxt_switches:\t56\n";
        assert_eq!(voluntary_switches(status), Some(1234));
        assert_eq!(voluntary_switches("Name:\tx\n"), None);
    }

    #[test]
    fn a_thread_that_sleeps_is_counted() {
        let own = || {
            voluntary_switches(&std::fs::read_to_string("/proc/thread-self/status").unwrap())
                .unwrap()
        };
        let before = own();
        std::thread::sleep(Duration::from_millis(5));
        let after = own();
        assert!(after > before, "{before} then {after}");
        // The process's sum includes this thread, alive throughout.
        assert!(process_sleeps(std::process::id()).unwrap() >= after);
    }
}
