//! What goes wrong when nft runs, and nft's own diagnostics, parsed.

use std::fmt;
use std::io;
use std::path::PathBuf;

use pier_sandbox::NetnsName;

use crate::names::{Family, TableName};

/// Why an nft operation failed.
///
/// [`NftError::Rejected`] means nft ran and refused the input: retrying the same
/// script fails the same way (a renderer bug, or a kernel without a feature), so
/// report it. The others are environmental (nft missing, namespace gone, thread
/// lost) and may succeed later.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// The nft program could not be started (`nftables` not installed, or not root).
    #[error("start {}", program.display())]
    Spawn {
        /// The program that was run.
        program: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Feeding the script to nft or reading its output failed.
    #[error("talk to {}", program.display())]
    Io {
        /// The program that was run.
        program: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The named network namespace could not be entered.
    #[error("enter network namespace {netns}")]
    Netns {
        /// The namespace.
        netns: NetnsName,
        /// The cause.
        #[source]
        source: pier_sandbox::OpError,
    },
    /// nft ran and refused the input; the [`Rejection`] has its stderr.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// `list table` of a table that does not exist.
    #[error("no nftables table {family} {table}")]
    NoSuchTable {
        /// The family asked for.
        family: Family,
        /// The table asked for.
        table: TableName,
    },
    /// The blocking thread that ran nft panicked or was cancelled.
    #[error("the thread running nft did not finish")]
    Join,
    /// A netlink batch ([`crate::NftNetlink`]) failed: the kernel refused an
    /// operation (the whole batch is then undone), or the socket failed.
    #[error("nf_tables netlink: {op}")]
    Netlink {
        /// What failed: the refused operation, or the socket call.
        op: String,
        /// The kernel's error.
        #[source]
        source: io::Error,
    },
}

/// nft exited with an error: what it was asked and everything it said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The command line after `nft`, e.g. `-f -` or `list table ip pier`.
    pub command: String,
    /// The exit code (`None` if nft was killed by a signal).
    pub code: Option<i32>,
    /// nft's stderr, unchanged.
    pub stderr: String,
    /// The `Error:` lines of `stderr`, parsed.
    pub diagnostics: Vec<Diagnostic>,
}

impl std::error::Error for Rejection {}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "nft {} failed", self.command)?;
        match self.diagnostics.as_slice() {
            [] => match self.stderr.trim() {
                "" => write!(f, " with exit code {:?}", self.code),
                text => write!(f, ": {}", text.lines().next().unwrap_or(text)),
            },
            diagnostics => {
                for (i, d) in diagnostics.iter().enumerate() {
                    f.write_str(if i == 0 { ": " } else { "; " })?;
                    write!(f, "{d}")?;
                }
                Ok(())
            }
        }
    }
}

impl Rejection {
    /// Parses nft's stderr into a rejection.
    pub fn new(command: impl Into<String>, code: Option<i32>, stderr: impl Into<String>) -> Self {
        let stderr = stderr.into();
        let diagnostics = Diagnostic::parse_all(&stderr);
        Rejection { command: command.into(), code, stderr, diagnostics }
    }

    /// Whether nft said the object does not exist (`ENOENT` from the kernel).
    pub fn is_not_found(&self) -> bool {
        self.diagnostics.iter().any(|d| d.message.ends_with("No such file or directory"))
    }
}

/// One `Error:` of nft's output, as nft(8) prints it:
///
/// ```text
/// /dev/stdin:3:9-14: Error: syntax error, unexpected accept
///     ip daddr 1.2.3 accept
///                    ^^^^^^
/// ```
///
/// Input from a file (`-f -` reads `/dev/stdin`) has a location; a command given as
/// arguments has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The input line, counted from 1.
    pub line: Option<u32>,
    /// The first and last column of the marked text, counted from 1.
    pub columns: Option<(u32, u32)>,
    /// The text after `Error: `.
    pub message: String,
    /// The lines nft printed under it: the offending input line and its marker.
    pub context: Vec<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.columns) {
            (Some(line), Some((from, to))) => write!(f, "line {line}:{from}-{to}: ")?,
            (Some(line), None) => write!(f, "line {line}: ")?,
            _ => {}
        }
        f.write_str(&self.message)?;
        if let Some(input) = self.context.first() {
            write!(f, " (in `{}`)", input.trim())?;
        }
        Ok(())
    }
}

