//! What the book's kubia apps answer (luksa/kubernetes-in-action: Chapter02/kubia, Chapter04/kubia-unhealthy,
//! Chapter09/v1..v4).

use std::sync::atomic::{AtomicU64, Ordering};

/// One of the kubia apps, with its request counter.
#[derive(Debug)]
pub struct Kubia {
    kind: Kind,
    hostname: String,
    requests: AtomicU64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// `You've hit <host>` forever.
    Plain,
    /// `This is <version> running in pod <host>`; `v3` fails from the 5th request on.
    Versioned(String),
    /// `You've hit <host>` for 5 requests, then 500s.
    Unhealthy,
}

/// A response: status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status code.
    pub status: u16,
    /// Body text.
    pub body: String,
}

impl Kubia {
    /// `luksa/kubia`, or with `Some("vN")` the chapter-9 image of that version.
    pub fn new(version: Option<String>) -> Self {
        let kind = version.map_or(Kind::Plain, Kind::Versioned);
        Kubia { kind, hostname: hostname(), requests: AtomicU64::new(0) }
    }

    /// `luksa/kubia-unhealthy`.
    pub fn unhealthy() -> Self {
        Kubia { kind: Kind::Unhealthy, hostname: hostname(), requests: AtomicU64::new(0) }
    }

    /// Uses `name` as the host name instead of the system's (for tests).
    pub fn with_hostname(mut self, name: &str) -> Self {
        self.hostname = name.to_string();
        self
    }

    /// Counts one request and returns its answer.
    pub fn answer(&self) -> Answer {
        let count = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        let host = &self.hostname;
        match &self.kind {
            Kind::Plain => ok(format!("You've hit {host}\n")),
            // v3 counts with `++requestCount >= 5`: the fifth request is the first to fail.
            Kind::Versioned(v) if v == "v3" && count >= 5 => Answer {
                status: 500,
                body: format!("Some internal error has occurred! This is pod {host}\n"),
            },
            Kind::Versioned(v) => ok(format!("This is {v} running in pod {host}\n")),
            // kubia-unhealthy counts with `requestCount > 5`: the sixth request is the first to fail,
            // and its body has no newline.
            Kind::Unhealthy if count > 5 => {
                Answer { status: 500, body: "I'm not well. Please restart me!".to_string() }
            }
            Kind::Unhealthy => ok(format!("You've hit {host}\n")),
        }
    }
}

fn ok(body: String) -> Answer {
    Answer { status: 200, body }
}

/// The host name as Node's `os.hostname()` gives it, falling back to `$HOSTNAME`.
pub(crate) fn hostname() -> String {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statuses(app: &Kubia, n: usize) -> Vec<u16> {
        (0..n).map(|_| app.answer().status).collect()
    }

    #[test]
    fn answers_like_the_book() {
        let plain = Kubia::new(None).with_hostname("kubia-x");
        assert_eq!(plain.answer(), Answer { status: 200, body: "You've hit kubia-x\n".into() });
        let v2 = Kubia::new(Some("v2".into())).with_hostname("p");
        assert_eq!(v2.answer().body, "This is v2 running in pod p\n");
        assert_eq!(statuses(&v2, 10), [200; 10]);

        let v3 = Kubia::new(Some("v3".into())).with_hostname("p");
        assert_eq!(statuses(&v3, 4), [200; 4]);
        assert_eq!(
            v3.answer(),
            Answer { status: 500, body: "Some internal error has occurred! This is pod p\n".into() }
        );

        let sick = Kubia::unhealthy().with_hostname("p");
        assert_eq!(statuses(&sick, 5), [200; 5]);
        assert_eq!(sick.answer(), Answer { status: 500, body: "I'm not well. Please restart me!".into() });
        assert_eq!(sick.answer().status, 500);
    }

    #[test]
    fn system_hostname_is_used() {
        assert!(!Kubia::new(None).hostname.is_empty());
    }
}
