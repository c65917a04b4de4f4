//! Exec/attach query parameters, parsed as the kubelet does.

/// What an exec or attach request asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecRequest {
    /// Command and arguments (`command`, repeated; empty for attach).
    pub command: Vec<String>,
    /// Container name (`container`), if given.
    pub container: Option<String>,
    /// Client sends stdin.
    pub stdin: bool,
    /// Client wants stdout.
    pub stdout: bool,
    /// Client wants stderr (always false with a TTY: the terminal merges it into stdout).
    pub stderr: bool,
    /// Allocate a terminal; the client may send resize events.
    pub tty: bool,
}

impl ExecRequest {
    /// Parses the query string of an `exec` (or, with `is_attach`, `attach`) request.
    /// The error is a message for a 400 response.
    pub fn from_query(query: &str, is_attach: bool) -> Result<Self, String> {
        let mut req = ExecRequest::default();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "command" => req.command.push(value.into_owned()),
                "container" if !value.is_empty() => req.container = Some(value.into_owned()),
                "stdin" => req.stdin = parse_bool(&key, &value)?,
                "stdout" => req.stdout = parse_bool(&key, &value)?,
                "stderr" => req.stderr = parse_bool(&key, &value)?,
                "tty" => req.tty = parse_bool(&key, &value)?,
                _ => {}
            }
        }
        if is_attach {
            req.command.clear();
        } else if req.command.is_empty() {
            return Err("you must specify at least one command for the container".to_string());
        }
        // As in the kubelet: a terminal has no separate stderr.
        if req.tty && req.stderr {
            req.stderr = false;
        }
        if !req.stdin && !req.stdout && !req.stderr {
            return Err("you must specify at least 1 of stdin, stdout, stderr".to_string());
        }
        Ok(req)
    }
}

/// Go's `strconv.ParseBool` spellings: the API server sends `true`, the kubelet's own clients `1`.
fn parse_bool(key: &str, value: &str) -> Result<bool, String> {
    go_bool(value).ok_or_else(|| {
        format!("invalid value for {key}: strconv.ParseBool: parsing {value:?}: invalid syntax")
    })
}

/// Go's `strconv.ParseBool` (an empty value is false, as upstream reads query flags);
/// `None` for anything else.
pub fn go_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "" | "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubectl_query() {
        let q = "command=sh&command=-c&command=echo+a%26b&container=main&stdin=true&stdout=true&stderr=true&tty=false";
        let r = ExecRequest::from_query(q, false).unwrap();
        assert_eq!(r.command, vec!["sh", "-c", "echo a&b"]);
        assert_eq!(r.container.as_deref(), Some("main"));
        assert!(r.stdin && r.stdout && r.stderr && !r.tty);
    }

    #[test]
    fn kubelet_style_ones_and_tty_drops_stderr() {
        let r = ExecRequest::from_query("command=ls&stdout=1&stderr=1&tty=1", false).unwrap();
        assert!(r.stdout && !r.stderr && r.tty);
    }

    #[test]
    fn errors() {
        assert_eq!(
            ExecRequest::from_query("stdout=true", false).unwrap_err(),
            "you must specify at least one command for the container"
        );
        assert_eq!(
            ExecRequest::from_query("command=ls", false).unwrap_err(),
            "you must specify at least 1 of stdin, stdout, stderr"
        );
        assert!(ExecRequest::from_query("command=ls&stdout=yes", false).unwrap_err().contains("stdout"));
        let attach = ExecRequest::from_query("stdout=true&command=x", true).unwrap();
        assert!(attach.command.is_empty());
    }
}
