//! The two servers, each pinned to the server core with `taskset -c`:
//!
//! - [`PierServer`]: this binary again, as a child in `--child-serve` mode, running
//!   `pier_dns_server::Server` (its UDP threads, its Tokio runtime, everything) over
//!   an index it builds itself when told to; the benchmark measures its RSS from
//!   outside.
//! - [`Unbound`]: Debian's unbound with a generated config: one thread, a static
//!   `cluster.local.` zone with the same A and SRV records as `local-data`, a 4 MiB
//!   receive buffer (what Pier asks for its UDP sockets), no validator, no remote
//!   control, no chroot, no daemon, logging into the benchmark's directory.
//!
//! Both listen on 127.0.0.1 only, on a port of their own.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use arc_swap::ArcSwap;
use pier_dns::Index;
use pier_dns_server::{DnsConfig, Server};

use crate::objects::{Layout, ZONE};
use crate::probe::{Probe, TYPE_A};
use crate::procs;

/// Where both servers listen.
pub const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const START_DEADLINE: Duration = Duration::from_secs(60);

/// What the child is told on stdin.
const LOAD: &str = "load";

/// The child side of [`PierServer`]: serves an empty index on `addr` (port 0),
/// prints `ready <addr>`, then on `load` builds the Services of `layout` into a
/// fresh index Service by Service (`Index::upsert_service`, each generated object
/// dropped right after, so that the process holds the index and not the objects),
/// publishes it and prints `loaded <ms> <services>`. Exits when stdin closes.
pub fn child_main(layout: Layout, addr: IpAddr, udp_workers: usize) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the server's runtime")?;
    rt.block_on(async move {
        use tokio::io::AsyncBufReadExt;
        let zone = pier_dns::Config::default();
        let index = Index::builder(zone.clone()).context("the zone")?.build();
        let index = Arc::new(ArcSwap::from_pointee(index));
        let config = DnsConfig {
            listen: vec![SocketAddr::new(addr, 0)],
            upstreams: Vec::new(),
            metrics: None,
            udp_workers,
            ..DnsConfig::default()
        };
        let (server, addrs) = Server::bind(config, Arc::clone(&index)).context("binding the dns server")?;
        let bound = *addrs.first().context("no address bound")?;
        let mut serving = tokio::spawn(server.serve());
        say(&format!("ready {bound}"))?;
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        loop {
            tokio::select! {
                line = lines.next_line() => match line.context("reading stdin")? {
                    None => return Ok(()),
                    Some(l) if l.trim() == LOAD => {
                        let started = Instant::now();
                        let mut next = Index::builder(zone.clone()).context("the zone")?.build();
                        for k in 0..layout.namespaces {
                            next.upsert_namespace(&Layout::namespace(k));
                        }
                        for i in 0..layout.services {
                            let (service, slice) = (layout.service(i), layout.slice(i));
                            next.upsert_service(&service, [&slice]);
                        }
                        let count = next.service_count();
                        index.store(Arc::new(next));
                        say(&format!("loaded {:.1} {count}", started.elapsed().as_secs_f64() * 1000.0))?;
                    }
                    Some(other) => bail!("unknown command {other:?}"),
                },
                served = &mut serving => bail!("the dns server stopped: {served:?}"),
            }
        }
    })
}

fn say(line: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|()| out.flush()).context("writing to the benchmark")
}

