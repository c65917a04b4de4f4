//! Applying nft scripts: the [`NftApplier`] trait, [`NftCli`] which runs Debian's
//! `nft`, and [`RecordingNft`] for tests.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use pier_sandbox::netlink::in_netns;
use pier_sandbox::{Netns, NetnsName};

use crate::error::{NftError, Rejection};
use crate::names::{Family, TableName};
use crate::netlink_apply::NftNetlink;
use crate::nftnl::NftMsg;

/// Carries out nft operations in one network namespace.
///
/// Contract: [`NftApplier::apply`] is one transaction (all of the script or none of
/// it, as `nft -f` guarantees); [`NftApplier::delete_table`] succeeds when the table
/// is already gone.
#[async_trait]
pub trait NftApplier: Send + Sync {
    /// Runs `script` (nft's file syntax, e.g. from the pier-proxy renderer) as one
    /// atomic transaction.
    ///
    /// # Errors
    ///
    /// [`NftError::Rejected`] with nft's diagnostics when nft refuses the script;
    /// the ruleset is then unchanged.
    async fn apply(&self, script: &str) -> Result<(), NftError>;

    /// Applies `msgs` to table `ip <table>` as one netlink transaction, if this
    /// applier can ([`NftCli`] can, through [`NftNetlink`]); `Ok(false)` if it
    /// cannot, and the caller applies the same change as a script instead.
    ///
    /// # Errors
    ///
    /// [`NftError::Netlink`] when the kernel refuses the batch (nothing applied).
    async fn apply_batch(&self, table: &TableName, msgs: Vec<NftMsg>) -> Result<bool, NftError> {
        let _ = (table, msgs);
        Ok(false)
    }

    /// The table as `nft list table <family> <table>` prints it.
    ///
    /// # Errors
    ///
    /// [`NftError::NoSuchTable`] when it does not exist.
    async fn list_table(&self, family: Family, table: &TableName) -> Result<String, NftError>;

    /// The table without the elements of its sets and maps (`nft -t list table`):
    /// what it holds, much faster when sets are large.
    ///
    /// # Errors
    ///
    /// [`NftError::NoSuchTable`] when it does not exist.
    async fn list_table_terse(&self, family: Family, table: &TableName) -> Result<String, NftError> {
        self.list_table(family, table).await
    }

    /// Deletes the table and everything in it; `Ok(false)` when there was none.
    ///
    /// # Errors
    ///
    /// As [`NftApplier::apply`].
    async fn delete_table(&self, family: Family, table: &TableName) -> Result<bool, NftError>;
}

/// Where Debian installs nft; `/usr/sbin` is not on every `PATH` (CI's may lack it).
const DEBIAN_NFT: &str = "/usr/sbin/nft";

/// The real [`NftApplier`]: runs the `nft` program (nftables 1.0 or later), which
/// needs root (`CAP_NET_ADMIN` in the namespace).
///
/// [`NftCli::new`] works in the caller's network namespace: the node agent runs inside
/// its node's namespace, so that is the node's. [`NftCli::in_netns`] works in a named
/// namespace (`/run/netns/<name>`), as `ip netns exec` would: nft is started from a
/// short-lived thread that has joined the namespace (`pier_sandbox`'s `in_netns`), so
/// the child is born there and the caller's threads never move.
///
/// The async methods run nft on tokio's blocking pool (call them within a runtime);
/// the `*_blocking` methods are the same operations for synchronous callers.
#[derive(Debug, Clone)]
pub struct NftCli {
    program: PathBuf,
    netns: Option<NetnsName>,
}

impl Default for NftCli {
    fn default() -> Self {
        Self::new()
    }
}

impl NftCli {
    /// nft in the caller's network namespace: the namespace of the thread that runs
    /// it, which for the async methods is a tokio blocking-pool thread.
    pub fn new() -> Self {
        let program = if Path::new(DEBIAN_NFT).exists() { DEBIAN_NFT } else { "nft" };
        NftCli { program: PathBuf::from(program), netns: None }
    }

    /// nft in the named network namespace `/run/netns/<netns>`.
    pub fn in_netns(netns: NetnsName) -> Self {
        NftCli { netns: Some(netns), ..Self::new() }
    }

    /// Runs `program` instead of `nft` (found on `PATH` unless it has a `/`).
    pub fn with_program(mut self, program: impl Into<PathBuf>) -> Self {
        self.program = program.into();
        self
    }

