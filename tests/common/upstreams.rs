//! Real upstreams for forwarding tests: Knot DNS (`knotd`) serving a zone from a generated
//! configuration, and a misbehaving upstream of our own that can drop, delay, truncate, answer
//! with a wrong ID or question, or send garbage. Both listen on 127.0.0.1 only and stop on drop.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use domain::base::iana::{Rcode, Rtype};
use ferrite::message::{parse_query, Proto, Reply};
use ferrite::testing::rr;

use super::{temp_dir, udp_raw, Q};

/// A port free on 127.0.0.1 for both UDP and TCP at the time of asking.
pub fn free_port() -> u16 {
    for _ in 0..50 {
        let u = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let port = u.local_addr().expect("addr").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port");
}

/// The zone Knot serves: SOA MINIMUM 60, some addresses, a short-TTL name, and a TXT RRset too
/// big for 1232 bytes (so UDP answers are truncated).
pub fn zone_text() -> String {
    let mut z = String::from(
        "$ORIGIN example.test.\n$TTL 300\n\
         @ 3600 IN SOA ns.example.test. hostmaster.example.test. 1 7200 3600 1209600 60\n\
         @ IN NS ns.example.test.\n\
         ns IN A 127.0.0.1\n\
         www IN A 192.0.2.1\n\
         www IN A 192.0.2.2\n\
         alias IN CNAME www.example.test.\n\
         short 2 IN A 192.0.2.3\n",
    );
    for i in 0..30 {
        z.push_str(&format!("big IN TXT \"{i:02}-{}\"\n", "x".repeat(60)));
    }
    for i in 0..100 {
        z.push_str(&format!("h{i} IN A 198.51.100.{}\n", i % 250));
    }
    z
}

/// A running knotd; killed on drop.
pub struct Knot {
    child: Child,
    pub addr: SocketAddr,
    dir: PathBuf,
}

impl Knot {
    /// Starts knotd for `example.test` on a free port and waits (bounded) until it answers.
    pub fn start() -> Knot {
        let dir = temp_dir("knot");
        let port = free_port();
        std::fs::write(dir.join("example.test.zone"), zone_text()).expect("zone");
        let conf = format!(
            "server:\n    listen: 127.0.0.1@{port}\n    rundir: {d}\n    udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\n\
             database:\n    storage: {d}\n\
             zone:\n  - domain: example.test\n    file: {d}/example.test.zone\n    storage: {d}\n",
            d = dir.display()
        );
        std::fs::write(dir.join("knot.conf"), conf).expect("conf");
        // Debian installs knotd in /usr/sbin, which a non-login PATH may lack.
        let knotd = if std::path::Path::new("/usr/sbin/knotd").exists() { "/usr/sbin/knotd" } else { "knotd" };
        let child = Command::new(knotd)
            .arg("-c")
            .arg(dir.join("knot.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("knotd is needed for this test (apt-get install knot): {e}"));
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let k = Knot { child, addr, dir };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Some(b) = udp_raw(addr, &Q::new("www.example.test.", Rtype::A).wire(), Duration::from_millis(200)) {
                if Reply::from_wire(&b).is_ok_and(|r| !r.answer.is_empty()) {
                    return k;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("knotd did not answer on {addr} within 15s");
    }

    /// Stops knotd now (an upstream that dies).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Knot {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the misbehaving upstream does with each query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// Answer A 192.0.2.77 (NXDOMAIN for names starting with `nx`).
    Answer = 0,
    /// Say nothing.
    Drop = 1,
    /// Answer after `delay` milliseconds.
    Delay = 2,
    /// Answer over UDP with TC set and no records; answer fully over TCP.
    Truncate = 3,
    /// Reply with the ID changed.
    WrongId = 4,
    /// Reply about another question.
    WrongQuestion = 5,
    /// Send bytes that are not a DNS message (with the query's ID).
    Garbage = 6,
    /// Wrong ID, wrong question and garbage first, then the right answer.
    SpoofThenAnswer = 7,
}

/// A misbehaving upstream on 127.0.0.1 (UDP and TCP on one port).
pub struct Misbehaving {
    pub addr: SocketAddr,
    mode: Arc<AtomicU8>,
    delay_ms: Arc<AtomicU64>,
    pub udp_queries: Arc<AtomicUsize>,
    pub tcp_queries: Arc<AtomicUsize>,
    /// Health probes (`. NS`) seen.
    pub probes: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    pub names: Arc<Mutex<Vec<String>>>,
}

/// The address the misbehaving upstream answers with.
pub const MOCK_ADDR: &str = "192.0.2.77";

fn answer(q: &[u8], mode: Mode) -> Option<Vec<u8>> {
    let req = parse_query(q, "127.0.0.1:1".parse().ok()?, Proto::Udp).ok()?;
    let mut r = Reply::for_request(&req);
    r.header.set_ra(true);
    let name = req.name_lower();
    if name.starts_with("nx") {
        r.rcode = Rcode::NXDOMAIN.into();
        r.authority = vec![rr("example.test. 300 IN SOA ns.example.test. h.example.test. 1 7200 3600 1209600 30")];
    } else if req.qtype == Rtype::A {
        r.answer = vec![rr(&format!("{name} 30 IN A {MOCK_ADDR}"))];
    }
    let mut wire = r.to_wire(65535);
    match mode {
        Mode::Truncate => {
            let mut t = Reply::for_request(&req);
            t.header.set_tc(true);
            wire = t.to_wire(512);
            wire[2] |= 0x02;
        }
        Mode::WrongId => wire[0] ^= 0x5a,
        Mode::WrongQuestion => {
            let other = parse_query(&Q::new("evil.example.", Rtype::A).id(req.header.id()).wire(), "127.0.0.1:1".parse().ok()?, Proto::Udp).ok()?;
            let mut e = Reply::for_request(&other);
            e.answer = vec![rr("evil.example. 3000 IN A 6.6.6.6")];
            wire = e.to_wire(512);
        }
        Mode::Garbage => {
            wire = vec![q[0], q[1], 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 0xc0, 0x0c, 0xde, 0xad, 0xbe, 0xef];
        }
        _ => {}
    }
    Some(wire)
}

impl Misbehaving {
    pub fn start(mode: Mode) -> Misbehaving {
        // A UDP port whose TCP twin is free too (another test's connection may hold it): try
        // again with another port, a bounded number of times.
        let (udp, tcp, addr) = (0..100)
            .find_map(|_| {
                let udp = UdpSocket::bind("127.0.0.1:0").ok()?;
                let addr = udp.local_addr().ok()?;
                let tcp = TcpListener::bind(addr).ok()?;
                Some((udp, tcp, addr))
            })
            .expect("a UDP and TCP port pair on 127.0.0.1");
        udp.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
        tcp.set_nonblocking(true).expect("nonblocking");
        let m = Misbehaving {
            addr,
            mode: Arc::new(AtomicU8::new(mode as u8)),
            delay_ms: Arc::new(AtomicU64::new(500)),
            udp_queries: Arc::default(),
            tcp_queries: Arc::default(),
            probes: Arc::default(),
            stop: Arc::default(),
            names: Arc::default(),
        };
        let (mode, delay, n, probes, stop, names) =
            (m.mode.clone(), m.delay_ms.clone(), m.udp_queries.clone(), m.probes.clone(), m.stop.clone(), m.names.clone());
        let udp = Arc::new(udp);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while !stop.load(Ordering::SeqCst) {
                let Ok((len, peer)) = udp.recv_from(&mut buf) else { continue };
                let q = buf[..len].to_vec();
                let req = parse_query(&q, peer, Proto::Udp);
                if let Ok(r) = &req {
                    if r.qtype == Rtype::NS && r.qname.is_root() {
                        probes.fetch_add(1, Ordering::SeqCst);
                    } else {
                        n.fetch_add(1, Ordering::SeqCst);
                        names.lock().expect("lock").push(r.name_lower());
                    }
                }
                let m = mode_of(mode.load(Ordering::SeqCst));
                match m {
                    Mode::Drop => {}
                    Mode::Delay => {
                        let (udp, ms) = (udp.clone(), delay.load(Ordering::SeqCst));
                        std::thread::spawn(move || {
                            std::thread::sleep(Duration::from_millis(ms));
                            if let Some(a) = answer(&q, Mode::Answer) {
                                let _ = udp.send_to(&a, peer);
                            }
                        });
                    }
                    Mode::SpoofThenAnswer => {
                        for bad in [Mode::WrongId, Mode::WrongQuestion, Mode::Garbage, Mode::Answer] {
                            if let Some(a) = answer(&q, bad) {
                                let _ = udp.send_to(&a, peer);
                            }
                        }
                    }
                    other => {
                        if let Some(a) = answer(&q, other) {
                            let _ = udp.send_to(&a, peer);
                        }
                    }
                }
            }
        });
        let (mode, n, stop) = (m.mode.clone(), m.tcp_queries.clone(), m.stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match tcp.accept() {
                    Ok((s, _)) => {
                        let (mode, n) = (mode.clone(), n.clone());
                        std::thread::spawn(move || serve_tcp(s, &mode, &n));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        m
    }

    pub fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    pub fn set_delay(&self, d: Duration) {
        self.delay_ms.store(d.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn queries(&self) -> usize {
        self.udp_queries.load(Ordering::SeqCst) + self.tcp_queries.load(Ordering::SeqCst)
    }
}

impl Drop for Misbehaving {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn mode_of(v: u8) -> Mode {
    match v {
        1 => Mode::Drop,
        2 => Mode::Delay,
        3 => Mode::Truncate,
        4 => Mode::WrongId,
        5 => Mode::WrongQuestion,
        6 => Mode::Garbage,
        7 => Mode::SpoofThenAnswer,
        _ => Mode::Answer,
    }
}

fn serve_tcp(mut s: TcpStream, mode: &AtomicU8, n: &AtomicUsize) {
    use std::io::{Read, Write};
    let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
    loop {
        let mut len = [0u8; 2];
        if s.read_exact(&mut len).is_err() {
            return;
        }
        let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
        if s.read_exact(&mut q).is_err() {
            return;
        }
        n.fetch_add(1, Ordering::SeqCst);
        let m = match mode_of(mode.load(Ordering::SeqCst)) {
            Mode::Truncate | Mode::SpoofThenAnswer | Mode::Delay => Mode::Answer,
            Mode::Drop => continue,
            other => other,
        };
        let Some(a) = answer(&q, m) else { continue };
        let mut frame = (a.len() as u16).to_be_bytes().to_vec();
        frame.extend_from_slice(&a);
        if s.write_all(&frame).is_err() {
            return;
        }
    }
}
