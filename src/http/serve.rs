//! Serving a router with the limits every deployment needs: timeouts for slow clients,
//! caps on open connections, and the client address behind trusted proxies.
//!
//! The HTTP itself is hyper's (HTTP/1.1, through hyper-util); this module only accepts
//! connections, counts them, watches them for idleness, and sets tower-http's body
//! timeout.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::HeaderMap;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use ipnet::IpNet;
use tokio::net::TcpListener;
use tower::ServiceExt as _;
use tower_http::timeout::TimeoutBody;

/// How long a client may take to send a request's headers, and how long a request body
/// may stall, by default.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Most connections open at once from one client address, by default.
pub const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: usize = 256;
/// Most connections open at once in all, by default (lowered to three quarters of the
/// process's open-file limit when that is lower).
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// The address of the client a request came from, which [`Server`] puts in each request's
/// extensions: the socket's peer or, when the peer is a trusted proxy, the right-most
/// `X-Forwarded-For` entry that is not one.
///
/// [`Auth`](super::Auth) counts failed authentications by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub IpAddr);

/// Serves a [`Router`] over HTTP/1.1 with the limits of a public deployment.
///
/// - A connection whose request headers have not all arrived within the header read
///   timeout is closed. The clock starts when the connection opens and again after each
///   response, so the same timeout closes idle keep-alive connections.
/// - A request body that stalls (no bytes) for the read timeout ends the request with
///   `408` (a body the handler reads) and the connection.
/// - Open connections are capped per client address and in all; a connection over a cap
///   is closed at accept, so one address holding stalled sockets cannot lock others out.
///   Trusted proxies are not capped per address (they carry many clients).
/// - Each request carries a [`ClientAddr`] and axum's [`ConnectInfo`] of the peer.
///
/// ```no_run
/// use jobworks::http::{JobsApi, Server, StaticCredentials};
/// # async fn _run(engine: jobworks::Engine) -> std::io::Result<()> {
/// let app = axum::Router::new().nest("/v1", JobsApi::new(engine, StaticCredentials::new()).router());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// Server::new()
///     .trusted_proxies(["10.0.0.0/8".parse().unwrap()])
///     .serve_with_shutdown(listener, app, async { let _ = tokio::signal::ctrl_c().await; })
///     .await
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Server {
    header_read_timeout: Duration,
    body_read_timeout: Duration,
    max_connections: usize,
    max_connections_per_client: usize,
    trusted_proxies: Arc<[IpNet]>,
}

impl Default for Server {
    fn default() -> Self {
        Self::new()
    }
}

impl Server {
    /// A server with the default limits.
    pub fn new() -> Self {
        let max = match open_file_limit() {
            Some(files) => DEFAULT_MAX_CONNECTIONS.min((files / 4 * 3).max(1)),
            None => DEFAULT_MAX_CONNECTIONS,
        };
        Server {
            header_read_timeout: DEFAULT_READ_TIMEOUT,
            body_read_timeout: DEFAULT_READ_TIMEOUT,
            max_connections: max,
            max_connections_per_client: DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
            trusted_proxies: Arc::new([]),
        }
    }

    /// How long a request's headers may take to arrive, and a connection may stay idle
    /// between requests.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// How long a request body may go without sending a byte.
    pub fn body_read_timeout(mut self, timeout: Duration) -> Self {
        self.body_read_timeout = timeout;
        self
    }

    /// Most connections open at once in all.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Most connections open at once from one client address.
    pub fn max_connections_per_client(mut self, n: usize) -> Self {
        self.max_connections_per_client = n.max(1);
        self
    }

    /// The proxies (addresses or networks) whose `X-Forwarded-For` names the client.
    pub fn trusted_proxies(mut self, proxies: impl IntoIterator<Item = IpNet>) -> Self {
        self.trusted_proxies = proxies.into_iter().collect();
        self
    }

    /// Serves `app` on `listener` until the process ends.
    ///
    /// # Errors
    /// None in practice: failed accepts (out of file descriptors, say) are logged and
    /// retried.
    pub async fn serve(self, listener: TcpListener, app: Router) -> io::Result<()> {
        self.serve_with_shutdown(listener, app, std::future::pending())
            .await
    }

