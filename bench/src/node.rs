//! The optional realistic upstream: an MCP server built on the official TypeScript SDK
//! (`bench/node/upstream.mjs`), run by Node as a child process on 127.0.0.1.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};

/// How long Node may take to load the SDK and listen.
const STARTUP: Duration = Duration::from_secs(30);

/// A running Node upstream; stopped when dropped.
pub struct NodeUpstream {
    child: Child,
    /// Its MCP endpoint.
    pub url: String,
}

impl NodeUpstream {
    /// Start `node SCRIPT 0` and wait for its `listening PORT` line. Its standard error goes
    /// to `log`.
    pub fn start(node: &Path, script: &Path, log: &Path) -> anyhow::Result<NodeUpstream> {
        let stderr =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut child = Command::new(node)
            .arg(script)
            .arg("0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {} {}", node.display(), script.display()))?;
        let stdout = child
            .stdout
            .take()
            .context("no standard output from node")?;
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next().transpose();
            let _ = sender.send(first);
            // Keep draining so that the child never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match receiver.recv_timeout(STARTUP) {
            Ok(Ok(Some(line))) => line,
            outcome => {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "the Node upstream did not start within {STARTUP:?} ({outcome:?}); see {}",
                    log.display()
                );
            }
        };
        let port: u16 = match line.strip_prefix("listening ").map(str::parse) {
            Some(Ok(port)) => port,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the Node upstream printed {line:?} instead of `listening PORT`");
            }
        };
        Ok(NodeUpstream {
            child,
            url: format!("http://127.0.0.1:{port}/"),
        })
    }
}

impl Drop for NodeUpstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
