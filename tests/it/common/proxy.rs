//! A small HTTP/1.1 fault proxy for the Azure tests: it sits between the executor and
//! Azurite and, per request, forwards it, answers 503, drops the connection before
//! forwarding, or plays dead; it can also hold every request for a fixed time first, as a
//! store in another building would (`set_delay`). Each forwarded request is sent with `Connection: close`, so
//! every request opens its own connection and the plan decides about each one.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Forward,
    /// Answer `503 Server Busy` without forwarding (the request never reaches the store).
    Unavailable,
    /// Close the connection without an answer, before forwarding.
    Drop,
}

type Plan = Box<dyn FnMut(usize, &str) -> Action + Send>;

pub struct FaultProxy {
    pub port: u16,
    plan: Arc<Mutex<Plan>>,
    /// Request lines (`PUT /devstoreaccount1/...`) that were not forwarded.
    pub faulted: Arc<Mutex<Vec<String>>>,
    delay_ms: Arc<AtomicU64>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`127.0.0.1:port`) on a free local port.
    pub async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let plan: Arc<Mutex<Plan>> = Arc::new(Mutex::new(Box::new(|_, _| Action::Forward)));
        let requests = Arc::new(AtomicUsize::new(0));
        let faulted = Arc::new(Mutex::new(Vec::new()));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let (p, r, f, d) = (plan.clone(), requests, faulted.clone(), delay_ms.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (p, r, f, up) = (p.clone(), r.clone(), f.clone(), upstream.clone());
                let delay = std::time::Duration::from_millis(d.load(Ordering::SeqCst));
                tokio::spawn(async move {
                    let _ = serve(client, up, p, r, f, delay).await;
                });
            }
        });
        Self {
            port,
            plan,
            faulted,
            delay_ms,
        }
    }

    /// Replaces the plan: called with the request's number (from 0) and its request line.
    pub fn set_plan(&self, plan: impl FnMut(usize, &str) -> Action + Send + 'static) {
        *self.plan.lock().unwrap() = Box::new(plan);
    }

    /// Holds every later request this long before acting on it (latency of a real store).
    pub fn set_delay(&self, delay: std::time::Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn faulted(&self) -> Vec<String> {
        self.faulted.lock().unwrap().clone()
    }
}

async fn serve(
    mut client: TcpStream,
    upstream: String,
    plan: Arc<Mutex<Plan>>,
    requests: Arc<AtomicUsize>,
    faulted: Arc<Mutex<Vec<String>>>,
    delay: std::time::Duration,
) -> std::io::Result<()> {
    // The request head, up to the blank line.
    let mut buf = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 8192];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let request_line = head.lines().next().unwrap_or_default().to_string();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let n = requests.fetch_add(1, Ordering::SeqCst);
    let action = (plan.lock().unwrap())(n, &request_line);
    if action != Action::Forward {
        faulted.lock().unwrap().push(request_line.clone());
    }
    match action {
        Action::Drop => return Ok(()),
        Action::Unavailable => {
            let body = "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>ServerBusy</Code><Message>The server is busy.</Message></Error>";
            let resp = format!(
                "HTTP/1.1 503 Server Busy\r\nx-ms-error-code: ServerBusy\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            client.write_all(resp.as_bytes()).await?;
            client.shutdown().await?;
            return Ok(());
        }
        Action::Forward => {}
    }
    let mut lines: Vec<&str> = head[..head.len() - 4]
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    lines.push("Connection: close");
    let new_head = format!("{}\r\n\r\n", lines.join("\r\n"));
    let mut up = TcpStream::connect(&upstream).await?;
    up.write_all(new_head.as_bytes()).await?;
    // The rest of what the client sent (its body) is piped as it comes; the answer is piped
    // back until the store closes the connection.
    up.write_all(&buf[head_end..]).await?;
    let (mut cr, mut cw) = client.into_split();
    let (mut ur, mut uw) = up.into_split();
    let to_up = tokio::spawn(async move { tokio::io::copy(&mut cr, &mut uw).await });
    tokio::io::copy(&mut ur, &mut cw).await?;
    cw.shutdown().await?;
    to_up.abort();
    Ok(())
}
