//! Where Lambda delivers telemetry: the address of `sandbox.localdomain`.
//!
//! Lambda pushes each batch to the host named in the subscription, which
//! inside a sandbox need not be 127.0.0.1, so the Telemetry listener binds
//! what that name resolves to ([`start_lookup`]): the address `/etc/hosts`
//! gives it, else the answer of the first name server of `/etc/resolv.conf`
//! to one DNS question (type A), awaited at most [`RESOLVE_WITHIN`], else
//! `0.0.0.0` (local emulators, where the name does not resolve). The
//! question is sent before the extension registers and the answer read
//! after, so the name server answers while Lambda does.
//!
//! The question is asked here rather than through the C resolver:
//! `getaddrinfo` blocks, so it needed a thread of its own, and
//! that thread, the resolver's configuration files and its second question
//! (AAAA, for an IPv6 address the listener never uses) were the largest
//! single cost of the start-up: 14 % of the CPU before the first `/next`
//! where `/etc/hosts` lacks the name; asking here took that CPU from 2.45
//! to 2.10 ms (docs/PERFORMANCE.md, "The sandbox's address without the C
//! resolver"). Left out on purpose: the
//! search list (the name is asked as is, which is what the C resolver asks
//! first for a name with a dot), name servers after the first (the C
//! resolver asks them only after the first one's timeout of seconds, far
//! beyond the bound) and other `nsswitch.conf` sources.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// Host name used in the subscription's destination URI.
pub const SANDBOX_HOST: &str = "sandbox.localdomain";

/// How long the name server may take to answer for `sandbox.localdomain`
/// when `/etc/hosts` does not name it: the subscription, and so the first
/// `/next`, waits for the answer. A name server answers a local question
/// within a few milliseconds or not soon; falling back to `0.0.0.0` still
/// receives every delivery.
pub const RESOLVE_WITHIN: Duration = Duration::from_millis(5);

/// Finding the address, started before the extension registers and
/// finished after: the question is on its way while the registration is.
#[derive(Debug)]
pub struct Lookup(LookupState);

#[derive(Debug)]
enum LookupState {
    /// `/etc/hosts` names it.
    Known(IpAddr),
    /// Asked; the answer is awaited until `until`.
    Asked {
        socket: UdpSocket,
        question: Vec<u8>,
        until: Instant,
    },
    /// No answer will come (the question could not be sent).
    Unknown,
}

/// Starts finding the address to bind (see the module documentation):
/// `/etc/hosts` first, else one question to the name server.
pub fn start_lookup() -> Lookup {
    if let Some(ip) = std::fs::read_to_string("/etc/hosts")
        .ok()
        .and_then(|hosts| ip_from_hosts(&hosts, SANDBOX_HOST))
    {
        return Lookup(LookupState::Known(ip));
    }
    let resolv_conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    ask(name_server(&resolv_conf), SANDBOX_HOST, RESOLVE_WITHIN)
}

/// Sends `server` the question for the IPv4 address of `name` over UDP; the
/// answer is awaited (at most `within` from now) by [`Lookup::finish`].
pub fn ask(server: SocketAddr, name: &str, within: Duration) -> Lookup {
    let until = Instant::now() + within;
    let asked = || -> Option<LookupState> {
        let local = match server {
            SocketAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            SocketAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
        };
        let socket = UdpSocket::bind(local).ok()?;
        // Connected: the kernel drops datagrams from other sources, and an
        // ICMP "port unreachable" ends the wait at once (ECONNREFUSED).
        socket.connect(server).ok()?;
        let question = question(question_id(), name)?;
        socket.send(&question).ok()?;
        Some(LookupState::Asked {
            socket,
            question,
            until,
        })
    };
    Lookup(asked().unwrap_or(LookupState::Unknown))
}