    /// The namespace this works in; `None` for the caller's.
    pub fn netns(&self) -> Option<&NetnsName> {
        self.netns.as_ref()
    }

    /// [`NftApplier::apply`], blocking.
    ///
    /// # Errors
    ///
    /// As [`NftApplier::apply`].
    pub fn apply_blocking(&self, script: &str) -> Result<(), NftError> {
        let out = self.run(&["-f", "-"], Some(script.as_bytes()))?;
        check(&["-f", "-"], &out)
    }

    /// Checks `script` without applying it (`nft -c -f -`): the kernel validates the
    /// transaction and then aborts it.
    ///
    /// # Errors
    ///
    /// As [`NftApplier::apply`].
    pub fn check_blocking(&self, script: &str) -> Result<(), NftError> {
        let out = self.run(&["-c", "-f", "-"], Some(script.as_bytes()))?;
        check(&["-c", "-f", "-"], &out)
    }

    /// [`NftApplier::list_table`], blocking.
    ///
    /// # Errors
    ///
    /// As [`NftApplier::list_table`].
    pub fn list_table_blocking(&self, family: Family, table: &TableName) -> Result<String, NftError> {
        self.list(&["list", "table", family.as_str(), table.as_str()], family, table)
    }

    /// [`NftApplier::apply_batch`], blocking, through [`NftNetlink`] in the same
    /// namespace.
    ///
    /// # Errors
    ///
    /// As [`NftNetlink::apply_blocking`].
    pub fn apply_batch_blocking(&self, table: &TableName, msgs: &[NftMsg]) -> Result<(), NftError> {
        let netlink = match &self.netns {
            Some(netns) => NftNetlink::in_netns(netns.clone()),
            None => NftNetlink::new(),
        };
        netlink.apply_blocking(table, msgs)
    }

