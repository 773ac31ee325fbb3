//! One bounded HTTP/1.1 request to a sidecar, classified: a readiness probe (GET) or a quit
//! call (POST).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::proxy::name_lookup::{self, NoAddress, Unanswered};
use crate::proxy::request_first::RequestFirst;
use crate::proxy::sidecar_url::{Host, SidecarUrl};
use crate::untrusted_text;

/// How much of a not-ready body is kept for the log (its first line explains, e.g. Istio's
/// "config not received from Pilot").
const BODY_PEEK: usize = 512;
const FIRST_LINE_MAX: usize = 200;
/// hyper's cap on its read buffer (its smallest allowed value is 8 KiB).
const READ_BUFFER: usize = 16 * 1024;

/// Why a request brought no answer. One type for every request meshwait makes: readiness
/// probes, quit calls, Envoy's admin pages and doctor's checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoAnswer {
    /// Nothing listens on the port (the sidecar has not started, or has exited).
    Refused,
    /// No complete answer within the bound (hung or starved server).
    TimedOut,
    /// The URL's host name was not resolved in time: the server was never asked.
    Unresolved(Unanswered),
    /// Anything else: reset, garbage instead of HTTP, a name that does not resolve.
    Failed(String),
}

impl fmt::Display for NoAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoAnswer::Refused => f.write_str("connection refused"),
            NoAnswer::TimedOut => f.write_str("no answer in time"),
            NoAnswer::Unresolved(lookup) => write!(f, "{lookup}"),
            NoAnswer::Failed(why) => f.write_str(why),
        }
    }
}

/// What one probe found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Any 2xx status.
    Ready {
        status: u16,
    },
    /// The endpoint answered, but not 2xx: the status and the first line of the body.
    NotReady {
        status: u16,
        body: String,
    },
    NoAnswer(NoAnswer),
}

/// The class of an outcome, for deciding when the log has something new to say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Ready,
    NotReady(u16),
    Refused,
    TimedOut,
    Unresolved,
    Failed,
}

impl Outcome {
    pub const REFUSED: Outcome = Outcome::NoAnswer(NoAnswer::Refused);

    pub fn kind(&self) -> Kind {
        match self {
            Outcome::Ready { .. } => Kind::Ready,
            Outcome::NotReady { status, .. } => Kind::NotReady(*status),
            Outcome::NoAnswer(NoAnswer::Refused) => Kind::Refused,
            Outcome::NoAnswer(NoAnswer::TimedOut) => Kind::TimedOut,
            Outcome::NoAnswer(NoAnswer::Unresolved(_)) => Kind::Unresolved,
            Outcome::NoAnswer(NoAnswer::Failed(_)) => Kind::Failed,
        }
    }

    pub fn is_ready(&self) -> bool {
        matches!(self, Outcome::Ready { .. })
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ready { status } => write!(f, "HTTP {status}"),
            Outcome::NotReady { status, body } if body.is_empty() => write!(f, "HTTP {status}"),
            Outcome::NotReady { status, body } => write!(f, "HTTP {status}: {body}"),
            // A probe's log lines say more than an admin read's: the probe is the wait itself.
            Outcome::NoAnswer(NoAnswer::Refused) => {
                f.write_str("connection refused (nothing listening yet)")
            }
            Outcome::NoAnswer(NoAnswer::TimedOut) => {
                f.write_str("no answer within the request timeout")
            }
            Outcome::NoAnswer(other) => write!(f, "{other}"),
        }
    }
}

/// Probes `url` once, taking at most `limit`.
pub async fn probe(url: &SidecarUrl, limit: Duration) -> Outcome {
    call(url, Method::GET, limit).await
}

/// One request with an empty body (GET for readiness, POST to quit a sidecar), taking at most
/// `limit`. Any 2xx is `Ready`.
pub async fn call(url: &SidecarUrl, method: Method, limit: Duration) -> Outcome {
    match bounded(url, method, limit, 0).await {
        Ok(answer) if answer.is_success() => Outcome::Ready {
            status: answer.status,
        },
        Ok(Answer { status, body }) => Outcome::NotReady {
            status,
            body: first_line(&body),
        },
        Err(no) => Outcome::NoAnswer(no),
    }
}

/// An answer, any status, with up to `FETCH_MAX` bytes of the body (`BODY_PEEK` when not 2xx and
/// no 2xx body was asked for).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        is_success(self.status)
    }
}

/// Any 2xx: ready, quit, or a page to read.
fn is_success(status: u16) -> bool {
    (200..300).contains(&status)
}

/// What a GET brought back, body included: for reading a sidecar's admin pages (stats, state).
pub type Fetched = Result<Answer, NoAnswer>;

/// The most of a 2xx body `fetch` keeps: Envoy's filtered stats are a few hundred bytes.
pub const FETCH_MAX: usize = 16 * 1024;