impl Lookup {
    /// The address to bind: what `/etc/hosts` or the name server gave, else
    /// `0.0.0.0`. Waits for the answer until the bound set when asking; the
    /// name server's refusal or an error reply ends the wait at once, and
    /// datagrams that do not answer this question (another id, another
    /// question) are ignored. Past the bound, an answer that has already
    /// arrived is still taken (read without waiting): at a small function's
    /// CPU share the process can be held by its CPU quota for longer than
    /// the bound while the name server's answer waits in the socket.
    pub fn finish(self) -> IpAddr {
        let unspecified = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let (socket, question, until) = match self.0 {
            LookupState::Known(ip) => return ip,
            LookupState::Unknown => return unspecified,
            LookupState::Asked {
                socket,
                question,
                until,
            } => (socket, question, until),
        };
        let mut buf = [0u8; 512];
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let set = if left.is_zero() {
                socket.set_nonblocking(true)
            } else {
                socket.set_read_timeout(Some(left))
            };
            if set.is_err() {
                return unspecified;
            }
            let Ok(n) = socket.recv(&mut buf) else {
                return unspecified;
            };
            match read_reply(&buf[..n], &question) {
                Reply::NotOurs => continue,
                Reply::Address(ip) => return IpAddr::V4(ip),
                Reply::NoAddress => return unspecified,
            }
        }
    }
}

/// Finds `name` in an `/etc/hosts` text (IPv4 entries only).
pub fn ip_from_hosts(hosts: &str, name: &str) -> Option<IpAddr> {
    hosts.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or("");
        let mut fields = line.split_whitespace();
        let ip: Ipv4Addr = fields.next()?.parse().ok()?;
        fields
            .any(|h| h.eq_ignore_ascii_case(name))
            .then_some(IpAddr::V4(ip))
    })
}

/// The first usable `nameserver` of a `resolv.conf` text, on port 53; the C
/// resolver's default, the local host, when there is none. An IPv6 address
/// with a zone (`fe80::1%eth0`) is skipped.
pub fn name_server(resolv_conf: &str) -> SocketAddr {
    resolv_conf
        .lines()
        .find_map(|line| {
            let mut fields = line.split_whitespace();
            if fields.next()? != "nameserver" {
                return None;
            }
            let ip: IpAddr = fields.next()?.parse().ok()?;
            Some(SocketAddr::new(ip, 53))
        })
        .unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53))
}

/// A random 16-bit question id, from the standard library's per-process
/// random hash keys (no other source of randomness is linked).
fn question_id() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u8(0);
    hasher.finish() as u16
}

/// A DNS query (RFC 1035 §4.1) asking recursively for the A record of
/// `name`; `None` for a name DNS cannot carry (an empty label, a label over
/// 63 bytes, over 253 bytes in all).
pub fn question(id: u16, name: &str) -> Option<Vec<u8>> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return None;
    }
    let mut q = Vec::with_capacity(18 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    // Flags: a standard query, recursion desired; one question, no records.
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return None;
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    // End of the name; type A, class IN.
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    Some(q)
}

/// What a datagram says to a question.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// Not an answer to this question (another id or question, not a
    /// response, too short to tell): keep waiting.
    NotOurs,
    /// The first A record of the answer section.
    Address(Ipv4Addr),
    /// An answer without an A record: an error code (NXDOMAIN, SERVFAIL,
    /// REFUSED...), no such record, or records that cannot be read.
    NoAddress,
}

/// Reads `reply` as the answer to `question` (as built by [`question`]).
/// The question section must come back as asked, ignoring ASCII case (a
/// server may echo the name's case differently).
pub fn read_reply(reply: &[u8], question: &[u8]) -> Reply {
    let asked = &question[12..];
    let ours = reply.len() >= 12 + asked.len()
        && reply[..2] == question[..2]
        && reply[2] & 0x80 != 0
        && reply[4..6] == [0, 1]
        && reply[12..12 + asked.len()].eq_ignore_ascii_case(asked);
    if !ours {
        return Reply::NotOurs;
    }
    if reply[3] & 0x0f != 0 {
        return Reply::NoAddress;
    }
    let answers = u16::from_be_bytes([reply[6], reply[7]]);
    let mut at = 12 + asked.len();
    for _ in 0..answers {
        let Some(record) = read_record(reply, at) else {
            return Reply::NoAddress;
        };
        if let Some(ip) = record.address {
            return Reply::Address(ip);
        }
        at = record.next;
    }
    Reply::NoAddress
}

struct Record {
    /// The address, for a record of type A, class IN.
    address: Option<Ipv4Addr>,
    /// Where the next record starts.
    next: usize,
}

