//! The connection to the Lambda APIs that carries [`super::http1`]'s
//! requests: blocking before the async runtime exists ([`BlockingConn`]:
//! registering, subscribing, sending the first `/next`), then on the event
//! loop ([`AsyncConn`]: every later `/next`, with the first `/next`'s answer
//! read from where the blocking call left it).
//!
//! One request at a time. A connection kept from an earlier answer that
//! turns out closed before any byte of the next answer arrives (the server
//! dropped it while idle) is replaced by a new one and the request sent
//! again, once; a request abandoned half-way (its future dropped) takes its
//! connection along.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::http1::{closed_early, parse_response, ApiResponse, Parsed, Request};
use super::ApiError;

/// Why an exchange failed, and whether sending again on a new connection
/// is safe: only when the connection was found closed before any byte of
/// the answer arrived.
enum Failed {
    ClosedBeforeAnswer(ApiError),
    Other(ApiError),
}

impl Failed {
    fn into_error(self) -> ApiError {
        match self {
            Failed::ClosedBeforeAnswer(e) | Failed::Other(e) => e,
        }
    }
}

fn transport(e: std::io::Error, what: &'static str) -> ApiError {
    ApiError::Transport(format!("{what}: {e}"))
}

fn is_closed(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        BrokenPipe | ConnectionReset | ConnectionAborted | UnexpectedEof
    )
}

/// A request sent by [`BlockingConn::send`], its answer not read yet.
pub struct SentRequest {
    stream: TcpStream,
    /// Sent on a connection kept from an earlier answer: if it turns out
    /// closed before any byte of the answer, the request goes again on a
    /// new one (the server may have closed it just before the request).
    reused: bool,
}

/// A request that could not be written: on a connection the server
/// closed, nothing of it was read.
fn write_failed(e: std::io::Error, what: &'static str) -> Failed {
    if is_closed(&e) {
        Failed::ClosedBeforeAnswer(transport(e, what))
    } else {
        Failed::Other(transport(e, what))
    }
}

/// A blocking connection, for the calls made before the async runtime
/// exists. Every call is bounded by the timeout given.
pub struct BlockingConn {
    host: String,
    stream: Option<TcpStream>,
}

impl BlockingConn {
    /// A connection to `host` (`AWS_LAMBDA_RUNTIME_API`: `address:port`).
    pub fn connect(host: &str, timeout: Duration) -> Result<Self, ApiError> {
        let mut conn = BlockingConn {
            host: host.to_owned(),
            stream: None,
        };
        conn.stream = Some(conn.open(timeout)?);
        Ok(conn)
    }

    fn open(&self, timeout: Duration) -> Result<TcpStream, ApiError> {
        let what = "connecting to the Lambda API";
        if self.host.parse::<std::net::SocketAddr>().is_err() {
            // A name, not an address (emulators): looked up through the C
            // library, whose sources are pinned before its first lookup.
            crate::name_services::pin_hosts_lookup();
        }
        let addrs = self
            .host
            .to_socket_addrs()
            .map_err(|e| ApiError::Transport(format!("{what} at {}: {e}", self.host)))?;
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    return Ok(s);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(ApiError::Transport(match last {
            Some(e) => format!("{what} at {}: {e}", self.host),
            None => format!("{what}: {} has no address", self.host),
        }))
    }

    /// Sends `req` and reads the answer, within `timeout`.
    pub fn call(&mut self, req: &Request, timeout: Duration) -> Result<ApiResponse, ApiError> {
        let deadline = Instant::now() + timeout;
        let bytes = req.encode(&self.host);
        let (mut stream, reused) = match self.stream.take() {
            Some(s) => (s, true),
            None => (self.open(timeout)?, false),
        };
        let mut result = exchange_blocking(&mut stream, &bytes, req.what, deadline);
        if reused && matches!(result, Err(Failed::ClosedBeforeAnswer(_))) {
            stream = self.open(deadline.saturating_duration_since(Instant::now()))?;
            result = exchange_blocking(&mut stream, &bytes, req.what, deadline);
        }
        let parsed = result.map_err(Failed::into_error)?;
        if parsed.keep_alive {
            self.stream = Some(stream);
        }
        Ok(parsed.response)
    }

