use std::time::Duration;

use k8s_openapi::api::core::v1::{ExecAction, HTTPGetAction, LifecycleHandler, SleepAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::support::{closed_port, http_server, response, target, Behave, FakeRunner};
use crate::{run_hook, HookKind};

fn http_hook(port: u16, scheme: Option<&str>) -> LifecycleHandler {
    LifecycleHandler {
        http_get: Some(HTTPGetAction {
            port: IntOrString::Int(i32::from(port)),
            path: Some("/stop".into()),
            scheme: scheme.map(str::to_string),
            ..HTTPGetAction::default()
        }),
        ..LifecycleHandler::default()
    }
}

#[tokio::test]
async fn http_hook_ignores_status_and_reports_transport_errors() {
    let runner = FakeRunner::default();
    let mut server = http_server(None, |_| response("500 Internal Server Error", "", "")).await;
    let outcome = run_hook(&http_hook(server.addr.port(), None), &target(&[]), &runner).await;
    assert_eq!(outcome.result, Ok(()));
    let head = server.next_head().await;
    assert!(
        head.starts_with("GET /stop HTTP/1.1\r\n") && head.contains("User-Agent: kube-lifecycle/1.33\r\n"),
        "{head}"
    );

    let port = closed_port().await;
    let outcome = run_hook(&http_hook(port, None), &target(&[]), &runner).await;
    let expected = format!(
        "HTTP lifecycle hook (/stop) for Container \"app\" in Pod \"web_default(uid-1)\" failed - error: \
         Get \"http://127.0.0.1:{port}/stop\": dial tcp 127.0.0.1:{port}: connect: connection refused"
    );
    assert_eq!(outcome.result, Err(expected));
}

#[tokio::test]
async fn https_hook_answered_over_http_falls_back() {
    let runner = FakeRunner::default();
    let mut server = http_server(None, |head| {
        // The TLS ClientHello is not an HTTP request; answer it like a plain HTTP server would.
        if head.starts_with("GET ") {
            response("200 OK", "", "")
        } else {
            response("400 Bad Request", "", "")
        }
    })
    .await;
    let port = server.addr.port();
    let (handler, t) = (http_hook(port, Some("HTTPS")), target(&[]));
    let hook = run_hook(&handler, &t, &runner);
    let outcome = tokio::time::timeout(Duration::from_secs(10), hook).await.expect("hook finishes");
    assert_eq!(outcome.result, Ok(()));
    let expected = format!(
        "request to HTTPS lifecycle hook 127.0.0.1:{port} got HTTP response, retry with HTTP succeeded"
    );
    assert_eq!(outcome.fallback_warning, Some(expected));
    let _ = server.next_head().await;
}

#[tokio::test]
async fn exec_hook_failure_message() {
    let runner = FakeRunner::default();
    runner.set("drain", Behave::Exit(3, "boom"));
    let hook = LifecycleHandler {
        exec: Some(ExecAction { command: Some(vec!["drain".into(), "--now".into()]) }),
        ..LifecycleHandler::default()
    };
    let outcome = run_hook(&hook, &target(&[]), &runner).await;
    let expected =
        "Exec lifecycle hook ([drain --now]) for Container \"app\" in Pod \"web_default(uid-1)\" failed - \
                    error: command 'drain --now' exited with 3: boom, message: \"boom\"";
    assert_eq!(outcome.result, Err(expected.to_string()));
    assert_eq!(HookKind::PreStop.failure_reason(), "FailedPreStopHook");
    assert_eq!(HookKind::PreStop.failure_event_message(), "PreStopHook failed");

    runner.set("drain", Behave::Exit(0, ""));
    assert_eq!(run_hook(&hook, &target(&[]), &runner).await.result, Ok(()));
}

#[tokio::test(start_paused = true)]
async fn sleep_hook_sleeps() {
    let hook = LifecycleHandler { sleep: Some(SleepAction { seconds: 5 }), ..LifecycleHandler::default() };
    let start = tokio::time::Instant::now();
    let outcome = run_hook(&hook, &target(&[]), &FakeRunner::default()).await;
    assert_eq!(outcome.result, Ok(()));
    assert_eq!(start.elapsed(), Duration::from_secs(5));
}