    /// `nft -j list ruleset`: every table of the namespace as JSON (for tests that
    /// compare rulesets, see [`crate::canonical_ruleset`]).
    ///
    /// # Errors
    ///
    /// As [`NftApplier::apply`].
    pub fn list_ruleset_json_blocking(&self) -> Result<String, NftError> {
        let args = ["-j", "list", "ruleset"];
        let out = self.run(&args, None)?;
        check(&args, &out)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// [`NftApplier::list_table_terse`], blocking.
    ///
    /// # Errors
    ///
    /// As [`NftApplier::list_table`].
    pub fn list_table_terse_blocking(&self, family: Family, table: &TableName) -> Result<String, NftError> {
        // `list table -t` still formats every rule (0.85 s for 10,000 chains);
        // `list chains` prints chains without their rules (0.07 s). These list
        // the whole family, so keep only the table's block.
        let fam = family.as_str();
        let chains = self.list(&["list", "chains", fam], family, table)?;
        let Some(mut out) = table_block(&chains, family, table) else {
            return Err(NftError::NoSuchTable { family, table: table.clone() });
        };
        for kind in ["sets", "maps"] {
            let listing = self.list(&["-t", "list", kind, fam], family, table)?;
            out.push_str(&table_block(&listing, family, table).unwrap_or_default());
        }
        Ok(out)
    }

    fn list(&self, args: &[&str], family: Family, table: &TableName) -> Result<String, NftError> {
        let out = self.run(args, None)?;
        match check(args, &out) {
            Ok(()) => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
            Err(NftError::Rejected(r)) if r.is_not_found() => {
                Err(NftError::NoSuchTable { family, table: table.clone() })
            }
            Err(e) => Err(e),
        }
    }

    /// [`NftApplier::delete_table`], blocking.
    ///
    /// # Errors
    ///
    /// As [`NftApplier::delete_table`].
    pub fn delete_table_blocking(&self, family: Family, table: &TableName) -> Result<bool, NftError> {
        // `destroy table` (nft 1.0.8, Linux 6.3) would ignore a missing table by
        // itself; Debian 12's nft is 1.0.6, so ENOENT is recognised instead.
        let args = ["delete", "table", family.as_str(), table.as_str()];
        let out = self.run(&args, None)?;
        match check(&args, &out) {
            Ok(()) => Ok(true),
            Err(NftError::Rejected(r)) if r.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<Output, NftError> {
        match &self.netns {
            None => self.spawn_and_wait(args, stdin),
            Some(name) => in_netns(&Netns::Named(name.clone()), || Ok(self.spawn_and_wait(args, stdin)))
                .map_err(|source| NftError::Netns { netns: name.clone(), source })?,
        }
    }

    fn spawn_and_wait(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<Output, NftError> {
        let mut child = Command::new(&self.program)
            .args(args)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| NftError::Spawn { program: self.program.clone(), source })?;
        let io = |source| NftError::Io { program: self.program.clone(), source };
        // The script is written from another thread while this one drains stdout and
        // stderr: a large script and a chatty nft could otherwise each wait on a full
        // pipe of the other.
        std::thread::scope(|s| {
            let writer = child.stdin.take().zip(stdin).map(|(mut pipe, input)| {
                s.spawn(move || {
                    // Dropping the pipe at the end is nft's end of input.
                    pipe.write_all(input)
                })
            });
            let output = child.wait_with_output().map_err(io)?;
            if let Some(writer) = writer {
                match writer.join() {
                    Ok(Ok(())) => {}
                    // nft stopped reading; its exit status and stderr say why.
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::BrokenPipe && !output.status.success() => {}
                    Ok(Err(e)) => return Err(io(e)),
                    Err(_) => return Err(NftError::Join),
                }
            }
            Ok(output)
        })
    }
}

/// The block of `table <family> <name> { ... }` in an nft listing of several
/// tables, header and closing brace included; `None` if the table is not there.
fn table_block(listing: &str, family: Family, table: &TableName) -> Option<String> {
    let header = format!("table {} {} {{", family.as_str(), table.as_str());
    let mut lines = listing.lines().skip_while(|l| *l != header);
    let mut out = format!("{}\n", lines.next()?);
    for line in lines {
        out.push_str(line);
        out.push('\n');
        if line == "}" {
            break;
        }
    }
    Some(out)
}

fn check(args: &[&str], out: &Output) -> Result<(), NftError> {
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(Rejection::new(args.join(" "), out.status.code(), stderr).into())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, NftError> + Send + 'static,
) -> Result<T, NftError> {
    tokio::task::spawn_blocking(f).await.map_err(|_| NftError::Join)?
}

#[async_trait]
impl NftApplier for NftCli {
    async fn apply(&self, script: &str) -> Result<(), NftError> {
        let (cli, script) = (self.clone(), script.to_owned());
        blocking(move || cli.apply_blocking(&script)).await
    }

    async fn list_table(&self, family: Family, table: &TableName) -> Result<String, NftError> {
        let (cli, table) = (self.clone(), table.clone());
        blocking(move || cli.list_table_blocking(family, &table)).await
    }

    async fn apply_batch(&self, table: &TableName, msgs: Vec<NftMsg>) -> Result<bool, NftError> {
        let (cli, table) = (self.clone(), table.clone());
        blocking(move || cli.apply_batch_blocking(&table, &msgs).map(|()| true)).await
    }

    async fn list_table_terse(&self, family: Family, table: &TableName) -> Result<String, NftError> {
        let (cli, table) = (self.clone(), table.clone());
        blocking(move || cli.list_table_terse_blocking(family, &table)).await
    }

    async fn delete_table(&self, family: Family, table: &TableName) -> Result<bool, NftError> {
        let (cli, table) = (self.clone(), table.clone());
        blocking(move || cli.delete_table_blocking(family, &table)).await
    }
}

/// A call a [`RecordingNft`] received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NftCall {
    /// [`NftApplier::apply`] with this script.
    Apply(String),
    /// [`NftApplier::list_table`].
    ListTable(Family, TableName),
    /// [`NftApplier::delete_table`].
    DeleteTable(Family, TableName),
}

#[derive(Debug, Default)]
struct Recorded {
    calls: Vec<NftCall>,
    /// stderr for the next applies to fail with, first first.
    failures: Vec<String>,
    tables: HashMap<(Family, TableName), String>,
}

/// The test [`NftApplier`]: records every call and changes nothing. Clones share
/// one record, so a test keeps a clone and hands another to the code under test.
///
/// `list_table` answers what [`RecordingNft::set_table`] stored (else
/// [`NftError::NoSuchTable`]); `delete_table` forgets it; `apply` succeeds unless
/// [`RecordingNft::fail_next_apply`] queued a failure.
#[derive(Debug, Default, Clone)]
pub struct RecordingNft {
    inner: Arc<Mutex<Recorded>>,
}

impl RecordingNft {
    /// A recorder with no calls and no tables.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        // A test that panicked while holding the lock has failed already; the record
        // itself is still consistent.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<NftCall> {
        self.lock().calls.clone()
    }

    /// The scripts given to `apply` so far (failed ones included), in order.
    pub fn applied(&self) -> Vec<String> {
        let calls = self.lock().calls.clone();
        calls
            .into_iter()
            .filter_map(|c| match c {
                NftCall::Apply(s) => Some(s),
                _ => None,
            })
            .collect()
    }

    /// Makes the next `apply` fail as nft would with `stderr` (e.g.
    /// `/dev/stdin:1:1-5: Error: ...`); queued failures are used in order.
    pub fn fail_next_apply(&self, stderr: impl Into<String>) {
        self.lock().failures.push(stderr.into());
    }

    /// What `list_table` answers for this table from now on.
    pub fn set_table(&self, family: Family, table: &TableName, listing: impl Into<String>) {
        self.lock().tables.insert((family, table.clone()), listing.into());
    }
}

#[async_trait]
impl NftApplier for RecordingNft {
    async fn apply(&self, script: &str) -> Result<(), NftError> {
        let mut r = self.lock();
        r.calls.push(NftCall::Apply(script.to_string()));
        if r.failures.is_empty() {
            return Ok(());
        }
        let stderr = r.failures.remove(0);
        Err(Rejection::new("-f -", Some(1), stderr).into())
    }