    /// Sends `req` and leaves its answer to be read later, on the event
    /// loop ([`AsyncConn::with_answer_pending`]): the first `/next`.
    pub fn send(mut self, req: &Request, timeout: Duration) -> Result<SentRequest, ApiError> {
        let bytes = req.encode(&self.host);
        let (mut stream, reused) = match self.stream.take() {
            Some(s) => (s, true),
            None => (self.open(timeout)?, false),
        };
        let _ = stream.set_write_timeout(Some(timeout));
        match stream.write_all(&bytes) {
            Ok(()) => Ok(SentRequest { stream, reused }),
            Err(e) if reused && is_closed(&e) => {
                // Dropped while idle: nothing of this request was read.
                let mut stream = self.open(timeout)?;
                stream
                    .write_all(&bytes)
                    .map_err(|e| transport(e, req.what))?;
                Ok(SentRequest {
                    stream,
                    reused: false,
                })
            }
            Err(e) => Err(transport(e, req.what)),
        }
    }

    /// `AWS_LAMBDA_RUNTIME_API`, as connected to.
    pub fn host(&self) -> &str {
        &self.host
    }
}

fn exchange_blocking(
    stream: &mut TcpStream,
    request: &[u8],
    what: &'static str,
    deadline: Instant,
) -> Result<Parsed, Failed> {
    let left = || {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(Failed::Other(ApiError::Transport(format!(
                "no answer to {what} in time"
            ))))
        } else {
            Ok(left)
        }
    };
    let _ = stream.set_write_timeout(Some(left()?));
    if let Err(e) = stream.write_all(request) {
        return Err(write_failed(e, what));
    }
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let _ = stream.set_read_timeout(Some(left()?));
        let read = stream.read(&mut chunk);
        match &read {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(Failed::Other(ApiError::Transport(format!(
                    "no answer to {what} in time"
                ))))
            }
            _ => {}
        }
        if let Some(parsed) = take_read(read, &chunk, &mut buf, what)? {
            return Ok(parsed);
        }
    }
}

/// Adds what one read brought to `buf`: the answer once it is complete,
/// `None` to read on.
fn take_read(
    read: std::io::Result<usize>,
    chunk: &[u8],
    buf: &mut Vec<u8>,
    what: &'static str,
) -> Result<Option<Parsed>, Failed> {
    let n = match read {
        Ok(n) => n,
        Err(e) if buf.is_empty() && is_closed(&e) => {
            return Err(Failed::ClosedBeforeAnswer(transport(e, what)))
        }
        Err(e) => return Err(Failed::Other(transport(e, what))),
    };
    if n == 0 && buf.is_empty() {
        return Err(Failed::ClosedBeforeAnswer(closed_early(what, 0)));
    }
    buf.extend_from_slice(&chunk[..n]);
    parse_response(buf, n == 0, what).map_err(Failed::Other)
}

/// The connection on the event loop: `/next` and the error reports after
/// the first `/next`. One request at a time; a request abandoned half-way
/// (its future dropped) takes the connection with it, and the next request
/// opens a new one.
pub struct AsyncConn {
    host: String,
    idle: std::sync::Mutex<Option<tokio::net::TcpStream>>,
    /// A request already sent whose answer has not been read (the first
    /// `/next`, sent before the runtime existed), and whether it went on a
    /// reused connection.
    pending: std::sync::Mutex<Option<(tokio::net::TcpStream, bool)>>,
}

impl AsyncConn {
    /// Takes over a blocking connection (its idle socket, if any). Must be
    /// called on the async runtime.
    pub fn new(conn: BlockingConn) -> Self {
        AsyncConn {
            host: conn.host,
            idle: std::sync::Mutex::new(conn.stream.and_then(to_tokio)),
            pending: std::sync::Mutex::new(None),
        }
    }

    /// A connection whose next answer belongs to a request already sent
    /// ([`BlockingConn::send`]): the next [`AsyncConn::call`] reads that
    /// answer instead of sending its own request. Must be called on the
    /// async runtime.
    pub fn with_answer_pending(host: String, sent: SentRequest) -> Self {
        let reused = sent.reused;
        AsyncConn {
            host,
            idle: std::sync::Mutex::new(None),
            pending: std::sync::Mutex::new(to_tokio(sent.stream).map(|s| (s, reused))),
        }
    }

    /// Sends `req` and reads the answer; `timeout` bounds the whole call
    /// (`None` for `/next`, a long poll that may span a freeze).
    pub async fn call(
        &self,
        req: &Request,
        timeout: Option<Duration>,
    ) -> Result<ApiResponse, ApiError> {
        let work = self.call_unbounded(req);
        match timeout {
            None => work.await,
            Some(t) => tokio::time::timeout(t, work).await.unwrap_or_else(|_| {
                Err(ApiError::Transport(format!(
                    "no answer to {} in time",
                    req.what
                )))
            }),
        }
    }