impl Diagnostic {
    /// Every `Error:` in `stderr`, each with the lines that follow it.
    pub fn parse_all(stderr: &str) -> Vec<Diagnostic> {
        let mut out: Vec<Diagnostic> = Vec::new();
        for text in stderr.lines() {
            match text.find("Error: ") {
                Some(at) => {
                    let (line, columns) = parse_location(&text[..at]);
                    out.push(Diagnostic {
                        line,
                        columns,
                        message: text[at + "Error: ".len()..].trim_end().to_string(),
                        context: Vec::new(),
                    });
                }
                None => {
                    if let Some(last) = out.last_mut() {
                        last.context.push(text.to_string());
                    }
                }
            }
        }
        out
    }
}

/// `/dev/stdin:3:9-14: ` -> line 3, columns 9 to 14. nft writes
/// `path:line:first-last` for a span on one line and `path:line:col-line:col` for one
/// over several lines, which keeps only its first line here.
fn parse_location(prefix: &str) -> (Option<u32>, Option<(u32, u32)>) {
    let prefix = prefix.trim_end().trim_end_matches(':');
    let parts: Vec<&str> = prefix.split(':').collect();
    let Some(i) = (1..parts.len()).find(|&i| parts[i].parse::<u32>().is_ok()) else { return (None, None) };
    let line = parts[i].parse().ok();
    let columns = match &parts[i + 1..] {
        [cols] => cols.split_once('-').and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?))),
        _ => None,
    };
    (line, columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What nft 1.0.6 prints for a ruleset with a bad address on its third line.
    const SYNTAX: &str = "/dev/stdin:3:14-19: Error: syntax error, unexpected accept\n\
                          \x20   ip daddr 1.2.3 accept\n\
                          \x20                  ^^^^^^\n";

    #[test]
    fn file_diagnostics_keep_line_columns_and_context() {
        let r = Rejection::new("-f -", Some(1), SYNTAX);
        assert_eq!(
            r.diagnostics,
            [Diagnostic {
                line: Some(3),
                columns: Some((14, 19)),
                message: "syntax error, unexpected accept".into(),
                context: vec!["    ip daddr 1.2.3 accept".into(), "                   ^^^^^^".into()],
            }]
        );
        assert_eq!(
            r.to_string(),
            "nft -f - failed: line 3:14-19: syntax error, unexpected accept (in `ip daddr 1.2.3 accept`)"
        );
        assert!(!r.is_not_found());
    }

    #[test]
    fn command_diagnostics_have_no_location_and_enoent_is_recognised() {
        let stderr = "Error: No such file or directory\nlist table ip nope\n              ^^^^\n";
        let r = Rejection::new("list table ip nope", Some(1), stderr);
        assert_eq!(r.diagnostics.len(), 1);
        assert_eq!(r.diagnostics[0].line, None);
        assert!(r.is_not_found());
        let stderr = "Error: Could not process rule: No such file or directory\ndelete table ip nope\n";
        assert!(Rejection::new("delete table ip nope", Some(1), stderr).is_not_found());
    }

    #[test]
    fn several_errors_are_all_reported() {
        let stderr = "/dev/stdin:1:5-9: Error: first\nx\n/dev/stdin:4:1-5:3: Error: second\n";
        let r = Rejection::new("-f -", Some(1), stderr);
        assert_eq!(r.to_string(), "nft -f - failed: line 1:5-9: first (in `x`); line 4: second");
    }

    #[test]
    fn unparsed_output_is_shown_as_is() {
        let r = Rejection::new("-f -", Some(1), "internal:0:0-0: something odd\n");
        assert_eq!(r.to_string(), "nft -f - failed: internal:0:0-0: something odd");
        assert_eq!(
            Rejection::new("-f -", Some(137), "").to_string(),
            "nft -f - failed with exit code Some(137)"
        );
    }
}
