//! Where Lambda delivers telemetry (ARCHITECTURE.md: listen where Lambda
//! delivers): the real binary, under the emulated platform, binds the
//! Telemetry listener to the address `sandbox.localdomain` has in its
//! sandbox, taken from `/etc/hosts` or, where that file does not name it,
//! from the name server of `/etc/resolv.conf` (a private mount namespace
//! gives the binary its own copies of both), and to every address where the
//! name does not resolve.

mod support;

use std::net::{Ipv4Addr, UdpSocket};
use std::sync::{Arc, Mutex};

use mock_collector::ServerHandle;
use support::common::{
    one_line_arrives, otlp_env, spin_down, start_initialized, start_mock_collector,
};
use support::emulator::{unshare_available, Emulator, EmulatorOptions};
use support::prereq::missing;

fn no_namespaces() -> bool {
    if unshare_available() {
        return false;
    }
    missing(
        "unshare -m with a bind-mounted /etc/hosts",
        "run as root where mount namespaces are allowed",
    );
    true
}

/// The turn of one test of this file: they run one at a time. Each starts
/// the extension in a namespace, and most time a name server's answer
/// against the bridge's 5 ms bound (src/lambda/sandbox_host.rs), which
/// several extensions starting at once on a loaded two-core machine can
/// push past. `None` (after reporting why) without namespaces.
async fn namespace_turn() -> Option<tokio::sync::MutexGuard<'static, ()>> {
    static TURN: std::sync::OnceLock<tokio::sync::Mutex<()>> = std::sync::OnceLock::new();
    if no_namespaces() {
        return None;
    }
    Some(
        TURN.get_or_init(|| tokio::sync::Mutex::new(()))
            .lock()
            .await,
    )
}

/// The port of the subscribed destination URI.
fn listener_port(emu: &Emulator) -> u16 {
    emu.subscription().unwrap()["destination"]["URI"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches("/telemetry")
        .parse()
        .unwrap()
}

/// Starts the binary under the emulated platform, exporting to `server`,
/// with the sandbox's address and name server of `options`.
async fn start(server: &ServerHandle, options: EmulatorOptions) -> Emulator {
    start_naming(server, &server.addr().ip().to_string(), options).await
}

/// [`start`], with the collector named `host` in the endpoint.
async fn start_naming(server: &ServerHandle, host: &str, options: EmulatorOptions) -> Emulator {
    let endpoint = format!("http://{host}:{}", server.addr().port());
    start_initialized(EmulatorOptions {
        freeze_between_invocations: false,
        extra_env: otlp_env(&endpoint, "http/protobuf"),
        ..options
    })
    .await
}

/// The listener is reachable on `ip` and, having bound that address rather
/// than every address, not on 127.0.0.1.
async fn bound_to(emu: &Emulator, ip: Ipv4Addr) {
    let port = listener_port(emu);
    assert!(tokio::net::TcpStream::connect((ip, port)).await.is_ok());
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err(),
        "bound 0.0.0.0 instead of {ip}"
    );
}

/// Lambda delivers to whatever address `sandbox.localdomain` has in the
/// sandbox; here it is 127.0.0.3. The listener must be reachable there and
/// (having bound that address, not 0.0.0.0) not on 127.0.0.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listens_where_sandbox_localdomain_resolves() {
    let Some(_turn) = namespace_turn().await else {
        return;
    };
    let sandbox = Ipv4Addr::new(127, 0, 0, 3);
    let server = start_mock_collector().await;
    let emu = start(
        &server,
        EmulatorOptions {
            sandbox_ip: Some(sandbox),
            ..EmulatorOptions::default()
        },
    )
    .await;
    one_line_arrives(&emu, &server, "delivered to 127.0.0.3").await;
    bound_to(&emu, sandbox).await;
    spin_down(&emu).await;
}

/// How the name server answers.
#[derive(Clone, Copy)]
enum Answer {
    /// An A record with this address.
    Address(Ipv4Addr),
    /// NXDOMAIN: no such name.
    NoSuchName,
    /// Nothing: the question is dropped.
    Silent,
}

/// A name server on `ip`:53 (UDP), answering every question as `answer`
/// says, written by hand from RFC 1035 around the question received. Keeps
/// the questions. `None` (after reporting why) when port 53 cannot be bound.
struct NameServer {
    questions: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl NameServer {
    fn start(ip: Ipv4Addr, answer: Answer) -> Option<NameServer> {
        let socket = match UdpSocket::bind((ip, 53)) {
            Ok(s) => s,
            Err(e) => {
                missing(
                    &format!("a UDP socket on {ip}:53 ({e})"),
                    "run as root, with nothing else on that address",
                );
                return None;
            }
        };
        let questions = Arc::new(Mutex::new(Vec::new()));
        let kept = questions.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = socket.recv_from(&mut buf) {
                let q = buf[..n].to_vec();
                kept.lock().unwrap().push(q.clone());
                if q.len() < 12 {
                    continue;
                }
                let mut reply = q[..2].to_vec();
                let (rcode, answers): (u8, &[u8]) = match answer {
                    Answer::Silent => continue,
                    Answer::NoSuchName => (3, &[]),
                    Answer::Address(_) => (0, &[0, 1]),
                };
                // QR, opcode 0, RD echoed, RA; one question.
                reply.extend_from_slice(&[0x81, 0x80 | rcode, 0, 1, 0, answers.len() as u8 / 2]);
                reply.extend_from_slice(&[0, 0, 0, 0]);
                reply.extend_from_slice(&q[12..]);
                if let Answer::Address(ip) = answer {
                    // A pointer to the question's name, type A, class IN, TTL 60, 4 bytes.
                    reply.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
                    reply.extend_from_slice(&ip.octets());
                }
                let _ = socket.send_to(&reply, from);
            }
        });
        Some(NameServer { questions })
    }

    fn questions(&self) -> Vec<Vec<u8>> {
        self.questions.lock().unwrap().clone()
    }
}

