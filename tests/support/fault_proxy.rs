//! An HTTP proxy between the AWS SDK and moto that fails a chosen share of
//! requests with a throttling error or a 500, as AWS does under load.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

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
}

impl Fault {
    /// The one call this fault is for, if it is for one call only.
    fn target(&self) -> Option<&'static str> {
        match self {
            Fault::Deny(target) | Fault::ServerErrorFor(target) => Some(target),
            _ => None,
        }
    }
}

pub struct FaultProxy {
    pub endpoint: String,
    /// Requests that reached the proxy, failed or not.
    pub seen: Arc<AtomicUsize>,
    /// Requests answered with a fault.
    pub failed: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Forwards to `upstream` (host:port); of every `of` requests, the first
    /// `fail` get `fault`.
    pub async fn start(upstream: &str, fault: Fault, fail: usize, of: usize) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let upstream = upstream.trim_start_matches("http://").to_string();
        let seen = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let (seen_in, failed_in) = (seen.clone(), failed.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let n = seen_in.fetch_add(1, Ordering::SeqCst);
                let fault = (n % of < fail).then_some(fault);
                if fault.is_some_and(|f| f.target().is_none()) {
                    failed_in.fetch_add(1, Ordering::SeqCst);
                }
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let _ = serve(client, &upstream, fault).await;
                });
            }
        });
        FaultProxy {
            endpoint,
            seen,
            failed,
            task,
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One request per connection: read it, then fail it or pass it on.
async fn serve(client: TcpStream, upstream: &str, fault: Option<Fault>) -> std::io::Result<()> {
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
    let response = match fault {
        Some(Fault::Deny(_)) if targeted => canned(
            400,
            "AccessDeniedException",
            "not authorized to perform this action (injected by the test proxy)",
        ),
        Some(Fault::Throttling) => canned(400, "ThrottlingException", "Rate exceeded"),
        Some(Fault::ServerError) => canned(500, "InternalFailure", "injected by the test proxy"),
        Some(Fault::ServerErrorFor(_)) if targeted => {
            canned(500, "InternalFailure", "injected by the test proxy")
        }
        Some(Fault::Deny(_) | Fault::ServerErrorFor(_)) | None => {
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

fn canned(status: u16, code: &str, message: &str) -> Vec<u8> {
    let body = format!(r#"{{"__type":"{code}","message":"{message}"}}"#);
    let reason = if status == 400 {
        "Bad Request"
    } else {
        "Internal Server Error"
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/x-amz-json-1.1\r\nx-amzn-ErrorType: {code}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
