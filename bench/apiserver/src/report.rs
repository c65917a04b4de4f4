//! The results: one serializable report (`--json`) and the table printed from it, with
//! the goals and Pier/etcd ratios.

use std::fmt::Write as _;

use serde::Serialize;

use crate::etcd::EtcdResults;
use crate::pier::{KubectlFloor, Startup};
use crate::process::Memory;
use crate::stats::{ListLatency, Summary, Throughput, WatchLatency};
use crate::workload::Settings;

/// A watch table row: label, the latency it shows, Pier/etcd ratios at p50 and p99.
type WatchRow = (&'static str, fn(&WatchLatency) -> &Option<Summary>, Option<f64>, Option<f64>);

/// The goals ("The cluster's foundation", performance section).
pub const GOAL_STARTUP_MS: f64 = 1000.0;
pub const GOAL_IDLE_RSS_MB: f64 = 50.0;
pub const GOAL_CREATES_PER_S: f64 = 5000.0;
pub const GOAL_WATCH_P99_MS: f64 = 10.0;

/// MiB in MB (10^6 bytes).
const MB_PER_MIB: f64 = 1.048_576;

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_gib: f64,
    pub kernel: String,
    pub date_utc: String,
    pub load_at_start: String,
    pub load_at_end: String,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn loadavg() -> String {
    read("/proc/loadavg").split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

impl Machine {
    pub fn read() -> Machine {
        let cpuinfo = read("/proc/cpuinfo");
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown".to_string(), |(_, m)| m.trim().to_string());
        let mem_kib: f64 = read("/proc/meminfo")
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0.0);
        Machine {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model,
            memory_gib: (mem_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            date_utc: crate::process::version_of("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
            load_at_start: loadavg(),
            load_at_end: String::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Versions {
    pub pier: String,
    pub kubectl: String,
    pub etcd: String,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct PierResults {
    pub startup: Option<Startup>,
    pub kubectl_running: Option<KubectlFloor>,
    pub memory_idle: Option<Memory>,
    pub memory_after_load: Option<Memory>,
    pub creates_sequential: Option<Throughput>,
    pub creates_concurrent: Option<Throughput>,
    pub list_full: Option<ListLatency>,
    pub list_page: Option<ListLatency>,
    pub watch_lockstep: Option<WatchLatency>,
    pub watch_back_to_back: Option<WatchLatency>,
}

/// Pier's number divided by etcd's.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Ratios {
    pub creates_sequential: Option<f64>,
    pub creates_concurrent: Option<f64>,
    pub list_full_p50: Option<f64>,
    pub list_page_p50: Option<f64>,
    pub watch_lockstep: WatchRatios,
    pub watch_back_to_back: WatchRatios,
}

/// Pier's watch latencies divided by etcd's.
#[derive(Debug, Clone, Serialize, Default)]
pub struct WatchRatios {
    pub from_ack_p50: Option<f64>,
    pub from_ack_p99: Option<f64>,
    pub from_send_p50: Option<f64>,
    pub from_send_p99: Option<f64>,
}

/// One goal of the issue and how this run did against it.
#[derive(Debug, Clone, Serialize)]
pub struct Goal {
    pub name: &'static str,
    pub goal: String,
    pub measured: Option<f64>,
    pub unit: &'static str,
    pub met: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub smoke: bool,
    pub machine: Machine,
    pub settings: Settings,
    pub versions: Versions,
    pub pier: PierResults,
    pub etcd: Option<EtcdResults>,
    pub ratios: Ratios,
    pub goals: Vec<Goal>,
    pub errors: Vec<String>,
}

/// `a / b`; none unless both are positive (a latency measured from the acknowledgement
/// can be negative, and a ratio of such values means nothing).
fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if a > 0.0 && b > 0.0 => Some(a / b),
        _ => None,
    }
}

impl Report {
    pub fn new(machine: Machine, settings: Settings, smoke: bool) -> Report {
        Report {
            smoke,
            machine,
            settings,
            versions: Versions::default(),
            pier: PierResults::default(),
            etcd: None,
            ratios: Ratios::default(),
            goals: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// Computes ratios and goals once every phase ran.
    pub fn finish(&mut self, errors: Vec<String>) {
        self.errors = errors;
        self.machine.load_at_end = loadavg();
        let p = &self.pier;
        let e = self.etcd.clone().unwrap_or_default();
        let rate = |t: &Option<Throughput>| t.as_ref().map(|t| t.per_second);
        let list_p50 =
            |l: &Option<ListLatency>| l.as_ref().and_then(|l| l.latency_ms.as_ref()).map(|s| s.p50);
        let watch = |w: &Option<WatchLatency>, f: fn(&WatchLatency) -> &Option<Summary>, p99: bool| {
            w.as_ref().and_then(|w| f(w).as_ref()).map(|s| if p99 { s.p99 } else { s.p50 })
        };
        let ack: fn(&WatchLatency) -> &Option<Summary> = |w| &w.from_ack_ms;
        let send: fn(&WatchLatency) -> &Option<Summary> = |w| &w.from_send_ms;
        self.ratios = Ratios {
            creates_sequential: ratio(rate(&p.creates_sequential), rate(&e.creates_sequential)),
            creates_concurrent: ratio(rate(&p.creates_concurrent), rate(&e.creates_concurrent)),
            list_full_p50: ratio(list_p50(&p.list_full), list_p50(&e.list_full)),
            list_page_p50: ratio(list_p50(&p.list_page), list_p50(&e.list_page)),
            watch_lockstep: WatchRatios {
                from_ack_p50: ratio(
                    watch(&p.watch_lockstep, ack, false),
                    watch(&e.watch_lockstep, ack, false),
                ),
                from_ack_p99: ratio(watch(&p.watch_lockstep, ack, true), watch(&e.watch_lockstep, ack, true)),
                from_send_p50: ratio(
                    watch(&p.watch_lockstep, send, false),
                    watch(&e.watch_lockstep, send, false),
                ),
                from_send_p99: ratio(
                    watch(&p.watch_lockstep, send, true),
                    watch(&e.watch_lockstep, send, true),
                ),
            },
            watch_back_to_back: WatchRatios {
                from_ack_p50: ratio(
                    watch(&p.watch_back_to_back, ack, false),
                    watch(&e.watch_back_to_back, ack, false),
                ),
                from_ack_p99: ratio(
                    watch(&p.watch_back_to_back, ack, true),
                    watch(&e.watch_back_to_back, ack, true),
                ),
                from_send_p50: ratio(
                    watch(&p.watch_back_to_back, send, false),
                    watch(&e.watch_back_to_back, send, false),
                ),
                from_send_p99: ratio(
                    watch(&p.watch_back_to_back, send, true),
                    watch(&e.watch_back_to_back, send, true),
                ),
            },
        };
        let startup = p.startup.as_ref().and_then(|s| s.to_kubectl_get_ns_ms.as_ref()).map(|s| s.p50);
        let rss = p.memory_idle.map(|m| m.rss_mib * MB_PER_MIB);
        let creates = rate(&p.creates_concurrent);
        let watch_lockstep_p99 = watch(&p.watch_lockstep, ack, true);
        let watch_back_to_back_p99 = watch(&p.watch_back_to_back, ack, true);
        let judge = |v: Option<f64>, ok: fn(f64) -> bool| if self.smoke { None } else { v.map(ok) };
        self.goals = vec![
            Goal {
                name: "startup: spawn to first kubectl get ns (p50)",
                goal: format!("< {GOAL_STARTUP_MS} ms"),
                measured: startup,
                unit: "ms",
                met: judge(startup, |v| v < GOAL_STARTUP_MS),
            },
            Goal {
                name: "idle resident memory",
                goal: format!("< {GOAL_IDLE_RSS_MB} MB"),
                measured: rss,
                unit: "MB",
                met: judge(rss, |v| v < GOAL_IDLE_RSS_MB),
            },
            Goal {
                name: "creates/s, concurrent clients",
                goal: format!(">= {GOAL_CREATES_PER_S}/s"),
                measured: creates,
                unit: "/s",
                met: judge(creates, |v| v >= GOAL_CREATES_PER_S),
            },
            Goal {
                name: "watch p99 ack -> event, lockstep writes",
                goal: format!("< {GOAL_WATCH_P99_MS} ms"),
                measured: watch_lockstep_p99,
                unit: "ms",
                met: judge(watch_lockstep_p99, |v| v < GOAL_WATCH_P99_MS),
            },
            Goal {
                name: "watch p99 ack -> event, back-to-back writes",
                goal: format!("< {GOAL_WATCH_P99_MS} ms"),
                measured: watch_back_to_back_p99,
                unit: "ms",
                met: judge(watch_back_to_back_p99, |v| v < GOAL_WATCH_P99_MS),
            },
        ];
    }

    /// The human-readable report.
    pub fn table(&self) -> String {
        let mut o = String::new();
        let s = &self.settings;
        let m = &self.machine;
        let _ = writeln!(
            o,
            "Pier API server benchmark, {}{}",
            m.date_utc,
            if self.smoke { "  (SMOKE RUN: sizes are tiny, numbers mean nothing)" } else { "" }
        );
        let _ = writeln!(
            o,
            "machine: {} CPUs ({}), {} GiB, kernel {}; load avg at start {}, at end {}",
            m.cpus, m.cpu_model, m.memory_gib, m.kernel, m.load_at_start, m.load_at_end
        );
        let _ = writeln!(
            o,
            "versions: {} | kubectl {} | {}",
            self.versions.pier, self.versions.kubectl, self.versions.etcd
        );
        let p = &self.pier;
        let e = self.etcd.clone().unwrap_or_default();

        if let Some(st) = &p.startup {
            let _ = writeln!(
                o,
                "\nStartup: cold `pier up`, fresh data dir each run ({} runs per probe, {} failed)     p50      p99      min      max",
                st.runs_per_probe, st.failures
            );
            row4(&mut o, "spawn -> D/kubeconfig written", &st.to_kubeconfig_ms, "ms");
            row4(&mut o, "spawn -> \"Pier is up\" printed", &st.to_up_line_ms, "ms");
            row4(&mut o, "spawn -> first kube-client call OK (list ns)", &st.to_first_api_call_ms, "ms");
            row4(&mut o, "spawn -> first `kubectl get ns` OK", &st.to_kubectl_get_ns_ms, "ms");
        }
        if let Some(k) = &p.kubectl_running {
            let _ = writeln!(
                o,
                "  `kubectl get ns` on a running cluster: cold discovery cache {}, warm cache p50 {}",
                opt(k.cold_cache_ms, "ms"),
                opt(k.warm_cache_ms.as_ref().map(|s| s.p50), "ms")
            );
        }
        if let Some(t) = e.startup_ms {
            let _ = writeln!(o, "  etcd (anchor store): spawn -> first KV read OK {}", opt(Some(t), "ms"));
        }
        let _ = writeln!(o, "  anchor: k3s takes tens of seconds to serve `kubectl get ns` (the issue's stated anchor; not measured here)");

        let _ = writeln!(o, "\nMemory (VmRSS of the server process, MiB)          Pier        etcd");
        let mem = |mm: &Option<Memory>, peak: bool| mm.map(|m| if peak { m.peak_mib } else { m.rss_mib });
        row2(&mut o, "idle, after startup", mem(&p.memory_idle, false), mem(&e.memory_idle, false), "MiB");
        row2(
            &mut o,
            "after the load phases",
            mem(&p.memory_after_load, false),
            mem(&e.memory_after_load, false),
            "MiB",
        );
        row2(
            &mut o,
            "peak (VmHWM) after the load phases",
            mem(&p.memory_after_load, true),
            mem(&e.memory_after_load, true),
            "MiB",
        );

        let _ = writeln!(
            o,
            "\nCreates (Pier: ConfigMap POST over HTTPS; etcd: create txn)    Pier/s     etcd/s   Pier/etcd   write p50/p99 Pier | etcd"
        );
        for (label, pt, et, r) in [
            (
                format!("sequential, 1 client, {} objects", s.sequential_creates),
                &p.creates_sequential,
                &e.creates_sequential,
                self.ratios.creates_sequential,
            ),
            (
                format!("concurrent, {} clients, {} objects", s.clients, s.concurrent_creates),
                &p.creates_concurrent,
                &e.creates_concurrent,
                self.ratios.creates_concurrent,
            ),
        ] {
            let lat = |t: &Option<Throughput>| {
                t.as_ref()
                    .and_then(|t| t.latency_ms.as_ref())
                    .map_or_else(|| "-".into(), |s| format!("{:.2}/{:.2} ms", s.p50, s.p99))
            };
            let _ = writeln!(
                o,
                "  {label:<58} {:>8} {:>10} {:>10}   {} | {}",
                opt0(pt.as_ref().map(|t| t.per_second)),
                opt0(et.as_ref().map(|t| t.per_second)),
                ratio_str(r),
                lat(pt),
                lat(et)
            );
            let cpu = |t: &Option<Throughput>| {
                let t = t.as_ref();
                format!(
                    "server {} + clients {}",
                    opt3(t.and_then(|t| t.server_cpu_ms_per_write)),
                    opt3(t.and_then(|t| t.client_cpu_ms_per_write))
                )
            };
            let _ = writeln!(o, "    CPU per write: Pier {} | etcd {}", cpu(pt), cpu(et));
            for (who, t) in [("pier", pt), ("etcd", et)] {
                if let Some(t) = t.as_ref().filter(|t| t.failed > 0 || t.completed < t.requested) {
                    let _ = writeln!(
                        o,
                        "    note: {who} completed {} of {} ({} failed)",
                        t.completed, t.requested, t.failed
                    );
                }
            }
        }

        let objects = p.list_full.as_ref().map_or(s.list_objects, |l| l.objects);
        let _ = writeln!(
            o,
            "\nList, {objects} ConfigMaps in one namespace   Pier p50/p99 (bytes)           etcd p50/p99 (bytes)        Pier/etcd p50"
        );
        for (label, pl, el, r) in [
            ("whole list".to_string(), &p.list_full, &e.list_full, self.ratios.list_full_p50),
            (
                format!("first page, limit={}", s.page_limit),
                &p.list_page,
                &e.list_page,
                self.ratios.list_page_p50,
            ),
        ] {
            let cell = |l: &Option<ListLatency>| {
                l.as_ref()
                    .and_then(|l| l.latency_ms.as_ref().map(|x| (x, l.response_bytes, l.returned)))
                    .map_or_else(
                        || "-".to_string(),
                        |(x, b, n)| format!("{:.2}/{:.2} ms ({} items, {b} B)", x.p50, x.p99, n),
                    )
            };
            let _ = writeln!(o, "  {label:<28} {:<34} {:<34} {}", cell(pl), cell(el), ratio_str(r));
        }

        let w = |wl: &Option<WatchLatency>, f: fn(&WatchLatency) -> &Option<Summary>| {
            wl.as_ref()
                .and_then(|w| f(w).as_ref())
                .map_or_else(|| "-".to_string(), |x| format!("{:.3}/{:.3} ms", x.p50, x.p99))
        };
        for (title, pw, ew, r) in [
            (
                "lockstep: each write waits until all watchers saw the previous one",
                &p.watch_lockstep,
                &e.watch_lockstep,
                &self.ratios.watch_lockstep,
            ),
            (
                "back-to-back: each write starts when the previous one is acknowledged",
                &p.watch_back_to_back,
                &e.watch_back_to_back,
                &self.ratios.watch_back_to_back,
            ),
        ] {
            let pairs = pw.as_ref().map_or(0, |w| w.pairs);
            let _ = writeln!(
                o,
                "\nWatch delivery, {} watchers x {} sequential writes ({pairs} pairs), {title}",
                s.watchers, s.watch_writes
            );
            let _ =
                writeln!(o, "  {:<46} {:<21} {:<21} Pier/etcd p50 / p99", "", "Pier p50/p99", "etcd p50/p99");
            let rows: [WatchRow; 3] = [
                ("write acknowledged -> event received", |w| &w.from_ack_ms, r.from_ack_p50, r.from_ack_p99),
                ("write sent -> event received", |w| &w.from_send_ms, r.from_send_p50, r.from_send_p99),
                ("the write itself (sent -> acknowledged)", |w| &w.write_ms, None, None),
            ];
            for (label, f, r50, r99) in rows {
                let _ = writeln!(
                    o,
                    "  {label:<46} {:<21} {:<21} {} / {}",
                    w(pw, f),
                    w(ew, f),
                    ratio_str(r50),
                    ratio_str(r99)
                );
            }
            for (who, wl) in [("pier", pw), ("etcd", ew)] {
                if let Some(wl) = wl.as_ref().filter(|w| w.missed > 0) {
                    let _ = writeln!(
                        o,
                        "    note: {who} missed {} (watcher, event) pairs within the timeout",
                        wl.missed
                    );
                }
            }
        }

        let _ = writeln!(o, "\nGoals (issue \"The cluster's foundation\")");
        for g in &self.goals {
            let verdict = match g.met {
                None if self.smoke => "not judged (smoke run)".to_string(),
                None => "not measured".to_string(),
                Some(true) => "met".to_string(),
                Some(false) => "MISSED".to_string(),
            };
            let _ = writeln!(
                o,
                "  {:<48} goal {:<12} measured {:<14} {verdict}",
                g.name,
                g.goal,
                opt(g.measured, g.unit)
            );
        }
        if !self.errors.is_empty() {
            let _ = writeln!(o, "\nErrors");
            for err in &self.errors {
                let _ = writeln!(o, "  {err}");
            }
        }
        o
    }
}

fn opt(v: Option<f64>, unit: &str) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.2} {unit}"))
}

fn opt3(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.3} ms"))
}

fn opt0(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.0}"))
}

fn ratio_str(r: Option<f64>) -> String {
    r.map_or_else(|| "-".to_string(), |r| format!("{r:.2}x"))
}

fn row4(o: &mut String, label: &str, s: &Option<Summary>, unit: &str) {
    match s {
        Some(s) => {
            let _ = writeln!(
                o,
                "  {label:<78} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {unit}",
                s.p50, s.p99, s.min, s.max
            );
        }
        None => {
            let _ = writeln!(o, "  {label:<78} {:>8}", "-");
        }
    }
}

fn row2(o: &mut String, label: &str, a: Option<f64>, b: Option<f64>, unit: &str) {
    let cell = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
    let _ = writeln!(o, "  {label:<46} {:>8} {:>10} {unit}", cell(a), cell(b));
}
