//! An HTTP proxy between the AWS SDK and moto that fails a chosen share of
//! requests with a throttling error or a 500, as AWS does under load. Its
//! answers carry a request id of their own, as AWS's do. What it does can be
//! changed while it runs ([`FaultProxy::set`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// 400 `ThrottlingException`, which the SDK retries with backoff.
    Throttling,
    /// 500 `InternalFailure`.
    ServerError,
    /// 400 `AccessDeniedException` for every call of this `X-Amz-Target`
    /// (`secretsmanager.ListSecrets`), as for a role without that permission;
    /// other calls pass.
    Deny(&'static str),
    /// 500 `InternalFailure` for every call of this `X-Amz-Target`, as for a
    /// service that is down while STS and the others answer.
    ServerErrorFor(&'static str),
    /// 500 `InternalFailure` for every signed call to this region (its
    /// credential scope, `/eu-west-1/`), as for a region that is down.
    ServerErrorIn(&'static str),
}

impl Fault {
    /// The one call this fault is for, if it is for one call only.
    fn target(&self) -> Option<&'static str> {
        match self {
            Fault::Deny(target) | Fault::ServerErrorFor(target) | Fault::ServerErrorIn(target) => {
                Some(target)
            }
            _ => None,
        }
    }
}

/// Which requests get which fault: of every `of`, `fail` (spread evenly).
#[derive(Clone, Copy, Debug)]
struct Plan {
    fault: Option<Fault>,
    fail: usize,
    of: usize,
}

impl Plan {
    /// The fault of the `n`th request: `fail` of every `of`, spread (30 of
    /// 100 fail every third or fourth request, not 30 in a row); 1 of 2 is
    /// every even one.
    fn fault_of(&self, n: usize) -> Option<Fault> {
        let of = self.of.max(1);
        (n.wrapping_mul(self.fail) % of < self.fail.min(of))
            .then_some(self.fault)
            .flatten()
    }
}

pub struct FaultProxy {
    pub endpoint: String,
    /// Requests that reached the proxy, failed or not.
    pub seen: Arc<AtomicUsize>,
    /// Requests answered with a fault.
    pub failed: Arc<AtomicUsize>,
    plan: Arc<Mutex<Plan>>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Forwards to `upstream` (host:port); of every `of` requests, `fail`
    /// get `fault` (the first `fail` when `fail` is 1).
    pub async fn start(upstream: &str, fault: Fault, fail: usize, of: usize) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let upstream = upstream.trim_start_matches("http://").to_string();
        let seen = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let plan = Arc::new(Mutex::new(Plan {
            fault: Some(fault),
            fail,
            of,
        }));
        let (seen_in, failed_in, plan_in) = (seen.clone(), failed.clone(), plan.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let n = seen_in.fetch_add(1, Ordering::SeqCst);
                let fault = plan_in.lock().unwrap().fault_of(n);
                if fault.is_some_and(|f| f.target().is_none()) {
                    failed_in.fetch_add(1, Ordering::SeqCst);
                }
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let _ = serve(client, &upstream, fault, n).await;
                });
            }
        });
        FaultProxy {
            endpoint,
            seen,
            failed,
            plan,
            task,
        }
    }

    /// From the next request on: of every `of`, `fail` get `fault`; `None`
    /// passes everything on.
    pub fn set(&self, fault: Option<Fault>, fail: usize, of: usize) {
        *self.plan.lock().unwrap() = Plan { fault, fail, of };
    }

    /// From the next request on, `percent` of requests are throttled.
    pub fn throttle_percent(&self, percent: usize) {
        self.set(Some(Fault::Throttling), percent.min(100), 100);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One request per connection: read it, then fail it or pass it on.
async fn serve(
    client: TcpStream,
    upstream: &str,
    fault: Option<Fault>,
    n: usize,
) -> std::io::Result<()> {
    let mut client = BufReader::new(client);
    let mut head = Vec::new();
    let mut content_length = 0;
    loop {
        let mut line = String::new();
        if client.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            content_length = value.trim().parse().unwrap_or(0);
        }
        if line.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        if line == "\r\n" {
            head.extend_from_slice(b"Connection: close\r\n\r\n");
            break;
        }
        head.extend_from_slice(line.as_bytes());
    }
    let mut body = vec![0; content_length];
    client.read_exact(&mut body).await?;
    let mut client = client.into_inner();

    let targeted = match fault.and_then(|f| f.target()) {
        Some(target) => String::from_utf8_lossy(&head)
            .to_ascii_lowercase()
            .contains(&format!("x-amz-target: {}", target.to_ascii_lowercase())),
        None => false,
    };
    let in_region = match fault {
        Some(Fault::ServerErrorIn(region)) => String::from_utf8_lossy(&head)
            .to_ascii_lowercase()
            .contains(&format!("/{region}/")),
        _ => false,
    };
    let response = match fault {
        Some(Fault::ServerErrorIn(_)) if in_region => {
            canned(500, "InternalFailure", "injected by the test proxy", n)
        }
        Some(Fault::Deny(_)) if targeted => canned(
            400,
            "AccessDeniedException",
            "not authorized to perform this action (injected by the test proxy)",
            n,
        ),
        // STS speaks the query protocol: its throttling is XML, code `Throttling`.
        Some(Fault::Throttling)
            if !String::from_utf8_lossy(&head)
                .to_ascii_lowercase()
                .contains("x-amz-target:") =>
        {
            canned_query(400, "Throttling", "Rate exceeded", n)
        }
        Some(Fault::Throttling) => canned(400, "ThrottlingException", "Rate exceeded", n),
        Some(Fault::ServerError) => canned(500, "InternalFailure", "injected by the test proxy", n),
        Some(Fault::ServerErrorFor(_)) if targeted => {
            canned(500, "InternalFailure", "injected by the test proxy", n)
        }
        Some(Fault::Deny(_) | Fault::ServerErrorFor(_) | Fault::ServerErrorIn(_)) | None => {
            let mut upstream = TcpStream::connect(upstream).await?;
            upstream.write_all(&head).await?;
            upstream.write_all(&body).await?;
            let mut response = Vec::new();
            upstream.read_to_end(&mut response).await?;
            response
        }
    };
    client.write_all(&response).await?;
    client.shutdown().await
}

/// The request id every canned answer carries, as AWS's do: it must never
/// reach a status, an Event or a log line's message.
pub fn request_id(n: usize) -> String {
    format!("fa017000-0000-4000-8000-{n:012}")
}

/// The part every [`request_id`] shares.
pub const REQUEST_ID_PREFIX: &str = "fa017000-0000-4000-8000-";

fn canned(status: u16, code: &str, message: &str, n: usize) -> Vec<u8> {
    let body = format!(r#"{{"__type":"{code}","message":"{message}"}}"#);
    let reason = if status == 400 {
        "Bad Request"
    } else {
        "Internal Server Error"
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/x-amz-json-1.1\r\nx-amzn-ErrorType: {code}\r\nx-amzn-RequestId: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        request_id(n),
        body.len()
    )
    .into_bytes()
}

/// [`canned`] for a query-protocol service (STS): AWS's XML error document.
fn canned_query(status: u16, code: &str, message: &str, n: usize) -> Vec<u8> {
    let id = request_id(n);
    let body = format!(
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>{id}</RequestId></ErrorResponse>"
    );
    format!(
        "HTTP/1.1 {status} Bad Request\r\nContent-Type: text/xml\r\nx-amzn-RequestId: {id}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
