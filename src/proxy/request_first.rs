//! A connection whose answer is read only once the request is out.
//!
//! hyper's HTTP/1 client checks an idle connection before it has written the request, and treats
//! any byte already there as an unexpected message: the exchange fails with "received unexpected
//! message from connection". A server that writes its status as soon as it accepts (an
//! `nc -l`-style responder, some tiny status servers) wins that race now and then, so a ready
//! sidecar would flap to "not ready". Holding reads back until the request has been written and
//! flushed turns the early answer into an ordinary one. Such a server may also close or reset the
//! connection before the request is out; what it answered still counts when it is complete.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};

pub struct RequestFirst<T> {
    io: T,
    /// Some of the request has been written (or taken as written).
    wrote: bool,
    /// The request has been written and flushed: reads pass through.
    sent: bool,
    /// Woken once the request is out: hyper polled for the answer and was told to wait.
    reader: Option<Waker>,
    /// A write the peer refused (it answered and closed, or reset). Its answer may already be
    /// here and complete, so the write is reported done and this error stands in for the read's
    /// end only when nothing more arrives.
    write_failed: Option<io::Error>,
}

impl RequestFirst<TcpStream> {
    /// Connects to `addr`. A peer that accepts, answers and resets at once (an abortive close)
    /// can do all that before the connection is first looked at, which tokio reports as a failed
    /// connect; the answer is on the socket all the same, so the connection is kept for reading.
    pub async fn connect(addr: SocketAddr) -> io::Result<RequestFirst<TcpStream>> {
        let socket = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        // The same socket under a second descriptor (close-on-exec), which a failed connect
        // does not close.
        let spare = socket.as_fd().try_clone_to_owned()?;
        let (stream, reset) = match socket.connect(addr).await {
            Ok(stream) => (stream, None),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => (
                TcpStream::from_std(std::net::TcpStream::from(spare))?,
                Some(e),
            ),
            Err(e) => return Err(e),
        };
        let _ = stream.set_nodelay(true);
        Ok(RequestFirst {
            // Nothing can be sent any more; only what the peer said before its reset is left.
            write_failed: reset,
            ..RequestFirst::new(stream)
        })
    }
}

impl<T> RequestFirst<T> {
    pub fn new(io: T) -> RequestFirst<T> {
        RequestFirst {
            io,
            wrote: false,
            sent: false,
            reader: None,
            write_failed: None,
        }
    }

    fn write_went<U>(&mut self, result: io::Result<U>, len: U) -> io::Result<U> {
        match result {
            Ok(n) => {
                self.wrote = true;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                self.wrote = true;
                self.write_failed = Some(e);
                Ok(len)
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for RequestFirst<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.sent {
            this.reader = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let before = buf.filled().len();
        let result = std::task::ready!(Pin::new(&mut this.io).poll_read(cx, buf));
        let ended = result.is_err() || buf.filled().len() == before;
        match this.write_failed.take() {
            // Nothing (more) came back: the refused write is what went wrong.
            Some(e) if ended => Poll::Ready(Err(e)),
            kept => {
                this.write_failed = kept;
                Poll::Ready(result)
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for RequestFirst<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.write_failed.is_some() {
            this.wrote = true;
            return Poll::Ready(Ok(buf.len()));
        }
        let result = std::task::ready!(Pin::new(&mut this.io).poll_write(cx, buf));
        Poll::Ready(this.write_went(result, buf.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let len = bufs.iter().map(|b| b.len()).sum();
        if this.write_failed.is_some() {
            this.wrote = true;
            return Poll::Ready(Ok(len));
        }
        let result = std::task::ready!(Pin::new(&mut this.io).poll_write_vectored(cx, bufs));
        Poll::Ready(this.write_went(result, len))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = if this.write_failed.is_some() {
            Ok(())
        } else {
            std::task::ready!(Pin::new(&mut this.io).poll_flush(cx))
        };
        // hyper flushes once its buffer is written; a flush before any write is not the request.
        if result.is_ok() && this.wrote && !this.sent {
            this.sent = true;
            if let Some(reader) = this.reader.take() {
                reader.wake();
            }
        }
        Poll::Ready(result)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use bytes::Bytes;
    use http_body_util::Empty;
    use hyper_util::rt::TokioIo;

    const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

    /// A peer whose whole answer can be read at any time, before or after the request.
    struct Peer {
        unread: &'static [u8],
        refuses_writes: bool,
    }

    impl AsyncRead for Peer {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let n = self.unread.len().min(buf.remaining());
            buf.put_slice(&self.unread[..n]);
            self.unread = &self.unread[n..];
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Peer {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(if self.refuses_writes {
                Err(io::ErrorKind::ConnectionReset.into())
            } else {
                Ok(buf.len())
            })
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// One GET through hyper over `peer`: the status, or hyper's error.
    fn get(peer: Peer) -> Result<u16, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(RequestFirst::new(peer)))
                    .await
                    .map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            let request = hyper::Request::get("/ready")
                .header(hyper::header::HOST, "proxy")
                .body(Empty::<Bytes>::new())
                .unwrap();
            let response =
                sender.send_request(request).await.map_err(
                    |e| match std::error::Error::source(&e) {
                        Some(cause) => format!("{e}: {cause}"),
                        None => e.to_string(),
                    },
                )?;
            Ok(response.status().as_u16())
        })
    }

    #[test]
    fn an_answer_there_before_the_request_is_its_answer() {
        let peer = Peer {
            unread: ANSWER,
            refuses_writes: false,
        };
        assert_eq!(get(peer), Ok(200));
    }

    #[test]
    fn a_refused_request_still_gets_the_answer_already_sent() {
        let peer = Peer {
            unread: ANSWER,
            refuses_writes: true,
        };
        assert_eq!(get(peer), Ok(200));
    }

    #[test]
    fn a_refused_request_without_an_answer_says_why() {
        let peer = Peer {
            unread: b"",
            refuses_writes: true,
        };
        let error = get(peer).unwrap_err();
        assert!(error.contains("reset"), "{error}");
    }
}
