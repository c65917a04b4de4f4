//! The metav1.Status a streaming session ends with, in the exact shape kubectl decodes.

use serde_json::{json, Value};

/// How the command (or attached process) ended, as reported by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecOutcome {
    /// The process exited with this code (0 = success).
    Exited(i32),
    /// The command could not be run or followed; the message is reported as an internal error.
    Error(String),
}

/// The Status JSON for `outcome`; `command` is quoted in the non-zero-exit message like the runtime does.
pub fn exec_status(outcome: &ExecOutcome, command: &[String]) -> Value {
    match outcome {
        ExecOutcome::Exited(0) => json!({"metadata": {}, "status": "Success"}),
        ExecOutcome::Exited(code) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!(
                "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
                command.join(" ")
            ),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        ExecOutcome::Error(msg) => {
            let inner = format!("error executing command in container: {msg}");
            json!({
                "metadata": {},
                "status": "Failure",
                "message": format!("Internal error occurred: {inner}"),
                "reason": "InternalError",
                "details": {"causes": [{"message": inner}]},
                "code": 500,
            })
        }
    }
}

/// What goes on the error channel: Status JSON for v4/v5, the bare message for older protocols
/// (nothing on success).
pub fn error_channel_payload(status: &Value, json_status: bool) -> Vec<u8> {
    if json_status {
        return serde_json::to_vec(status).unwrap_or_default();
    }
    if status["status"] == "Success" {
        return Vec::new();
    }
    status["message"].as_str().unwrap_or_default().as_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_and_exit_code_shapes() {
        let ok = serde_json::to_string(&exec_status(&ExecOutcome::Exited(0), &[])).unwrap();
        assert_eq!(ok, r#"{"metadata":{},"status":"Success"}"#);
        let cmd = vec!["sh".to_string(), "-c".to_string(), "exit 3".to_string()];
        let fail = serde_json::to_string(&exec_status(&ExecOutcome::Exited(3), &cmd)).unwrap();
        assert_eq!(
            fail,
            r#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#
        );
        let st = exec_status(&ExecOutcome::Exited(3), &cmd);
        assert!(error_channel_payload(&st, false).starts_with(b"command terminated"));
        assert!(error_channel_payload(&exec_status(&ExecOutcome::Exited(0), &[]), false).is_empty());
    }

    #[test]
    fn internal_error_shape() {
        let st = exec_status(&ExecOutcome::Error("no such file".into()), &[]);
        assert_eq!(st["reason"], "InternalError");
        assert_eq!(st["code"], 500);
        assert_eq!(
            st["message"],
            "Internal error occurred: error executing command in container: no such file"
        );
    }
}
