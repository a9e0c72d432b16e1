//! The registry's exposition and the HTTP endpoint's answers.

use std::{
    collections::BTreeSet,
    io::{Read, Write},
    net::IpAddr,
    time::Duration,
};

use super::*;
use crate::vrrp::Reason;

fn labels() -> InstanceLabels {
    InstanceLabels::new("VI_1", "eth0", 51, Family::V4)
}

fn takeover() -> Transition {
    Transition {
        from: State::Backup,
        to: State::Master,
        reason: Reason::MasterDown,
        at_ns: 10_000_250_000,
        last_advert_ts_ns: Some(9_970_000_000),
        deadline_ns: Some(10_000_000_000),
        fired_at_ns: Some(10_000_250_000),
        priority: 100,
        master_addr: Some(IpAddr::from([10, 0, 0, 2])),
        master_priority: Some(150),
    }
}

/// Every family with a sample in it.
fn populated() -> (Metrics, InstanceMetrics) {
    let metrics = Metrics::new();
    let m = metrics.instance(labels());
    m.set_priorities(100, 90);
    m.advert_sent();
    m.advert_received();
    m.advert_received();
    m.discarded(&DiscardReason::BadTtl(64));
    m.vip_claimed(true);
    m.transition(&takeover());
    m.failover_vips_added(10_000_000_000, 10_000_400_000);
    m.failover_first_garp(10_000_000_000, 10_000_500_000);
    metrics.reloaded();
    let mut counters = [0u64; COUNTER_COUNT as usize];
    counters[DpCounter::Accepted as usize] = 7;
    counters[DpCounter::BadChecksum as usize] = 3;
    metrics.set_datapath(DatapathSnapshot {
        kind: DatapathKind::Ebpf,
        counters,
        attachments: vec![("eth0".into(), AttachMode::XdpNative)],
    });
    (metrics, m)
}

fn type_lines(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect()
}

const SERIES: &str = r#"instance="VI_1",interface="eth0",vrid="51",family="ipv4""#;

#[test]
fn every_documented_metric_is_exported_and_nothing_else() {
    let (metrics, _m) = populated();
    let text = metrics.encode().expect("encodes");
    let exported = type_lines(&text);
    let documented: BTreeSet<String> = METRIC_NAMES.iter().map(|s| s.to_string()).collect();
    assert_eq!(exported, documented, "exposition:\n{text}");
    assert!(text.ends_with("# EOF\n"), "OpenMetrics needs the EOF line");
}

