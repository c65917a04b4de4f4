//! The event queue against an in-process API server: events wait while the owner's
//! urgent work is under way, go out in order once it is done (or after the longest
//! delay), and keep the time they happened.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, ObjectReference};
use kube::api::{Api, ListParams};
use kube::Client;
use pier_controllers::events::{Busy, EventQueue, EventType, Recorder};
use pier_testkit::in_process::{eventually, InProcess};

fn regarding(name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some(name.into()),
        namespace: Some("default".into()),
        ..ObjectReference::default()
    }
}

/// Reasons of the events in `default`, oldest first by their own timestamps.
async fn reasons(client: &Client) -> Vec<String> {
    let api: Api<Event> = Api::namespaced(client.clone(), "default");
    let mut events = api.list(&ListParams::default()).await.expect("list events").items;
    events.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
    events.into_iter().filter_map(|e| e.reason).collect()
}

/// A server, and a queue whose events wait for `busy` (at most `max_delay`).
async fn start(max_delay: Duration) -> (InProcess, Client, Busy, EventQueue) {
    let server = InProcess::start().await.expect("API server starts");
    let client = server.client.clone();
    let busy = Busy::default();
    // The sender task ends with the queue.
    let (queue, _sender) = EventQueue::start(Recorder::new(client.clone(), "test"), busy.clone(), max_delay);
    (server, client, busy, queue)
}

/// Waits until the events in `default` have exactly these reasons, in this order.
async fn wait_for_reasons(client: &Client, expected: &[&str]) {
    eventually(&format!("events {expected:?}"), || async {
        let r = reasons(client).await;
        if r == expected {
            Ok(())
        } else {
            Err(format!("{r:?}"))
        }
    })
    .await;
}

#[tokio::test]
async fn events_wait_for_urgent_work_and_keep_their_time() {
    let (_server, client, busy, queue) = start(Duration::from_secs(30)).await;

    let work = busy.enter();
    let before = k8s_openapi::jiff::Timestamp::now();
    queue.push(regarding("a"), EventType::Normal, "First", "one");
    queue.push(regarding("a"), EventType::Warning, "Second", "two");
    // Held back while the work is under way: give the sender time to (wrongly) send.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(reasons(&client).await, Vec::<String>::new(), "nothing is sent while busy");

    drop(work);
    wait_for_reasons(&client, &["First", "Second"]).await;
    let api: Api<Event> = Api::namespaced(client.clone(), "default");
    let first = api.list(&ListParams::default()).await.expect("list").items;
    let first = first.iter().find(|e| e.reason.as_deref() == Some("First")).expect("first event");
    let at = first.event_time.as_ref().expect("eventTime").0;
    // Stamped when pushed, not when sent 300 ms later.
    let lag = at.duration_since(before);
    assert!(lag.as_secs_f64() < 0.25, "eventTime {at} is {lag:?} after the push");
}

#[tokio::test]
async fn an_event_is_held_back_no_longer_than_the_longest_delay() {
    let (_server, client, busy, queue) = start(Duration::from_millis(200)).await;
    let _forever = busy.enter();
    queue.push(regarding("b"), EventType::Normal, "Late", "sent anyway");
    wait_for_reasons(&client, &["Late"]).await;
}
