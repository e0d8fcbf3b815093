//! Counters for benchmarks: requests by client, verb and resource, and per
//! client the open connections and requests in flight, with their peaks.
//!
//! A client is named by its `User-Agent` up to the first `/` (`unknown`
//! without one), as the server names field managers. A connection belongs to
//! the client of its first request; until then it is counted as unclaimed.
//! A request is in flight until its response head is sent, so a watch counts
//! while it is being set up, not while it streams.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use axum::Router;
use axum::extract::connect_info::{ConnectInfo, Connected, IntoMakeServiceWithConnectInfo};
use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::Response;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// What a benchmark reads: a copy of every counter at one moment.
#[derive(Clone, Debug, Default)]
pub struct StatsSnapshot {
    /// (client, verb, resource) -> requests. Verbs as the real server's audit
    /// log names them: get, list, watch, create, update, patch, delete,
    /// deletecollection; resources as `plural[.group][/subresource]`, and
    /// `discovery` for /api, /apis, /openapi, /version and health paths.
    pub requests: BTreeMap<(String, String, String), u64>,
    pub clients: BTreeMap<String, ClientLoad>,
    /// Connections accepted that have not sent a request yet.
    pub unclaimed: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientLoad {
    pub open_connections: u64,
    pub peak_connections: u64,
    /// Connections this client opened, ever.
    pub connections_opened: u64,
    pub in_flight: u64,
    pub peak_in_flight: u64,
}

#[derive(Default)]
pub struct Stats {
    counters: Mutex<StatsSnapshot>,
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        self.counters.lock().unwrap().clone()
    }

    /// Starts new peaks from the current levels (a benchmark phase begins).
    pub fn reset_peaks(&self) {
        let mut counters = self.counters.lock().unwrap();
        for load in counters.clients.values_mut() {
            load.peak_connections = load.open_connections;
            load.peak_in_flight = load.in_flight;
        }
    }

    fn claim(&self, client: &str) {
        let mut counters = self.counters.lock().unwrap();
        counters.unclaimed = counters.unclaimed.saturating_sub(1);
        let load = counters.clients.entry(client.to_string()).or_default();
        load.open_connections += 1;
        load.connections_opened += 1;
        load.peak_connections = load.peak_connections.max(load.open_connections);
    }

    fn closed(&self, client: Option<&String>) {
        let mut counters = self.counters.lock().unwrap();
        match client.and_then(|c| counters.clients.get_mut(c)) {
            Some(load) => load.open_connections = load.open_connections.saturating_sub(1),
            None => counters.unclaimed = counters.unclaimed.saturating_sub(1),
        }
    }

    fn started(&self, client: &str, verb: &str, resource: String) {
        let mut counters = self.counters.lock().unwrap();
        *counters
            .requests
            .entry((client.to_string(), verb.to_string(), resource))
            .or_default() += 1;
        let load = counters.clients.entry(client.to_string()).or_default();
        load.in_flight += 1;
        load.peak_in_flight = load.peak_in_flight.max(load.in_flight);
    }

    fn finished(&self, client: &str) {
        if let Some(load) = self.counters.lock().unwrap().clients.get_mut(client) {
            load.in_flight = load.in_flight.saturating_sub(1);
        }
    }
}

/// One accepted connection: whose it is, once its first request says.
pub struct Connection {
    client: OnceLock<String>,
    stats: Arc<Stats>,
}

/// A TCP listener that counts the connections it hands out.
pub struct CountingListener {
    listener: TcpListener,
    stats: Arc<Stats>,
}

impl CountingListener {
    pub fn new(listener: TcpListener, stats: Arc<Stats>) -> Self {
        Self { listener, stats }
    }
}

impl Listener for CountingListener {
    type Io = CountedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, address) = Listener::accept(&mut self.listener).await;
        self.stats.counters.lock().unwrap().unclaimed += 1;
        let connection = Arc::new(Connection {
            client: OnceLock::new(),
            stats: self.stats.clone(),
        });
        (CountedStream { stream, connection }, address)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// A connection's stream; dropping it (the connection closed) counts it out.
pub struct CountedStream {
    stream: TcpStream,
    connection: Arc<Connection>,
}

impl Drop for CountedStream {
    fn drop(&mut self) {
        self.connection.stats.closed(self.connection.client.get());
    }
}

impl AsyncRead for CountedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// What a request handler learns about its connection.
#[derive(Clone)]
pub struct ConnectionInfo(Arc<Connection>);

impl Connected<IncomingStream<'_, CountingListener>> for ConnectionInfo {
    fn connect_info(stream: IncomingStream<'_, CountingListener>) -> Self {
        ConnectionInfo(stream.io().connection.clone())
    }
}

/// The router with every request counted, ready for `axum::serve` on a
/// [`CountingListener`].
pub fn counted(
    router: Router,
    stats: Arc<Stats>,
) -> IntoMakeServiceWithConnectInfo<Router, ConnectionInfo> {
    router
        .layer(axum::middleware::from_fn_with_state(stats, count))
        .into_make_service_with_connect_info::<ConnectionInfo>()
}

async fn count(
    State(stats): State<Arc<Stats>>,
    ConnectInfo(ConnectionInfo(connection)): ConnectInfo<ConnectionInfo>,
    request: Request,
    next: Next,
) -> Response {
    let client = request
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|agent| agent.split('/').next())
        .filter(|name| !name.is_empty())
        .unwrap_or("unknown")
        .to_string();
    if connection.client.set(client.clone()).is_ok() {
        stats.claim(&client);
    }
    let (verb, resource) = describe(
        request.method(),
        request.uri().path(),
        request.uri().query().unwrap_or_default(),
    );
    stats.started(&client, verb, resource);
    let response = next.run(request).await;
    stats.finished(&client);
    response
}

/// The audit-log verb and the resource a request is for.
fn describe(method: &Method, path: &str, query: &str) -> (&'static str, String) {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match segments.as_slice() {
        ["api", _version, rest @ ..] if !rest.is_empty() => ("", rest),
        ["apis", group, _version, rest @ ..] if !rest.is_empty() => (*group, rest),
        _ => return (verb(method, true, query), "discovery".to_string()),
    };
    // namespaces/NS/PLURAL[/NAME[/SUB]], or PLURAL[/NAME[/SUB]] (namespaces itself included).
    let rest = match rest {
        ["namespaces", _namespace, tail @ ..] if !tail.is_empty() => tail,
        other => other,
    };
    let plural = rest.first().copied().unwrap_or_default();
    let named = rest.len() >= 2;
    let mut resource = if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    };
    if let Some(subresource) = rest.get(2) {
        resource = format!("{resource}/{subresource}");
    }
    (verb(method, named, query), resource)
}

/// RBAC's verb, as the audit log names it.
fn verb(method: &Method, named: bool, query: &str) -> &'static str {
    let watching = query
        .split('&')
        .any(|pair| pair == "watch=true" || pair == "watch=1");
    super::audit::verb(method.as_str(), named, watching)
}