#[test]
fn values_land_in_the_right_series() {
    let (metrics, _m) = populated();
    let text = metrics.encode().expect("encodes");
    for want in [
        format!("xvrrpd_instance_state{{{SERIES},state=\"MASTER\"}} 1"),
        format!("xvrrpd_instance_state{{{SERIES},state=\"BACKUP\"}} 0"),
        format!("xvrrpd_instance_state{{{SERIES},state=\"STOP\"}} 0"),
        format!("xvrrpd_instance_state{{{SERIES},state=\"FAULT\"}} 0"),
        format!("xvrrpd_instance_base_priority{{{SERIES}}} 100"),
        // The transition carries the effective priority at the time.
        format!("xvrrpd_instance_effective_priority{{{SERIES}}} 100"),
        format!("xvrrpd_instance_adverts_sent_total{{{SERIES}}} 1"),
        format!("xvrrpd_instance_adverts_received_total{{{SERIES}}} 2"),
        format!("xvrrpd_instance_adverts_discarded_total{{{SERIES},reason=\"bad_ttl\"}} 1"),
        format!("xvrrpd_instance_transitions_total{{{SERIES},from=\"BACKUP\",to=\"MASTER\"}} 1"),
        format!("xvrrpd_master_down_timer_lateness_seconds_count{{{SERIES}}} 1"),
        format!("xvrrpd_master_down_timer_lateness_seconds_sum{{{SERIES}}} 0.00025"),
        format!("xvrrpd_master_down_timer_lateness_seconds_bucket{{le=\"0.00025\",{SERIES}}} 1"),
        format!("xvrrpd_master_down_timer_lateness_seconds_bucket{{le=\"0.0001\",{SERIES}}} 0"),
        format!("xvrrpd_master_down_advert_to_deadline_seconds_sum{{{SERIES}}} 0.03"),
        format!("xvrrpd_failover_vips_added_seconds_sum{{{SERIES}}} 0.0004"),
        format!("xvrrpd_failover_first_garp_seconds_sum{{{SERIES}}} 0.0005"),
        "xvrrpd_reloads_total 1".to_string(),
        "xvrrpd_datapath_packets_total{reason=\"accepted\"} 7".to_string(),
        "xvrrpd_datapath_packets_total{reason=\"bad_checksum\"} 3".to_string(),
        "xvrrpd_datapath_packets_total{reason=\"fragment\"} 0".to_string(),
        "xvrrpd_datapath_mode{mode=\"ebpf\"} 1".to_string(),
        "xvrrpd_datapath_mode{mode=\"raw-socket\"} 0".to_string(),
        "xvrrpd_datapath_attachment{interface=\"eth0\",mode=\"xdp-native\"} 1".to_string(),
        format!(
            "xvrrpd_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        ),
    ] {
        assert!(
            text.lines().any(|l| l == want),
            "missing line {want}\n{text}"
        );
    }
}

#[test]
fn last_transition_is_wall_clock_time() {
    let metrics = Metrics::new();
    let m = metrics.instance(labels());
    let mut t = takeover();
    // One second ago on the monotonic clock.
    t.at_ns = clock::monotonic_ns() - 1_000_000_000;
    m.transition(&t);
    let text = metrics.encode().expect("encodes");
    let prefix = format!("xvrrpd_instance_last_transition_timestamp_seconds{{{SERIES}}} ");
    let value: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .expect("timestamp series present")
        .parse()
        .expect("a number");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64();
    assert!(
        (now - 1.0 - value).abs() < 0.5,
        "stamp {value}, now {now}: should be about a second ago"
    );
}

#[test]
fn a_fresh_instance_is_stopped_and_a_timerless_transition_observes_nothing() {
    let metrics = Metrics::new();
    let m = metrics.instance(labels());
    let text = metrics.encode().expect("encodes");
    assert!(text.contains(&format!(
        "xvrrpd_instance_state{{{SERIES},state=\"STOP\"}} 1"
    )));
    // No datapath snapshot yet: no datapath series at all.
    assert!(!text.contains("xvrrpd_datapath_mode"));
    m.transition(&Transition {
        from: State::Initialize,
        to: State::Backup,
        reason: Reason::Startup,
        at_ns: 5,
        last_advert_ts_ns: None,
        deadline_ns: None,
        fired_at_ns: None,
        priority: 100,
        master_addr: None,
        master_priority: None,
    });
    let text = metrics.encode().expect("encodes");
    // The series exists from the start, but nothing was observed.
    assert!(text.contains(&format!(
        "xvrrpd_master_down_timer_lateness_seconds_count{{{SERIES}}} 0"
    )));
    assert!(text.contains(&format!(
        "xvrrpd_instance_state{{{SERIES},state=\"BACKUP\"}} 1"
    )));
}

#[test]
fn removing_an_instance_removes_all_its_series() {
    let (metrics, _m) = populated();
    let other = metrics.instance(InstanceLabels::new("VI_2", "eth1", 52, Family::V6));
    other.advert_sent();
    metrics.remove_instance(&labels());
    let text = metrics.encode().expect("encodes");
    assert!(!text.contains("instance=\"VI_1\""), "{text}");
    assert!(text.contains(
        r#"xvrrpd_instance_adverts_sent_total{instance="VI_2",interface="eth1",vrid="52",family="ipv6"} 1"#
    ));
}

#[test]
fn every_discard_reason_has_a_listed_label() {
    let all = [
        DiscardReason::NotRunning,
        DiscardReason::WrongVrid,
        DiscardReason::WrongVersion,
        DiscardReason::WrongFamily,
        DiscardReason::BadTtl(1),
        DiscardReason::AuthTypeMismatch { ours: 0, theirs: 1 },
        DiscardReason::AuthPassMismatch,
        DiscardReason::AuthAhUnsupported,
        DiscardReason::IntervalMismatch {
            ours_cs: 100,
            theirs_cs: 200,
        },
        DiscardReason::UnicastMismatch,
        DiscardReason::AddressCountMismatch { ours: 1, theirs: 2 },
        DiscardReason::AddressListMismatch,
        DiscardReason::UnicastSourceNotPeer,
        DiscardReason::LowerPriority,
    ];
    let labels: BTreeSet<&str> = all.iter().map(DiscardReason::label).collect();
    let listed: BTreeSet<&str> = DiscardReason::LABELS.into_iter().collect();
    assert_eq!(labels, listed);
}

/// One request over a plain socket; returns the whole response.
fn fetch(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the metrics server");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("set a read timeout");
    s.write_all(request).expect("send the request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read the response");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_answers_metrics_404_405_and_bounds_requests() {
    let (metrics, _m) = populated();
    let server = serve_with(
        "127.0.0.1:0".parse().expect("an address"),
        metrics,
        ServeOptions {
            timeout: Duration::from_millis(300),
            ..ServeOptions::default()
        },
    )
    .expect("bind on loopback");
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);
    let responses = tokio::task::spawn_blocking(move || {
        let ok = fetch(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        let query = fetch(addr, b"GET /metrics?x=1 HTTP/1.0\r\n\r\n");
        let head = fetch(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n");
        let missing = fetch(addr, b"GET / HTTP/1.1\r\n\r\n");
        let post = fetch(addr, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        let garbage = fetch(addr, b"hello\r\n\r\n");
        let mut huge = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        huge.extend(std::iter::repeat_n(b'a', 20_000));
        let too_big = fetch(addr, &huge);
        // Says nothing: the server must hang up after its timeout.
        let started = std::time::Instant::now();
        let idle = fetch(addr, b"GET /metrics HTTP/1.1\r\n");
        (
            ok,
            query,
            head,
            missing,
            post,
            garbage,
            too_big,
            idle,
            started.elapsed(),
        )
    })
    .await
    .expect("client thread");
    let (ok, query, head, missing, post, garbage, too_big, idle, idle_took) = responses;
    assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
    assert!(ok.contains(&format!("Content-Type: {CONTENT_TYPE}\r\n")));
    let body = ok.split_once("\r\n\r\n").expect("head and body").1;
    let len: usize = ok
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("content length")
        .parse()
        .expect("a number");
    assert_eq!(len, body.len());
    for name in METRIC_NAMES {
        assert!(body.contains(&format!("# TYPE {name} ")), "{name} missing");
    }
    assert!(body.ends_with("# EOF\n"));
    assert!(query.starts_with("HTTP/1.1 200 OK\r\n"), "{query}");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "HEAD has no body: {head}");
    assert!(
        head.contains(&format!("Content-Length: {len}\r\n")),
        "HEAD announces the GET body's length: {head}"
    );
    assert!(missing.starts_with("HTTP/1.1 404 "), "{missing}");
    assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
    assert!(post.contains("Allow: GET, HEAD\r\n"));
    assert!(garbage.starts_with("HTTP/1.1 400 "), "{garbage}");
    assert!(too_big.starts_with("HTTP/1.1 431 "), "{too_big}");
    assert!(idle.is_empty(), "no answer to a half request: {idle}");
    assert!(
        idle_took < Duration::from_secs(3),
        "an idle client is dropped after the timeout, took {idle_took:?}"
    );
    server.shutdown();
}

#[tokio::test]
async fn a_busy_port_is_reported_at_once() {
    let first = serve("127.0.0.1:0".parse().expect("an address"), Metrics::new()).expect("bind");
    let err = serve(first.local_addr(), Metrics::new()).expect_err("port is taken");
    assert!(matches!(err, MetricsError::Bind { .. }), "{err}");
    assert!(err.to_string().contains("--metrics-listen"));
    first.shutdown();
}

#[test]
fn serving_outside_a_runtime_is_an_error_not_a_panic() {
    let err =
        serve("127.0.0.1:0".parse().expect("an address"), Metrics::new()).expect_err("no runtime");
    assert!(matches!(err, MetricsError::NoRuntime));
}