    /// Serves `app` on `listener` until `signal` completes, then stops accepting, lets
    /// requests in flight finish and closes idle connections.
    ///
    /// # Errors
    /// As [`serve`](Self::serve).
    pub async fn serve_with_shutdown(
        self,
        listener: TcpListener,
        app: Router,
        signal: impl Future<Output = ()>,
    ) -> io::Result<()> {
        // hyper's own header timeout arms a timer for every request (measured: 17 % of the
        // throughput of small polls); a watch per connection re-arms one only when it fires.
        let http = hyper::server::conn::http1::Builder::new();
        let counts = Arc::new(Counts::default());
        let graceful = GracefulShutdown::new();
        let mut signal = std::pin::pin!(signal);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of descriptors, or a connection reset before it was
                        // accepted: wait a little instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut signal => break,
            };
            let ip = peer.ip().to_canonical();
            let per_client = if self.is_trusted(ip) {
                usize::MAX
            } else {
                self.max_connections_per_client
            };
            let Some(slot) = Slot::take(&counts, ip, self.max_connections, per_client) else {
                tracing::debug!(%peer, "connection refused: over its cap");
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let server = self.clone();
            let app = app.clone();
            let watch = Arc::new(Watch::new());
            let watched = watch.clone();
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let request = server.prepare(request, peer);
                let busy = Busy::begin(&watched);
                let response = app.clone().oneshot(request);
                async move {
                    let response = response.await?;
                    Ok::<_, std::convert::Infallible>(
                        response.map(|body| Body::new(Tracked { body, _busy: busy })),
                    )
                }
            });
            let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
            let timeout = self.header_read_timeout;
            tokio::spawn(async move {
                let _slot = slot;
                tokio::select! {
                    ended = connection => if let Err(e) = ended {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    },
                    () = watch.idle_for(timeout) => {
                        tracing::debug!(%peer, "connection closed: no request within {timeout:?}");
                    }
                }
            });
        }
        drop(listener);
        graceful.shutdown().await;
        Ok(())
    }

    /// The request as the router sees it: its body under the read timeout, and the
    /// client's address.
    fn prepare(&self, request: Request<Incoming>, peer: SocketAddr) -> Request {
        let timeout = self.body_read_timeout;
        let mut request = request.map(|body| Body::new(TimeoutBody::new(timeout, body)));
        let client = self.client_addr(peer.ip().to_canonical(), request.headers());
        let extensions = request.extensions_mut();
        extensions.insert(ClientAddr(client));
        extensions.insert(ConnectInfo(peer));
        request
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }

    /// The peer, or behind trusted proxies the right-most forwarded address that is not
    /// one (the left-most, if all are; the last good one before an entry that does not
    /// parse).
    fn client_addr(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.is_trusted(peer) {
            return peer;
        }
        let mut client = peer;
        let headers = headers.get_all("x-forwarded-for").iter().rev();
        for value in headers {
            let Ok(text) = value.to_str() else {
                return client;
            };
            for entry in text.rsplit(',') {
                let Some(ip) = parse_forwarded(entry.trim()) else {
                    return client;
                };
                client = ip;
                if !self.is_trusted(ip) {
                    return ip;
                }
            }
        }
        client
    }
}

/// Whether a connection is serving a request, and since when it has not been.
#[derive(Debug)]
struct Watch {
    opened: Instant,
    busy: AtomicUsize,
    /// When the last response ended (or the connection opened), in nanoseconds after
    /// `opened`.
    idle_since: AtomicU64,
}

