//! Serving one stand-in: a loopback listener whose connections can be killed from a handler.
//!
//! Fault injection needs two things axum's plain `TcpListener` cannot give: dropping a connection
//! without writing a response (a reset), and doing so *after* the handler ran (the "applied but
//! the response was lost" case). Every accepted stream is wrapped in [`ConnIo`], which shares a
//! flag with a [`ConnHandle`] that middleware reaches through `ConnectInfo`. Once the flag is
//! set, the next write fails and the socket is closed with `SO_LINGER` 0, so the client sees a
//! connection reset instead of a response.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Shared between one connection's IO and the handlers serving it.
#[derive(Debug)]
struct ConnShared {
    killed: AtomicBool,
}

/// A handle on the connection a request arrived on; `kill` makes it end without a response.
#[derive(Clone, Debug)]
pub(crate) struct ConnHandle {
    shared: Arc<ConnShared>,
}

impl ConnHandle {
    /// Marks the connection dead: the response will not be written and the peer sees a reset.
    pub(crate) fn kill(&self) {
        self.shared.killed.store(true, Ordering::SeqCst);
    }
}

/// An accepted stream that fails every operation once its connection was killed.
#[derive(Debug)]
pub(crate) struct ConnIo {
    inner: TcpStream,
    shared: Arc<ConnShared>,
    reset_done: bool,
}

impl ConnIo {
    fn check(&mut self) -> io::Result<()> {
        if !self.shared.killed.load(Ordering::SeqCst) {
            return Ok(());
        }
        if !self.reset_done {
            self.reset_done = true;
            // Linger 0 turns the close into a RST, which is what a dropped connection looks like
            // to the client. The deprecation is about blocking on drop with a non-zero linger;
            // a zero linger never blocks.
            #[allow(deprecated)]
            let _ = self.inner.set_linger(Some(Duration::ZERO));
        }
        Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "connection killed by fault injection",
        ))
    }
}

impl AsyncRead for ConnIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Err(e) = self.check() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Err(e) = self.check() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Err(e) = self.check() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Err(e) = self.check() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A TCP listener whose connections carry a [`ConnHandle`].
#[derive(Debug)]
pub(crate) struct KillableListener {
    inner: TcpListener,
}

impl Listener for KillableListener {
    type Io = ConnIo;
    type Addr = ConnHandle;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    let shared = Arc::new(ConnShared {
                        killed: AtomicBool::new(false),
                    });
                    let io = ConnIo {
                        inner: stream,
                        shared: shared.clone(),
                        reset_done: false,
                    };
                    return (io, ConnHandle { shared });
                }
                // Out of file descriptors and the like: back off briefly, as axum does.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Err(io::Error::other("use the bound address reported at start"))
    }
}

impl Connected<IncomingStream<'_, KillableListener>> for ConnHandle {
    fn connect_info(stream: IncomingStream<'_, KillableListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// Tells every server and background task to stop.
#[derive(Clone, Debug)]
pub(crate) struct Shutdown {
    rx: watch::Receiver<bool>,
}

impl Shutdown {
    /// A new signal and its trigger.
    pub(crate) fn new() -> (watch::Sender<bool>, Self) {
        let (tx, rx) = watch::channel(false);
        (tx, Self { rx })
    }

    /// Resolves once shutdown was requested (or the trigger was dropped).
    pub(crate) async fn wait(&self) {
        let mut rx = self.rx.clone();
        let _ = rx.wait_for(|stop| *stop).await;
    }

    /// Whether shutdown was requested.
    pub(crate) fn is_stopping(&self) -> bool {
        *self.rx.borrow()
    }
}

/// Binds a loopback listener on `port` (0 picks a free one).
pub(crate) async fn bind(port: u16) -> io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port)).await?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// Serves `router` on `listener` until `shutdown` fires.
pub(crate) fn serve(listener: TcpListener, router: Router, shutdown: Shutdown) -> JoinHandle<()> {
    let listener = KillableListener { inner: listener };
    tokio::spawn(async move {
        let service = router.into_make_service_with_connect_info::<ConnHandle>();
        let _ = axum::serve(listener, service)
            .with_graceful_shutdown(async move { shutdown.wait().await })
            .await;
    })
}