/// GETs `url`, taking at most `limit`, and keeps the body whatever the status.
pub async fn fetch(url: &SidecarUrl, limit: Duration) -> Fetched {
    bounded(url, Method::GET, limit, FETCH_MAX).await
}

/// GETs `url`, taking at most `limit`, and hands a 2xx body to `each` piece by piece as it
/// arrives, up to `max` bytes (more is a failure): for pages too large to hold, such as Envoy's
/// `/clusters` in a big mesh. `Answer`'s body is empty for a 2xx status, the start of the body
/// otherwise.
pub async fn stream(
    url: &SidecarUrl,
    limit: Duration,
    max: u64,
    each: &mut dyn FnMut(&[u8]),
) -> Fetched {
    within(url, Method::GET, limit, Sink::Each(each, max)).await
}

/// What happens to a 2xx body.
enum Sink<'a> {
    /// Keep this much of it (0 for a probe, which needs only the status).
    Keep(usize),
    /// Pass it on as it arrives, failing past this many bytes.
    Each(&'a mut dyn FnMut(&[u8]), u64),
}

async fn bounded(url: &SidecarUrl, method: Method, limit: Duration, ok_body: usize) -> Fetched {
    within(url, method, limit, Sink::Keep(ok_body)).await
}

/// The whole request, name lookup included, within `limit`; time that runs out during the
/// lookup is the lookup's fault, not the proxy's.
async fn within(url: &SidecarUrl, method: Method, limit: Duration, sink: Sink<'_>) -> Fetched {
    let deadline = Instant::now() + limit;
    let addrs = match &url.host {
        Host::Name(name) => match name_lookup::resolve(name, url.port, deadline).await {
            Ok(addrs) => addrs,
            Err(NoAddress::Unanswered(lookup)) => return Err(NoAnswer::Unresolved(lookup)),
            Err(NoAddress::Failed(e)) => {
                return Err(NoAnswer::Failed(format!(
                    "the name lookup of {name} failed: {e}"
                )));
            }
        },
        _ => url.fixed_addrs().unwrap_or_default(),
    };
    match tokio::time::timeout_at(deadline, exchange(url, &addrs, method, sink)).await {
        Ok(fetched) => fetched,
        Err(_elapsed) => Err(NoAnswer::TimedOut),
    }
}

async fn exchange(
    url: &SidecarUrl,
    addrs: &[SocketAddr],
    method: Method,
    mut sink: Sink<'_>,
) -> Fetched {
    let stream = match connect(addrs).await {
        Ok(stream) => stream,
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return Err(NoAnswer::Refused),
        Err(e) => return Err(NoAnswer::Failed(format!("cannot connect: {e}"))),
    };
    // hyper's read buffer grows with a fast peer (to 400 KB by default); capped, a huge page
    // streams through the same few kilobytes.
    let (mut sender, connection) = match hyper::client::conn::http1::Builder::new()
        .max_buf_size(READ_BUFFER)
        .handshake(TokioIo::new(stream))
        .await
    {
        Ok(pair) => pair,
        Err(e) => return Err(NoAnswer::Failed(format!("HTTP handshake failed: {e}"))),
    };
    let mut request = Request::builder()
        .method(method.clone())
        .uri(url.path.as_str());
    if method == Method::POST {
        // Envoy's admin server rejects a POST without a length.
        request = request.header(hyper::header::CONTENT_LENGTH, "0");
    }
    let request = request
        .header(hyper::header::HOST, url.authority.as_str())
        .header(
            hyper::header::USER_AGENT,
            concat!("meshwait/", env!("CARGO_PKG_VERSION")),
        )
        .header(hyper::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new());
    let request = match request {
        Ok(request) => request,
        Err(e) => return Err(NoAnswer::Failed(format!("cannot build the request: {e}"))),
    };
    let answer = async {
        let response = sender.send_request(request).await.map_err(describe)?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let ok = is_success(status);
        if let (true, Sink::Each(each, max)) = (ok, &mut sink) {
            let mut seen: u64 = 0;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(describe)?;
                if let Some(data) = frame.data_ref() {
                    seen += data.len() as u64;
                    if seen > *max {
                        return Err(format!("the answer is larger than {max} bytes"));
                    }
                    each(data);
                }
            }
            return Ok(Answer {
                status,
                body: Vec::new(),
            });
        }
        let want = match sink {
            Sink::Keep(ok_body) if ok => ok_body,
            Sink::Keep(ok_body) => BODY_PEEK.max(ok_body),
            Sink::Each(..) => BODY_PEEK,
        };
        let mut kept = Vec::new();
        while kept.len() < want {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        let room = want - kept.len();
                        kept.extend_from_slice(&data[..data.len().min(room)]);
                    }
                }
                // A body cut short still explains something; keep what arrived.
                Some(Err(_)) | None => break,
            }
        }
        Ok(Answer { status, body: kept })
    };
    // The connection future must be polled for the request to make progress; both are dropped
    // together when the request ends, so a hung peer cannot keep a socket or task alive.
    tokio::pin!(connection, answer);
    let mut connection_ended = false;
    // Polled by hand (the answer first) rather than with select!, for the binary's size.
    std::future::poll_fn(|cx| {
        loop {
            if let Poll::Ready(result) = answer.as_mut().poll(cx) {
                return Poll::Ready(result.map_err(NoAnswer::Failed));
            }
            if connection_ended {
                return Poll::Pending;
            }
            match connection.as_mut().poll(cx) {
                Poll::Ready(Err(e)) => return Poll::Ready(Err(NoAnswer::Failed(describe(e)))),
                // With `Connection: close` the connection may finish first; the answer is
                // already buffered and only needs collecting: look at it again.
                Poll::Ready(Ok(())) => connection_ended = true,
                Poll::Pending => return Poll::Pending,
            }
        }
    })
    .await
}