/// Pier's DNS server in a child process pinned to one core.
pub struct PierServer {
    pub pid: u32,
    pub addr: SocketAddr,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl PierServer {
    pub fn start(core: usize, layout: Layout, udp_workers: usize) -> anyhow::Result<PierServer> {
        let mut cmd = procs::this_binary_on(core, "--child-serve")?;
        cmd.args(["--services", &layout.services.to_string()])
            .args(["--namespaces", &layout.namespaces.to_string()])
            .args(["--udp-workers", &udp_workers.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut pipes = None;
        let pid = procs::spawn(cmd, |child| pipes = Some((child.stdin.take(), child.stdout.take())))
            .context("starting the pier dns server (taskset)")?;
        let Some((Some(stdin), Some(stdout))) = pipes else {
            procs::stop(pid);
            bail!("no pipes to the pier dns server");
        };
        let mut server =
            PierServer { pid, addr: SocketAddr::new(LOOPBACK, 0), stdin, stdout: BufReader::new(stdout) };
        let line = server.line()?;
        let addr = line
            .strip_prefix("ready ")
            .and_then(|a| a.trim().parse().ok())
            .ok_or_else(|| anyhow!("the pier dns server said {line:?}, not ready"))?;
        server.addr = addr;
        Ok(server)
    }

    fn line(&mut self) -> anyhow::Result<String> {
        let mut line = String::new();
        let n = self.stdout.read_line(&mut line).context("reading from the pier dns server")?;
        if n == 0 {
            bail!("the pier dns server exited ({:?})", procs::exited(self.pid));
        }
        Ok(line.trim().to_string())
    }

    /// Builds and publishes the index; the build's time in ms and the Services in it.
    pub fn load(&mut self) -> anyhow::Result<(f64, usize)> {
        writeln!(self.stdin, "{LOAD}")
            .and_then(|()| self.stdin.flush())
            .context("telling the server to load")?;
        let line = self.line()?;
        let mut words = line.split_whitespace();
        match (
            words.next(),
            words.next().and_then(|m| m.parse().ok()),
            words.next().and_then(|n| n.parse().ok()),
        ) {
            (Some("loaded"), Some(ms), Some(n)) => Ok((ms, n)),
            _ => bail!("the pier dns server said {line:?}, not loaded"),
        }
    }
}

impl Drop for PierServer {
    fn drop(&mut self) {
        procs::stop(self.pid);
    }
}

/// unbound in a child process pinned to one core.
pub struct Unbound {
    pub pid: u32,
    pub addr: SocketAddr,
    pub config: PathBuf,
}

impl Unbound {
    /// Starts unbound serving `layout`'s records (none: only the empty static zone)
    /// and waits until it answers.
    pub fn start(
        bin: &Path,
        core: usize,
        dir: &Path,
        label: &str,
        layout: Option<&Layout>,
    ) -> anyhow::Result<Unbound> {
        let port = free_port()?;
        let addr = SocketAddr::new(LOOPBACK, port);
        let log = dir.join(format!("{label}.log"));
        let mut conf = format!(
            "server:\n  verbosity: 1\n  num-threads: 1\n  interface: {}@{port}\n  do-ip4: yes\n  do-ip6: no\n  \
             do-udp: yes\n  do-tcp: yes\n  access-control: 127.0.0.0/8 allow\n  do-daemonize: no\n  chroot: \"\"\n  \
             username: \"\"\n  directory: \"{dir}\"\n  pidfile: \"\"\n  use-syslog: no\n  logfile: \"{log}\"\n  \
             module-config: \"iterator\"\n  so-rcvbuf: 4m\n",
            addr.ip(),
            dir = dir.display(),
            log = log.display(),
        );
        match layout {
            Some(layout) => layout.unbound_local_data(&mut conf),
            None => conf.push_str(&format!("  local-zone: \"{ZONE}.\" static\n")),
        }
        conf.push_str("remote-control:\n  control-enable: no\n");
        let config = dir.join(format!("{label}.conf"));
        std::fs::write(&config, conf).with_context(|| format!("writing {}", config.display()))?;
        let mut cmd = Command::new("taskset");
        cmd.arg("-c")
            .arg(core.to_string())
            .arg(bin)
            .arg("-d")
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let pid = procs::spawn(cmd, |_| ()).context("starting unbound (taskset)")?;
        let unbound = Unbound { pid, addr, config };
        let deadline = Instant::now() + START_DEADLINE;
        let mut probe = Probe::new(addr, Duration::from_millis(100))?;
        loop {
            if let Some(status) = procs::exited(pid) {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                bail!("unbound exited ({status}): {}", log.trim());
            }
            if probe.query(&format!("ready.{ZONE}"), TYPE_A).is_ok() {
                return Ok(unbound);
            }
            if Instant::now() > deadline {
                bail!("unbound does not answer after {START_DEADLINE:?} (log: {})", log.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Unbound {
    fn drop(&mut self) {
        procs::stop(self.pid);
    }
}

/// A port free for both UDP and TCP on the loopback address (released again: a
/// small race with other programs picking ports, checked by the server's bind).
pub fn free_port() -> anyhow::Result<u16> {
    for _ in 0..32 {
        let udp = UdpSocket::bind(SocketAddr::new(LOOPBACK, 0)).context("finding a free port")?;
        let port = udp.local_addr().context("finding a free port")?.port();
        if TcpListener::bind(SocketAddr::new(LOOPBACK, port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no port free for both UDP and TCP on {LOOPBACK}")
}