/// The question section of an A query for `sandbox.localdomain`: the name
/// as length-prefixed labels, type 1 (A), class 1 (IN).
const A_QUESTION: &[u8] = b"\x07sandbox\x0blocaldomain\x00\x00\x01\x00\x01";

/// `/etc/hosts` does not name the sandbox; its name server gives 127.0.0.4.
/// The listener is there (not on 127.0.0.1), and the server was asked one
/// question: the A record of `sandbox.localdomain` (no AAAA: the listener
/// takes an IPv4 address).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listens_where_the_name_server_says_sandbox_localdomain_is() {
    let Some(_turn) = namespace_turn().await else {
        return;
    };
    let sandbox = Ipv4Addr::new(127, 0, 0, 4);
    let Some(dns) = NameServer::start(Ipv4Addr::new(127, 0, 0, 153), Answer::Address(sandbox))
    else {
        return;
    };
    let server = start_mock_collector().await;
    let emu = start(
        &server,
        EmulatorOptions {
            sandbox_ip: Some(sandbox),
            name_server: Some(Ipv4Addr::new(127, 0, 0, 153)),
            ..EmulatorOptions::default()
        },
    )
    .await;
    one_line_arrives(&emu, &server, "delivered to 127.0.0.4").await;
    bound_to(&emu, sandbox).await;
    let questions = dns.questions();
    assert_eq!(questions.len(), 1, "{questions:?}");
    assert_eq!(&questions[0][12..], A_QUESTION);
    // A standard query, recursion desired, one question.
    assert_eq!(&questions[0][2..6], &[0x01, 0x00, 0, 1]);
    spin_down(&emu).await;
}

/// Where the name server has no such name (NXDOMAIN) or never answers, the
/// listener takes every address after at most a few milliseconds, and
/// Lambda's deliveries (here to 127.0.0.1) arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_answer_the_listener_takes_every_address() {
    let Some(_turn) = namespace_turn().await else {
        return;
    };
    for (ns, answer) in [
        (Ipv4Addr::new(127, 0, 0, 154), Answer::NoSuchName),
        (Ipv4Addr::new(127, 0, 0, 155), Answer::Silent),
    ] {
        let Some(dns) = NameServer::start(ns, answer) else {
            return;
        };
        let server = start_mock_collector().await;
        let emu = start(
            &server,
            EmulatorOptions {
                name_server: Some(ns),
                ..EmulatorOptions::default()
            },
        )
        .await;
        one_line_arrives(&emu, &server, "delivered to every address").await;
        let port = listener_port(&emu);
        for ip in ["127.0.0.1", "127.0.0.5"] {
            assert!(
                tokio::net::TcpStream::connect((ip, port)).await.is_ok(),
                "{ip}:{port}"
            );
        }
        assert_eq!(dns.questions().len(), 1, "asked once");
        spin_down(&emu).await;
    }
}

/// The collector's host name is looked up in `/etc/hosts` and then DNS,
/// whatever `/etc/nsswitch.conf` lists for `hosts` (src/name_services.rs:
/// the shipped binary links glibc statically, which must not load the
/// host's NSS modules). Here the namespace's `nsswitch.conf` names only a
/// source no glibc has, so a lookup that followed it would find nothing;
/// the collector, named in `/etc/hosts` only, still receives the line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_names_resolve_from_the_hosts_file_whatever_nsswitch_says() {
    let Some(_turn) = namespace_turn().await else {
        return;
    };
    let server = start_mock_collector().await;
    let emu = start_naming(
        &server,
        "collector.test",
        EmulatorOptions {
            sandbox_ip: Some(Ipv4Addr::LOCALHOST),
            hosts_lines: vec![format!("{}\tcollector.test", server.addr().ip())],
            nsswitch_conf: Some("passwd: files\ngroup: files\nhosts: no-such-source\n".into()),
            ..EmulatorOptions::default()
        },
    )
    .await;
    one_line_arrives(&emu, &server, "delivered to collector.test").await;
    spin_down(&emu).await;
}

/// The collector's host name through DNS: `/etc/hosts` does not name it, the
/// name server of `/etc/resolv.conf` does (the resolver glibc has built in,
/// which is all a statically linked glibc has: `.ci/run` runs this file
/// against the shipped binary too). The server answers every question with
/// the collector's address, so the sandbox's name resolves there as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_names_resolve_through_the_name_server() {
    let Some(_turn) = namespace_turn().await else {
        return;
    };
    let server = start_mock_collector().await;
    let ip = match server.addr().ip() {
        std::net::IpAddr::V4(ip) => ip,
        other => panic!("the mock collector listens on {other}"),
    };
    let ns = Ipv4Addr::new(127, 0, 0, 156);
    let Some(dns) = NameServer::start(ns, Answer::Address(ip)) else {
        return;
    };
    let emu = start_naming(
        &server,
        "collector.test",
        EmulatorOptions {
            sandbox_ip: Some(ip),
            name_server: Some(ns),
            ..EmulatorOptions::default()
        },
    )
    .await;
    one_line_arrives(&emu, &server, "delivered to collector.test").await;
    let asked_for_collector = dns
        .questions()
        .iter()
        .any(|q| q.len() > 12 && q[12..].starts_with(b"\x09collector\x04test\x00"));
    assert!(asked_for_collector, "{:?}", dns.questions());
    spin_down(&emu).await;
}