impl Watch {
    fn new() -> Self {
        Watch {
            opened: Instant::now(),
            busy: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Completes once the connection has had no request in flight for `timeout`: no
    /// complete request head within it after opening or after its last response.
    async fn idle_for(&self, timeout: Duration) {
        loop {
            let wait = if self.busy.load(Ordering::Acquire) > 0 {
                timeout
            } else {
                let since = self.idle_since.load(Ordering::Acquire);
                let idle = Duration::from_nanos(self.now().saturating_sub(since));
                match timeout.checked_sub(idle) {
                    Some(left) if !left.is_zero() => left,
                    _ => return,
                }
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// One request in flight on a connection, until its response body is done or dropped.
#[derive(Debug)]
struct Busy(Arc<Watch>);

impl Busy {
    fn begin(watch: &Arc<Watch>) -> Self {
        watch.busy.fetch_add(1, Ordering::AcqRel);
        Busy(watch.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.idle_since.store(self.0.now(), Ordering::Release);
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its connection marked busy until it is done.
struct Tracked {
    body: Body,
    _busy: Busy,
}

impl HttpBody for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// An `X-Forwarded-For` entry: an address, possibly with a port.
fn parse_forwarded(entry: &str) -> Option<IpAddr> {
    let ip = entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))?;
    Some(ip.to_canonical())
}

/// The soft limit on open files of this process, where the platform tells it.
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Open connections, in all and per client address.
#[derive(Debug, Default)]
struct Counts {
    inner: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One open connection, counted until dropped.
#[derive(Debug)]
struct Slot {
    counts: Arc<Counts>,
    ip: IpAddr,
}

impl Slot {
    fn take(counts: &Arc<Counts>, ip: IpAddr, max: usize, per_client: usize) -> Option<Slot> {
        let mut guard = counts.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (total, by_ip) = &mut *guard;
        let mine = by_ip.get(&ip).copied().unwrap_or(0);
        if *total >= max || mine >= per_client {
            return None;
        }
        *total += 1;
        by_ip.insert(ip, mine + 1);
        Some(Slot {
            counts: counts.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut guard = self.counts.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (total, by_ip) = &mut *guard;
        *total -= 1;
        if let Some(n) = by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                by_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_client_is_the_right_most_untrusted_forwarded_address() {
        let server = Server::new().trusted_proxies(["10.0.0.0/8".parse().unwrap()]);
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let h = forwarded(&["6.6.6.6, 1.2.3.4", "10.9.9.9"]);
        assert_eq!(
            server.client_addr(proxy, &h),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
        // An untrusted peer's header is not believed.
        let stranger: IpAddr = "5.5.5.5".parse().unwrap();
        assert_eq!(server.client_addr(stranger, &h), stranger);
        // Only proxies: the left-most; garbage stops the walk at the last good hop.
        let h = forwarded(&["10.0.0.7, 10.0.0.8"]);
        assert_eq!(
            server.client_addr(proxy, &h),
            "10.0.0.7".parse::<IpAddr>().unwrap()
        );
        let h = forwarded(&["1.2.3.4, nonsense, 10.0.0.8"]);
        assert_eq!(
            server.client_addr(proxy, &h),
            "10.0.0.8".parse::<IpAddr>().unwrap()
        );
        let h = forwarded(&["[2001:db8::1]:443"]);
        assert_eq!(
            server.client_addr(proxy, &h),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        // Without trusted proxies the peer is the client.
        assert_eq!(Server::new().client_addr(proxy, &h), proxy);
    }

    #[test]
    fn slots_are_capped_per_address_and_in_all() {
        let counts = Arc::new(Counts::default());
        let (a, b): (IpAddr, IpAddr) = ("1.1.1.1".parse().unwrap(), "2.2.2.2".parse().unwrap());
        let first: Vec<Slot> = (0..2)
            .filter_map(|_| Slot::take(&counts, a, 3, 2))
            .collect();
        assert_eq!(first.len(), 2);
        assert!(Slot::take(&counts, a, 3, 2).is_none(), "per address");
        let other = Slot::take(&counts, b, 3, 2).expect("another address");
        assert!(Slot::take(&counts, b, 3, 2).is_none(), "in all");
        drop(first);
        drop(other);
        assert!(counts.inner.lock().unwrap().1.is_empty());
        assert!(Slot::take(&counts, a, 3, 2).is_some());
    }
}