async fn connect(addrs: &[SocketAddr]) -> io::Result<RequestFirst<TcpStream>> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the name resolved to no address");
    for &addr in addrs {
        match RequestFirst::connect(addr).await {
            Ok(stream) => return Ok(stream),
            // "Refused" on any address is the meaningful answer (nothing listens yet); a
            // pod without IPv6 answers ::1 with "cannot assign requested address" instead.
            Err(e) if last.kind() == io::ErrorKind::ConnectionRefused => drop(e),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn describe(e: hyper::Error) -> String {
    let mut text = if e.is_parse() {
        "the answer is not HTTP".to_string()
    } else if e.is_incomplete_message() {
        "the connection closed before a complete answer".to_string()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The first non-empty line of a body, printable and bounded.
fn first_line(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let mut kept = untrusted_text::without_unsafe(line);
    let mut out: String = kept.by_ref().take(FIRST_LINE_MAX).collect();
    if kept.next().is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-connection HTTP server on the loopback: answers `status` with `body`, and hands
    /// back the request head it read.
    fn serve_once(status: u16, body: Vec<u8>) -> (String, std::thread::JoinHandle<String>) {
        serve_in_pieces(status, vec![body])
    }

    /// As `serve_once`, writing the body in `pieces` a little apart, so they arrive as frames
    /// of their own.
    fn serve_in_pieces(
        status: u16,
        pieces: Vec<Vec<u8>>,
    ) -> (String, std::thread::JoinHandle<String>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://127.0.0.1:{}/page",
            listener.local_addr().unwrap().port()
        );
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let length: usize = pieces.iter().map(Vec::len).sum();
            let _ = write!(
                conn,
                "HTTP/1.1 {status} X\r\ncontent-length: {length}\r\nconnection: close\r\n\r\n"
            );
            for (i, piece) in pieces.iter().enumerate() {
                if i > 0 {
                    std::thread::sleep(Duration::from_millis(30));
                }
                let _ = conn.write_all(piece);
                let _ = conn.flush();
            }
            String::from_utf8_lossy(&head).to_lowercase()
        });
        (url, server)
    }

    /// Guards the cap on what is kept of a body across frames: an answer that arrives in pieces
    /// keeps its first `FETCH_MAX` bytes, not a whole later frame.
    #[test]
    fn a_body_arriving_in_pieces_is_kept_up_to_its_cap() {
        let (url, server) = serve_in_pieces(503, vec![vec![b'a'; 10_000], vec![b'b'; 10_000]]);
        let fetched = run(fetch(&url.parse().unwrap(), Duration::from_secs(5)));
        server.join().unwrap();
        let Ok(Answer { status: 503, body }) = fetched else {
            panic!("{fetched:?}");
        };
        assert_eq!(body.len(), FETCH_MAX);
        assert!(body[..10_000].iter().all(|&b| b == b'a'));
        assert!(body[10_000..].iter().all(|&b| b == b'b'));
    }

    fn run<T>(future: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(future)
    }

    /// Streams a 10,000-byte page under a cap of `max` bytes: what came back, and how many bytes
    /// were handed on.
    fn stream_page(max: u64) -> (Fetched, usize) {
        let (url, server) = serve_once(200, vec![b'x'; 10_000]);
        let mut seen = 0;
        let fetched = run(stream(
            &url.parse().unwrap(),
            Duration::from_secs(5),
            max,
            &mut |c| seen += c.len(),
        ));
        server.join().unwrap();
        (fetched, seen)
    }

    /// Guards the cap on a streamed page (Envoy's `/clusters`): past it the read fails instead of
    /// going on, and under it every byte is handed on.
    #[test]
    fn a_streamed_body_past_its_cap_is_a_failure() {
        let (fetched, seen) = stream_page(4096);
        assert_eq!(
            fetched,
            Err(NoAnswer::Failed(
                "the answer is larger than 4096 bytes".into()
            ))
        );
        assert!(seen <= 4096, "{seen} bytes handed on past the cap");
        // Exactly the cap is still within it.
        let (fetched, seen) = stream_page(10_000);
        assert!(
            matches!(fetched, Ok(Answer { status: 200, .. })),
            "{fetched:?}"
        );
        assert_eq!(seen, 10_000);
    }

    /// Guards what `fetch` keeps of a 2xx body: Envoy's filtered stats, up to `FETCH_MAX`.
    #[test]
    fn fetch_keeps_a_2xx_body_of_up_to_16_kib() {
        let (url, server) = serve_once(200, vec![b's'; 12 * 1024]);
        let fetched = run(fetch(&url.parse().unwrap(), Duration::from_secs(5)));
        server.join().unwrap();
        match fetched {
            Ok(Answer { status, body }) => {
                assert_eq!(status, 200);
                assert_eq!(body.len(), 12 * 1024);
            }
            other => panic!("{other:?}"),
        }
    }

    /// Guards the POST's length header, without which Envoy's admin refuses a POST (its
    /// `/quitquitquit`), and its absence on a GET.
    #[test]
    fn a_post_says_its_length_and_a_get_does_not() {
        let limit = Duration::from_secs(5);
        let (url, server) = serve_once(200, Vec::new());
        let outcome = run(call(&url.parse().unwrap(), Method::POST, limit));
        let head = server.join().unwrap();
        assert!(outcome.is_ready(), "{outcome:?}");
        assert!(head.starts_with("post /page http/1.1\r\n"), "{head}");
        assert!(head.contains("\r\ncontent-length: 0\r\n"), "{head}");
        let (url, server) = serve_once(200, Vec::new());
        let outcome = run(probe(&url.parse().unwrap(), limit));
        let head = server.join().unwrap();
        assert!(outcome.is_ready(), "{outcome:?}");
        assert!(head.starts_with("get /page http/1.1\r\n"), "{head}");
        assert!(!head.contains("content-length"), "{head}");
    }

    /// Guards the difference between "nothing listens yet" and other connect failures: a TCP
    /// connect to the broadcast address fails with ENETUNREACH on every Linux, whatever its
    /// routes.
    #[test]
    fn only_a_refused_connection_is_called_refused() {
        let outcome = run(probe(
            &"http://255.255.255.255:1/".parse().unwrap(),
            Duration::from_secs(5),
        ));
        match outcome {
            Outcome::NoAnswer(NoAnswer::Failed(why)) => {
                assert!(why.starts_with("cannot connect: "), "{why}");
            }
            other => panic!("{other:?}"),
        }
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://127.0.0.1:{}/", closed.local_addr().unwrap().port());
        drop(closed);
        let outcome = run(probe(&url.parse().unwrap(), Duration::from_secs(5)));
        assert_eq!(outcome, Outcome::REFUSED);
        // "Refused" on one address stands whatever the next one says: `localhost` is tried on
        // 127.0.0.1 and then ::1, which a pod without IPv6 answers with another error.
        let refused = url.trim_start_matches("http://").trim_end_matches('/');
        let addrs = [
            refused.parse().unwrap(),
            "255.255.255.255:1".parse().unwrap(),
        ];
        let err = run(connect(&addrs)).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
        assert_eq!(
            Outcome::NotReady {
                status: 503,
                body: String::new()
            }
            .to_string(),
            "HTTP 503"
        );
    }

    #[test]
    fn first_line_skips_blank_lines_and_bounds_length() {
        assert_eq!(
            first_line(b"\n\n  config not received from Pilot \nmore"),
            "config not received from Pilot"
        );
        assert_eq!(first_line(b""), "");
        let long = vec![b'x'; 1000];
        let line = first_line(&long);
        assert_eq!(line.chars().count(), FIRST_LINE_MAX + 1);
        assert!(line.ends_with('…'));
        assert_eq!(first_line(b"bad\x1b[31mcolour"), "bad[31mcolour");
        // U+2028 is no line break to `lines()`, and U+202E reverses what follows.
        assert_eq!(
            first_line("ok\u{2028}forged \u{202e}desrever".as_bytes()),
            "okforged desrever"
        );
    }

    #[test]
    fn display_is_human() {
        let o = Outcome::NotReady {
            status: 503,
            body: "no healthy upstream".into(),
        };
        assert_eq!(o.to_string(), "HTTP 503: no healthy upstream");
        assert_eq!(Outcome::REFUSED.kind(), Kind::Refused);
        assert!(Outcome::Ready { status: 204 }.is_ready());
    }
}