    async fn list_table(&self, family: Family, table: &TableName) -> Result<String, NftError> {
        let mut r = self.lock();
        r.calls.push(NftCall::ListTable(family, table.clone()));
        r.tables
            .get(&(family, table.clone()))
            .cloned()
            .ok_or_else(|| NftError::NoSuchTable { family, table: table.clone() })
    }

    async fn delete_table(&self, family: Family, table: &TableName) -> Result<bool, NftError> {
        let mut r = self.lock();
        r.calls.push(NftCall::DeleteTable(family, table.clone()));
        Ok(r.tables.remove(&(family, table.clone())).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(s: &str) -> TableName {
        TableName::new(s).expect("table name")
    }

    #[test]
    fn a_table_block_is_cut_out_of_a_family_listing() {
        let listing = "table ip other {\n\tchain a {\n\t}\n}\ntable ip pier-proxy {\n\tchain service-x/y {\n\t}\n\tmap endpoints-tcp-0 {\n\t\ttypeof numgen random mod 1 : ip daddr . tcp dport\n\t}\n}\ntable ip last {\n}\n";
        assert_eq!(
            table_block(listing, Family::Ip, &table("pier-proxy")).as_deref(),
            Some("table ip pier-proxy {\n\tchain service-x/y {\n\t}\n\tmap endpoints-tcp-0 {\n\t\ttypeof numgen random mod 1 : ip daddr . tcp dport\n\t}\n}\n")
        );
        assert_eq!(table_block(listing, Family::Ip, &table("pier")), None);
    }

    #[tokio::test]
    async fn the_recorder_records_and_fails_on_demand() {
        let nft = RecordingNft::new();
        let seen = nft.clone();
        nft.apply("table ip pier {}\n").await.expect("apply");
        nft.fail_next_apply("/dev/stdin:2:3-4: Error: syntax error, unexpected junk\n  junk\n");
        let err = nft.apply("junk").await.expect_err("queued failure");
        assert_eq!(err.to_string(), "nft -f - failed: line 2:3-4: syntax error, unexpected junk (in `junk`)");
        nft.apply("again").await.expect("failures are used once");

        assert!(matches!(
            nft.list_table(Family::Ip, &table("pier")).await,
            Err(NftError::NoSuchTable { family: Family::Ip, .. })
        ));
        nft.set_table(Family::Ip, &table("pier"), "table ip pier {\n}\n");
        assert_eq!(nft.list_table(Family::Ip, &table("pier")).await.expect("listed"), "table ip pier {\n}\n");
        assert!(nft.delete_table(Family::Ip, &table("pier")).await.expect("delete"));
        assert!(!nft.delete_table(Family::Ip, &table("pier")).await.expect("delete again"));

        assert_eq!(seen.applied(), ["table ip pier {}\n", "junk", "again"]);
        assert_eq!(seen.calls().len(), 7);
        assert_eq!(seen.calls()[6], NftCall::DeleteTable(Family::Ip, table("pier")));
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        let nft = NftCli::new().with_program("/nonexistent/nft");
        let err = nft.apply_blocking("").expect_err("no such program");
        assert!(matches!(err, NftError::Spawn { .. }), "{err}");
        assert_eq!(err.to_string(), "start /nonexistent/nft");
    }
}
