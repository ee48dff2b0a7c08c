//! Integration harness: starts the real `ferrite` binary from a config string on a free port
//! and talks to it with a real DNS client over UDP and TCP.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use domain::base::iana::{Class, Rtype};
use domain::base::message_builder::MessageBuilder;
use domain::base::name::Name;
use ferrite::message::Reply;

pub mod upstreams;

pub const BIN: &str = env!("CARGO_BIN_EXE_ferrite");

/// A running ferrite; killed on drop.
pub struct Ferrite {
    child: Child,
    pub port: u16,
    /// HTTP side addresses, in the order they were reported.
    pub http: Vec<SocketAddr>,
    pub dir: PathBuf,
    lines: mpsc::Receiver<String>,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh temporary directory for one test.
pub fn temp_dir(tag: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("ferrite-it-{}-{tag}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

impl Ferrite {
    /// Starts ferrite on `corefile`, whose keys use port 0 (`.:0 { ... }`).
    pub fn start(corefile: &str) -> Ferrite {
        Self::start_args(corefile, &[])
    }

    pub fn start_args(corefile: &str, extra: &[&str]) -> Ferrite {
        let dir = temp_dir("srv");
        let conf = dir.join("Corefile");
        std::fs::write(&conf, corefile).expect("write Corefile");
        let mut args = vec!["-conf".to_string(), conf.display().to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::spawn(&args, &dir)
    }

    /// Starts ferrite with these arguments in `cwd` and waits for its listeners.
    pub fn spawn(args: &[String], cwd: &std::path::Path) -> Ferrite {
        let mut child = Command::new(BIN)
            .args(args)
            .current_dir(cwd)
            .env("FERRITE_WORKERS", "2")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ferrite starts");
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().expect("stdout piped");
        let err = child.stderr.take().expect("stderr piped");
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx2.send(format!("stderr: {l}"));
            }
        });
        // The banner ends with the version line; the listeners are reported before it.
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        let mut port = None;
        let mut http = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) if l.starts_with("ferrite-") && port.is_some() => break,
                Ok(l) => {
                    if let Some(rest) = l.strip_prefix("listening on dns://") {
                        let addr = rest.split_whitespace().next().unwrap_or_default();
                        let addr: SocketAddr = addr.parse().expect("listener address");
                        port.get_or_insert(addr.port());
                    }
                    if let Some(rest) = l.strip_prefix("listening on http://") {
                        http.push(rest.trim().parse().expect("http address"));
                    }
                    seen.push(l);
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("ferrite did not start listening; output:\n{}", seen.join("\n"));
                }
            }
        }
        let port = port.expect("a DNS listener");
        Ferrite { child, port, http, dir: cwd.to_path_buf(), lines: rx }
    }

    pub fn v4(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    pub fn v6(&self) -> SocketAddr {
        SocketAddr::from((Ipv6Addr::LOCALHOST, self.port))
    }

    /// Waits (bounded) for an output line containing `needle`.
    pub fn wait_line(&self, needle: &str, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(needle) => return Some(l),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    /// True while the process has not exited.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (libc's number) to the process.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) with our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Waits up to `within` for the process to exit; its exit code, or `None` if it did not.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Ferrite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Options of a query the client builds.
#[derive(Clone, Copy)]
pub struct Q<'a> {
    pub name: &'a str,
    pub qtype: Rtype,
    pub qclass: Class,
    pub id: u16,
    /// `Some(size)` adds an OPT record.
    pub edns: Option<u16>,
    pub dnssec_ok: bool,
}

impl<'a> Q<'a> {
    pub fn new(name: &'a str, qtype: Rtype) -> Q<'a> {
        Q { name, qtype, qclass: Class::IN, id: 0x4242, edns: None, dnssec_ok: false }
    }

    pub fn edns(mut self, size: u16) -> Self {
        self.edns = Some(size);
        self
    }

    pub fn class(mut self, c: Class) -> Self {
        self.qclass = c;
        self
    }

    pub fn id(mut self, id: u16) -> Self {
        self.id = id;
        self
    }

    pub fn wire(&self) -> Vec<u8> {
        let mut b = MessageBuilder::new_vec();
        b.header_mut().set_id(self.id);
        b.header_mut().set_rd(true);
        let mut q = b.question();
        let name = Name::<Bytes>::from_str(self.name).expect("valid name");
        q.push((&name, self.qtype, self.qclass)).expect("fits");
        let mut a = q.additional();
        if let Some(size) = self.edns {
            let dnssec_ok = self.dnssec_ok;
            a.opt(|o| {
                o.set_udp_payload_size(size);
                o.set_dnssec_ok(dnssec_ok);
                Ok(())
            })
            .expect("fits");
        }
        a.finish()
    }
}

/// Sends raw bytes over UDP and waits up to `timeout` for one reply.
pub fn udp_raw(server: SocketAddr, wire: &[u8], timeout: Duration) -> Option<Vec<u8>> {
    let bind: SocketAddr = if server.is_ipv4() { "127.0.0.1:0".parse().ok()? } else { "[::1]:0".parse().ok()? };
    let s = UdpSocket::bind(bind).expect("client socket");
    s.set_read_timeout(Some(timeout)).expect("timeout");
    s.send_to(wire, server).expect("send");
    let mut buf = vec![0u8; 65535];
    match s.recv_from(&mut buf) {
        Ok((n, _)) => Some(buf[..n].to_vec()),
        Err(_) => None,
    }
}

/// One query over UDP; panics if no reply comes within 3 s.
pub fn udp(server: SocketAddr, q: Q) -> Reply {
    let b = udp_raw(server, &q.wire(), Duration::from_secs(3)).unwrap_or_else(|| panic!("no UDP reply from {server} for {}", q.name));
    Reply::from_wire(&b).expect("reply parses")
}

/// One query over a new TCP connection.
pub fn tcp(server: SocketAddr, q: Q) -> Reply {
    let mut s = TcpStream::connect_timeout(&server, Duration::from_secs(3)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(3))).expect("timeout");
    tcp_send(&mut s, &q.wire());
    let b = tcp_read(&mut s).expect("a TCP reply");
    Reply::from_wire(&b).expect("reply parses")
}

pub fn tcp_send(s: &mut TcpStream, wire: &[u8]) {
    let mut frame = (wire.len() as u16).to_be_bytes().to_vec();
    frame.extend_from_slice(wire);
    s.write_all(&frame).expect("write");
}

/// Reads one length-prefixed message; `None` on EOF or timeout.
pub fn tcp_read(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len).ok()?;
    let mut b = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut b).ok()?;
    Some(b)
}

/// A plain HTTP GET; returns the status code and body.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let addr = if addr.ip().is_unspecified() { SocketAddr::from((Ipv4Addr::LOCALHOST, addr.port())) } else { addr };
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

/// Runs an external client (dig, kdig) and returns its stdout.
pub fn run_tool(tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool} is needed for this test (apt-get install knot-dnsutils bind9-dnsutils): {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `check` every 20 ms until it holds, for at most `within`; whether it came to hold.
pub fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