    async fn call_unbounded(&self, req: &Request) -> Result<ApiResponse, ApiError> {
        let bytes = req.encode(&self.host);
        let pending = lock(&self.pending).take();
        let (mut stream, reused, mut result) = match pending {
            Some((mut stream, reused)) => {
                let result = read_async(&mut stream, req.what).await;
                (stream, reused, result)
            }
            None => {
                let idle = lock(&self.idle).take();
                let reused = idle.is_some();
                let mut stream = match idle {
                    Some(s) => s,
                    None => self.open(req.what).await?,
                };
                let result = exchange_async(&mut stream, &bytes, req.what).await;
                (stream, reused, result)
            }
        };
        if reused && matches!(result, Err(Failed::ClosedBeforeAnswer(_))) {
            stream = self.open(req.what).await?;
            result = exchange_async(&mut stream, &bytes, req.what).await;
        }
        let parsed = result.map_err(Failed::into_error)?;
        Ok(self.keep(stream, parsed))
    }

    fn keep(&self, stream: tokio::net::TcpStream, parsed: Parsed) -> ApiResponse {
        if parsed.keep_alive {
            *lock(&self.idle) = Some(stream);
        }
        parsed.response
    }

    async fn open(&self, what: &'static str) -> Result<tokio::net::TcpStream, ApiError> {
        let stream = tokio::net::TcpStream::connect(self.host.as_str())
            .await
            .map_err(|e| {
                ApiError::Transport(format!("{what}: connecting to {}: {e}", self.host))
            })?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn to_tokio(stream: TcpStream) -> Option<tokio::net::TcpStream> {
    // Timeouts set for the blocking calls do not apply to a non-blocking socket.
    stream.set_nonblocking(true).ok()?;
    tokio::net::TcpStream::from_std(stream).ok()
}

async fn exchange_async(
    stream: &mut tokio::net::TcpStream,
    request: &[u8],
    what: &'static str,
) -> Result<Parsed, Failed> {
    if let Err(e) = stream.write_all(request).await {
        return Err(write_failed(e, what));
    }
    read_async(stream, what).await
}

async fn read_async(
    stream: &mut tokio::net::TcpStream,
    what: &'static str,
) -> Result<Parsed, Failed> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let read = stream.read(&mut chunk).await;
        if let Some(parsed) = take_read(read, &chunk, &mut buf, what)? {
            return Ok(parsed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    const WHAT: &str = "test";

    /// A server on loopback that answers each connection's requests from a
    /// script: per connection, a list of raw answers; after the list the
    /// connection is closed. Returns the requests it read, per connection.
    fn scripted_server(
        script: Vec<Vec<&'static [u8]>>,
    ) -> (String, std::thread::JoinHandle<Vec<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let handle = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for answers in script {
                let (mut s, _) = listener.accept().unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut requests = Vec::new();
                for answer in answers {
                    requests.push(read_request(&mut s));
                    s.write_all(answer).unwrap();
                }
                seen.push(requests);
            }
            seen
        });
        (host, handle)
    }

    /// Reads one request (head and `Content-Length` body).
    fn read_request(s: &mut TcpStream) -> String {
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            assert_eq!(s.read(&mut byte).unwrap(), 1, "request cut short");
            buf.push(byte[0]);
        }
        let head = String::from_utf8(buf).unwrap();
        let len = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .map_or(0, |v| v.trim().parse().unwrap());
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).unwrap();
        head + &String::from_utf8(body).unwrap()
    }

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

    #[test]
    fn a_kept_connection_carries_the_next_request() {
        let (host, server) = scripted_server(vec![vec![OK, OK]]);
        let mut conn = BlockingConn::connect(&host, Duration::from_secs(10)).unwrap();
        for path in ["/a", "/b"] {
            let req = Request::new("GET", path.into(), WHAT);
            let resp = conn.call(&req, Duration::from_secs(10)).unwrap();
            assert_eq!(&resp.body[..], b"ok");
        }
        let seen = server.join().unwrap();
        assert_eq!(seen.len(), 1, "one connection");
        assert!(seen[0][0].starts_with("GET /a HTTP/1.1\r\nHost: "));
        assert!(seen[0][1].starts_with("GET /b HTTP/1.1\r\n"));
    }

    /// The server closes the kept connection after its first answer: the
    /// second request goes again on a new connection, once.
    #[test]
    fn a_kept_connection_found_closed_is_replaced_once() {
        let (host, server) = scripted_server(vec![vec![OK], vec![OK]]);
        let mut conn = BlockingConn::connect(&host, Duration::from_secs(10)).unwrap();
        let req = Request::new("PUT", "/x".into(), WHAT).json("{}".into());
        conn.call(&req, Duration::from_secs(10)).unwrap();
        // Let the close arrive first, as it would while idle.
        std::thread::sleep(Duration::from_millis(50));
        let resp = conn.call(&req, Duration::from_secs(10)).unwrap();
        assert_eq!(resp.status, 200);
        let seen = server.join().unwrap();
        assert_eq!(seen.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1]);
        assert!(seen[1][0].ends_with("\r\n\r\n{}"));
    }

    /// A server that reads the request and never answers: the call ends at
    /// its timeout with an error naming the request.
    #[test]
    fn a_silent_server_costs_the_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let mut conn = BlockingConn::connect(&host, Duration::from_secs(10)).unwrap();
        let (_held, _) = listener.accept().unwrap();
        let req = Request::new("GET", "/x".into(), "register");
        let e = conn.call(&req, Duration::from_millis(100)).unwrap_err();
        assert!(
            e.to_string().contains("no answer to register in time"),
            "{e}"
        );
    }

    /// The first `/next` is sent blocking, its answer read on the event loop;
    /// the next request then reuses the same connection.
    #[tokio::test]
    async fn an_answer_left_pending_is_read_on_the_event_loop() {
        let (host, server) = scripted_server(vec![vec![OK, OK, OK]]);
        let mut conn = BlockingConn::connect(&host, Duration::from_secs(10)).unwrap();
        conn.call(
            &Request::new("POST", "/register".into(), WHAT),
            Duration::from_secs(10),
        )
        .unwrap();
        let stream = conn
            .send(
                &Request::new("GET", "/next".into(), WHAT),
                Duration::from_secs(10),
            )
            .unwrap();
        let api = AsyncConn::with_answer_pending(host, stream);
        let first = api
            .call(&Request::new("GET", "/next".into(), WHAT), None)
            .await;
        assert_eq!(&first.unwrap().body[..], b"ok");
        let second = api
            .call(&Request::new("GET", "/next2".into(), WHAT), None)
            .await;
        assert_eq!(second.unwrap().status, 200);
        let seen = server.join().unwrap();
        assert_eq!(seen.len(), 1, "one connection throughout");
        let paths: Vec<&str> = seen[0]
            .iter()
            .map(|r| r.split(' ').nth(1).unwrap())
            .collect();
        assert_eq!(paths, ["/register", "/next", "/next2"]);
    }

    /// The server closes the kept connection right after answering (HTTP/1.1,
    /// no `Connection: close`): the first `/next`, sent on it before the
    /// close was seen, goes again on a new connection when its answer is read.
    #[tokio::test]
    async fn a_pending_answer_on_a_connection_found_closed_is_asked_again() {
        let (host, server) = scripted_server(vec![vec![OK], vec![OK]]);
        let mut conn = BlockingConn::connect(&host, Duration::from_secs(10)).unwrap();
        conn.call(
            &Request::new("POST", "/register".into(), WHAT),
            Duration::from_secs(10),
        )
        .unwrap();
        // The close has arrived; the write still succeeds on this side.
        std::thread::sleep(Duration::from_millis(50));
        let sent = conn
            .send(
                &Request::new("GET", "/next".into(), WHAT),
                Duration::from_secs(10),
            )
            .unwrap();
        let api = AsyncConn::with_answer_pending(host, sent);
        let answer = api
            .call(&Request::new("GET", "/next".into(), WHAT), None)
            .await;
        assert_eq!(&answer.unwrap().body[..], b"ok");
        let seen = server.join().unwrap();
        assert_eq!(seen.len(), 2, "a second connection");
        assert!(seen[1][0].starts_with("GET /next "));
    }

    /// A request abandoned half-way (its future dropped, as a timeout does)
    /// takes its connection along: the next request opens another.
    #[tokio::test]
    async fn an_abandoned_request_does_not_leave_its_answer_to_the_next() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let conn = BlockingConn::connect(&host, Duration::from_secs(10)).unwrap();
        let api = AsyncConn::new(conn);
        let (mut first, _) = listener.accept().unwrap();
        let slow = Request::new("GET", "/slow".into(), WHAT);
        let abandoned = api.call(&slow, Some(Duration::from_millis(50))).await;
        assert!(abandoned.is_err());
        assert!(read_request(&mut first).starts_with("GET /slow "));
        // The late answer arrives on the abandoned connection.
        first
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate")
            .unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let req = read_request(&mut s);
            s.write_all(OK).unwrap();
            req
        });
        let resp = api
            .call(&Request::new("GET", "/fresh".into(), WHAT), None)
            .await
            .unwrap();
        assert_eq!(&resp.body[..], b"ok");
        assert!(server.join().unwrap().starts_with("GET /fresh "));
    }
}