/// Reads the resource record at `at` (RFC 1035 §4.1.3); `None` when it runs
/// past the end or its name is malformed.
fn read_record(msg: &[u8], at: usize) -> Option<Record> {
    let at = skip_name(msg, at)?;
    let fixed = msg.get(at..at + 10)?;
    let kind = u16::from_be_bytes([fixed[0], fixed[1]]);
    let class = u16::from_be_bytes([fixed[2], fixed[3]]);
    let len = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
    let data = msg.get(at + 10..at + 10 + len)?;
    let address = match (kind, class, data) {
        (1, 1, &[a, b, c, d]) => Some(Ipv4Addr::new(a, b, c, d)),
        _ => None,
    };
    Some(Record {
        address,
        next: at + 10 + len,
    })
}

/// Skips an encoded name: labels up to a zero byte, or up to a compression
/// pointer (two bytes, RFC 1035 §4.1.4; where it points does not matter
/// here). `None` when it runs past the end or uses a reserved label type.
fn skip_name(msg: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *msg.get(at)?;
        match len & 0xc0 {
            0x00 if len == 0 => return Some(at + 1),
            0x00 => at += 1 + usize::from(len),
            0xc0 => {
                msg.get(at + 1)?;
                return Some(at + 2);
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sandbox.localdomain` as RFC 1035 encodes a name: length-prefixed
    /// labels and a zero byte.
    const NAME: &[u8] = b"\x07sandbox\x0blocaldomain\x00";

    fn asked(id: [u8; 2]) -> Vec<u8> {
        let mut q = id.to_vec();
        q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        q.extend_from_slice(&question_section());
        q
    }

    /// A reply written out by hand: header (flags, counts), the question
    /// section as given, then `records`.
    fn reply(id: [u8; 2], flags: [u8; 2], answers: u8, question: &[u8], records: &[u8]) -> Vec<u8> {
        let mut r = id.to_vec();
        r.extend_from_slice(&flags);
        r.extend_from_slice(&[0, 1, 0, answers, 0, 0, 0, 0]);
        r.extend_from_slice(question);
        r.extend_from_slice(records);
        r
    }

    fn question_section() -> Vec<u8> {
        let mut q = NAME.to_vec();
        q.extend_from_slice(&[0, 1, 0, 1]);
        q
    }

    /// An A record for the name at offset 12 (a compression pointer), TTL 60.
    const A_RECORD: &[u8] = &[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 169, 254, 100, 1];
    const OK: [u8; 2] = [0x81, 0x80];

    #[test]
    fn the_question_is_one_recursive_a_query() {
        assert_eq!(question(0xbeef, SANDBOX_HOST), Some(asked([0xbe, 0xef])));
        assert_eq!(
            question(0xbeef, "sandbox.localdomain."),
            Some(asked([0xbe, 0xef]))
        );
        assert_eq!(question(1, ""), None);
        assert_eq!(question(1, "a..b"), None);
        assert_eq!(question(1, &format!("{}.com", "x".repeat(64))), None);
        assert_eq!(
            question(1, &"a.".repeat(127)).map(|q| q.len()),
            Some(12 + 255 + 4)
        );
        assert_eq!(question(1, &"ab.".repeat(85)), None, "255 bytes of name");
    }

    #[test]
    fn an_a_record_is_the_answer() {
        let q = asked([0x12, 0x34]);
        let r = reply([0x12, 0x34], OK, 1, &question_section(), A_RECORD);
        assert_eq!(
            read_reply(&r, &q),
            Reply::Address(Ipv4Addr::new(169, 254, 100, 1))
        );
    }

    #[test]
    fn a_cname_before_the_address_is_skipped() {
        let q = asked([0, 7]);
        let mut records = vec![0xc0, 0x0c, 0, 5, 0, 1, 0, 0, 0, 60, 0, 6];
        records.extend_from_slice(b"\x03foo\xc0\x0c");
        records.extend_from_slice(&[0xc0, 0x29, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 7]);
        let r = reply([0, 7], OK, 2, &question_section(), &records);
        assert_eq!(
            read_reply(&r, &q),
            Reply::Address(Ipv4Addr::new(10, 0, 0, 7))
        );
    }

    #[test]
    fn the_case_of_the_echoed_name_does_not_matter() {
        let q = asked([0, 1]);
        let mut echoed = b"\x07SandBox\x0bLOCALdomain\x00".to_vec();
        echoed.extend_from_slice(&[0, 1, 0, 1]);
        let r = reply([0, 1], OK, 1, &echoed, A_RECORD);
        assert!(matches!(read_reply(&r, &q), Reply::Address(_)));
    }

    #[test]
    fn errors_and_answers_without_an_address_give_none() {
        let q = asked([0, 1]);
        let section = question_section();
        // NXDOMAIN (rcode 3), SERVFAIL (2), REFUSED (5).
        for rcode in [3, 2, 5] {
            let r = reply([0, 1], [0x81, 0x80 | rcode], 0, &section, &[]);
            assert_eq!(read_reply(&r, &q), Reply::NoAddress, "rcode {rcode}");
        }
        // No records at all.
        assert_eq!(
            read_reply(&reply([0, 1], OK, 0, &section, &[]), &q),
            Reply::NoAddress
        );
        // Only an AAAA record (type 28, 16 bytes).
        let mut aaaa = vec![0xc0, 0x0c, 0, 28, 0, 1, 0, 0, 0, 60, 0, 16];
        aaaa.extend_from_slice(&[0xfd; 16]);
        assert_eq!(
            read_reply(&reply([0, 1], OK, 1, &section, &aaaa), &q),
            Reply::NoAddress
        );
        // An A record of another class (CH, 3).
        let mut chaos = A_RECORD.to_vec();
        chaos[5] = 3;
        assert_eq!(
            read_reply(&reply([0, 1], OK, 1, &section, &chaos), &q),
            Reply::NoAddress
        );
        // Cut short: the record says 4 bytes of data, 2 came.
        let cut = &A_RECORD[..A_RECORD.len() - 2];
        assert_eq!(
            read_reply(&reply([0, 1], OK, 1, &section, cut), &q),
            Reply::NoAddress
        );
        // More answers announced than sent.
        assert_eq!(
            read_reply(&reply([0, 1], OK, 2, &section, &aaaa), &q),
            Reply::NoAddress
        );
        // A reserved label type (0x40) in the record's name.
        let mut bad = A_RECORD.to_vec();
        bad[0] = 0x40;
        assert_eq!(
            read_reply(&reply([0, 1], OK, 1, &section, &bad), &q),
            Reply::NoAddress
        );
    }

    #[test]
    fn datagrams_that_do_not_answer_this_question_are_not_ours() {
        let q = asked([0, 1]);
        let section = question_section();
        // Another id.
        assert_eq!(
            read_reply(&reply([0, 2], OK, 1, &section, A_RECORD), &q),
            Reply::NotOurs
        );
        // Not a response (QR clear): our own question looped back.
        assert_eq!(read_reply(&q, &q), Reply::NotOurs);
        // Another question: AAAA instead of A, or another name.
        let mut aaaa_q = section.clone();
        aaaa_q[NAME.len() + 1] = 28;
        assert_eq!(
            read_reply(&reply([0, 1], OK, 1, &aaaa_q, A_RECORD), &q),
            Reply::NotOurs
        );
        let mut other = b"\x07sandbox\x0blocaldomaim\x00".to_vec();
        other.extend_from_slice(&[0, 1, 0, 1]);
        assert_eq!(
            read_reply(&reply([0, 1], OK, 1, &other, A_RECORD), &q),
            Reply::NotOurs
        );
        // Two questions, or too short to hold ours.
        let mut two = reply([0, 1], OK, 1, &section, A_RECORD);
        two[5] = 2;
        assert_eq!(read_reply(&two, &q), Reply::NotOurs);
        assert_eq!(read_reply(&[0, 1, 0x81, 0x80, 0], &q), Reply::NotOurs);
    }

    #[test]
    fn the_first_usable_name_server_is_asked() {
        let conf = "# generated\nsearch ec2.internal\noptions timeout:2\n\
                    nameserver fe80::1%eth0\n  nameserver\t169.254.78.1 \nnameserver 10.0.0.2\n";
        assert_eq!(name_server(conf), "169.254.78.1:53".parse().unwrap());
        assert_eq!(name_server("nameserver ::1\n"), "[::1]:53".parse().unwrap());
        assert_eq!(name_server(""), "127.0.0.1:53".parse().unwrap());
        assert_eq!(
            name_server(";nameserver 10.0.0.1\n"),
            "127.0.0.1:53".parse().unwrap()
        );
    }

    #[test]
    fn hosts_file_lookup() {
        let hosts = "127.0.0.1 localhost\n# 10.0.0.1 sandbox.localdomain\n169.254.100.1\tsandbox.localdomain sandbox\n";
        assert_eq!(
            ip_from_hosts(hosts, "sandbox.localdomain"),
            Some("169.254.100.1".parse().unwrap())
        );
        assert_eq!(
            ip_from_hosts("127.0.0.1 localhost", "sandbox.localdomain"),
            None
        );
    }

    /// The question a stub name server received, and where from.
    fn question_at(server: &UdpSocket) -> (Vec<u8>, SocketAddr) {
        let mut buf = [0u8; 512];
        let (n, from) = server.recv_from(&mut buf).unwrap();
        (buf[..n].to_vec(), from)
    }

    /// A reply to question `q` under another id: not the answer.
    fn stray_for(q: &[u8]) -> Vec<u8> {
        reply([q[0], q[1] ^ 0xff], OK, 1, &q[12..], A_RECORD)
    }

    /// The answer to question `q`: one A record holding `ip`.
    fn answer_for(q: &[u8], ip: [u8; 4]) -> Vec<u8> {
        let mut answer = reply([q[0], q[1]], OK, 1, &q[12..], A_RECORD);
        let len = answer.len();
        answer[len - 4..].copy_from_slice(&ip);
        answer
    }

    /// A name server on loopback: it checks the question (an A query for
    /// the sandbox's name), sends a stray datagram first (another id), then
    /// the answer, written by hand around the question it received.
    #[test]
    fn a_name_server_on_loopback_is_asked_and_answers() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        // Sent before the server reads: the datagram waits in its socket,
        // as it does while the extension registers.
        let lookup = ask(addr, SANDBOX_HOST, Duration::from_secs(10));
        let (q, from) = question_at(&server);
        assert_eq!(&q[2..12], &[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&q[12..], &question_section()[..]);
        server.send_to(&stray_for(&q), from).unwrap();
        server
            .send_to(&answer_for(&q, [127, 0, 0, 9]), from)
            .unwrap();
        assert_eq!(lookup.finish(), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9)));
    }

    /// The answer came in time but the process reads it only after the
    /// bound (held by a CPU quota, or here by a sleep): it is still taken.
    /// A datagram that is not the answer, read past the bound, does not
    /// make it wait.
    #[test]
    fn an_answer_that_arrived_in_time_is_taken_when_read_after_the_bound() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let lookup = ask(
            server.local_addr().unwrap(),
            SANDBOX_HOST,
            Duration::from_millis(1),
        );
        let (q, from) = question_at(&server);
        server.send_to(&stray_for(&q), from).unwrap();
        server
            .send_to(&answer_for(&q, [127, 0, 0, 7]), from)
            .unwrap();
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(lookup.finish(), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 7)));

        // Only a stray datagram arrived: past the bound, no waiting.
        let lookup = ask(
            server.local_addr().unwrap(),
            SANDBOX_HOST,
            Duration::from_millis(1),
        );
        let (q, from) = question_at(&server);
        server.send_to(&stray_for(&q), from).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        let started = Instant::now();
        assert_eq!(lookup.finish(), IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    /// Nothing listens on the port: the ICMP error ends the wait at once,
    /// long before the (here 10 s) bound.
    #[test]
    fn a_closed_port_gives_the_unspecified_address_without_waiting_for_the_bound() {
        let closed = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let started = Instant::now();
        let ip = ask(addr, SANDBOX_HOST, Duration::from_secs(10)).finish();
        assert_eq!(ip, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    /// A name server that never answers: the wait ends at the bound.
    #[test]
    fn a_silent_name_server_costs_the_bound_and_no_more() {
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let started = Instant::now();
        let ip = ask(
            silent.local_addr().unwrap(),
            SANDBOX_HOST,
            Duration::from_millis(50),
        )
        .finish();
        assert_eq!(ip, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert!(started.elapsed() >= Duration::from_millis(50));
        let mut buf = [0u8; 512];
        assert!(silent.recv(&mut buf).unwrap() > 12, "the question was sent");
    }
}
