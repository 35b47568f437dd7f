//! One TCP connection to one broker: framing, correlation ids, pipelining.
//!
//! Any number of requests may be in flight. Callers encode and write under a
//! short write lock; a reader task matches each response to its request by
//! correlation id and hands the raw body back, so the reader needs no type
//! knowledge and decoding happens on the caller's task. Kafka answers
//! requests on one connection in order, but matching by id keeps us correct
//! even if a broker did not.
//!
//! **Invariant:** once the reader sees EOF or an error, every pending and
//! every later request fails with `Disconnected`; a connection never hangs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use super::error::{codes, ClientError};
use super::versions::Negotiated;
use crate::env::time::{timeout, Duration};

/// Largest response frame we accept; a bigger length prefix means a corrupt
/// or hostile stream, not a real response.
pub const RESPONSE_BYTES_MAX: usize = 512 * 1024 * 1024;

/// Connection settings.
#[derive(Debug, Clone)]
pub struct ConnectionOptions {
    pub client_id: String,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

impl Default for ConnectionOptions {
    fn default() -> Self {
        ConnectionOptions {
            client_id: "weir".to_string(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        }
    }
}

type Reply = oneshot::Sender<Result<Bytes, ClientError>>;

#[derive(Default)]
struct Pending {
    addr: String,
    waiting: BTreeMap<i32, Reply>,
    /// Set once the connection is dead; later requests fail at once.
    broken: Option<String>,
}

pub struct Connection {
    addr: String,
    options: ConnectionOptions,
    writer: tokio::sync::Mutex<WriteHalf<TcpStream>>,
    pending: Arc<Mutex<Pending>>,
    next_correlation_id: AtomicI32,
    versions: Negotiated,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Connection {
    /// Connect and negotiate API versions.
    pub async fn connect(
        addr: &str,
        options: ConnectionOptions,
    ) -> Result<Connection, ClientError> {
        let connect_err = |reason: String| ClientError::Connect {
            addr: addr.to_string(),
            reason,
        };
        let stream = match timeout(options.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(connect_err(e.to_string())),
            Err(_) => return Err(connect_err("connect timed out".to_string())),
        };
        let _ = stream.set_nodelay(true);
        let (read, write) = tokio::io::split(stream);
        let pending = Arc::new(Mutex::new(Pending {
            addr: addr.to_string(),
            ..Default::default()
        }));
        let reader = tokio::spawn(read_loop(read, pending.clone()));
        let mut conn = Connection {
            addr: addr.to_string(),
            options,
            writer: tokio::sync::Mutex::new(write),
            pending,
            next_correlation_id: AtomicI32::new(1),
            versions: Negotiated::default(),
            reader,
        };
        conn.versions = conn.negotiate().await?;
        Ok(conn)
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// False once the connection has failed; the owner should reconnect.
    pub fn is_alive(&self) -> bool {
        self.pending.lock().expect("pending lock").broken.is_none()
    }

    pub fn versions(&self) -> &Negotiated {
        &self.versions
    }

    /// The negotiated version for `api`, or `Unsupported`.
    pub fn version_for(&self, api: ApiKey) -> Result<i16, ClientError> {
        self.versions
            .version(api)
            .ok_or_else(|| ClientError::Unsupported(format!("{api:?}")))
    }

    async fn negotiate(&self) -> Result<Negotiated, ClientError> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("weir"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        // A broker older than v3 answers UNSUPPORTED_VERSION in the v0 layout,
        // which may not even decode as v3: either way, retry at v0.
        let response = match self.send_version(&request, 3).await {
            Ok(r) if r.error_code != codes::UNSUPPORTED_VERSION => r,
            Ok(_) | Err(ClientError::Protocol(_)) => self.send_version(&request, 0).await?,
            Err(e) => return Err(e),
        };
        ClientError::check(response.error_code)?;
        let table: Vec<(i16, i16, i16)> = response
            .api_keys
            .iter()
            .map(|k| (k.api_key, k.min_version, k.max_version))
            .collect();
        Ok(Negotiated::from_broker(&table))
    }

    /// Send at the negotiated version and wait for the response.
    pub async fn send<R: Request>(&self, request: &R) -> Result<R::Response, ClientError> {
        let version = self.version_for(api_key::<R>()?)?;
        self.send_version(request, version).await
    }

    /// Send at an explicit version and wait for the response.
    pub async fn send_version<R: Request>(
        &self,
        request: &R,
        version: i16,
    ) -> Result<R::Response, ClientError> {
        self.start_version(request, version).await?.wait().await
    }

    /// Write the request now (at the negotiated version) and return a handle
    /// for its response. Requests started one after another from one task
    /// reach the broker in that order: the idempotent producer relies on it.
    pub async fn start<R: Request>(&self, request: &R) -> Result<PendingResponse<R>, ClientError> {
        let version = self.version_for(api_key::<R>()?)?;
        self.start_version(request, version).await
    }

    pub async fn start_version<R: Request>(
        &self,
        request: &R,
        version: i16,
    ) -> Result<PendingResponse<R>, ClientError> {
        let (correlation_id, rx) = self.write_request(request, version, true).await?;
        Ok(PendingResponse {
            rx: rx.expect("a reply channel was requested"),
            version,
            correlation_id,
            addr: self.addr.clone(),
            request_timeout: self.options.request_timeout,
            pending: self.pending.clone(),
            _request: std::marker::PhantomData,
        })
    }

    /// Write a request that gets no response (Produce with acks=0).
    pub async fn send_oneway<R: Request>(&self, request: &R) -> Result<(), ClientError> {
        let version = self.version_for(api_key::<R>()?)?;
        self.write_request(request, version, false).await?;
        Ok(())
    }

    async fn write_request<R: Request>(
        &self,
        request: &R,
        version: i16,
        expect_reply: bool,
    ) -> Result<(i32, Option<oneshot::Receiver<Result<Bytes, ClientError>>>), ClientError> {
        let key = api_key::<R>()?;
        let correlation_id = self.next_correlation_id.fetch_add(1, Ordering::Relaxed);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_string(self.options.client_id.clone())));
        let header_version = key.request_header_version(version);
        let size = header
            .compute_size(header_version)
            .and_then(|h| request.compute_size(version).map(|b| h + b))
            .map_err(|e| ClientError::Protocol(format!("encode {key:?} v{version}: {e}")))?;
        let mut frame = BytesMut::with_capacity(4 + size);
        frame.put_i32(size as i32);
        header
            .encode(&mut frame, header_version)
            .and_then(|_| request.encode(&mut frame, version))
            .map_err(|e| ClientError::Protocol(format!("encode {key:?} v{version}: {e}")))?;

        let rx = {
            let mut pending = self.pending.lock().expect("pending lock");
            if let Some(reason) = &pending.broken {
                return Err(ClientError::Disconnected {
                    addr: self.addr.clone(),
                    reason: reason.clone(),
                });
            }
            if expect_reply {
                let (tx, rx) = oneshot::channel();
                pending.waiting.insert(correlation_id, tx);
                Some(rx)
            } else {
                None
            }
        };
        let mut writer = self.writer.lock().await;
        // flush: a no-op on real TCP, but madsim's stream only sends on flush.
        let written = match writer.write_all(&frame).await {
            Ok(()) => writer.flush().await,
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            drop(writer);
            fail_all(&self.pending, format!("write: {e}"));
            return Err(self.disconnected(&e.to_string()));
        }
        Ok((correlation_id, rx))
    }

    fn disconnected(&self, reason: &str) -> ClientError {
        ClientError::Disconnected {
            addr: self.addr.clone(),
            reason: reason.to_string(),
        }
    }
}

/// A written request whose response has not been read yet.
pub struct PendingResponse<R: Request> {
    rx: oneshot::Receiver<Result<Bytes, ClientError>>,
    version: i16,
    correlation_id: i32,
    addr: String,
    request_timeout: Duration,
    pending: Arc<Mutex<Pending>>,
    _request: std::marker::PhantomData<fn() -> R>,
}

impl<R: Request> PendingResponse<R> {
    /// Wait for and decode the response (within the request timeout).
    pub async fn wait(self) -> Result<R::Response, ClientError> {
        let body = match timeout(self.request_timeout, self.rx).await {
            Ok(Ok(result)) => result?,
            Ok(Err(_)) => {
                return Err(ClientError::Disconnected {
                    addr: self.addr,
                    reason: "reader stopped".to_string(),
                })
            }
            Err(_) => {
                // As Kafka's NetworkClient does: a request that times out
                // closes its connection. The broker may be dead, paused or
                // cut off, and a fresh connect fails fast where the old
                // stream would only hold every later request too; the owner
                // reconnects (to the same or, after a metadata refresh,
                // another broker).
                fail_all(
                    &self.pending,
                    format!("request {} timed out", self.correlation_id),
                );
                return Err(ClientError::Timeout {
                    what: format!("{:?} request to {}", api_key::<R>()?, self.addr),
                    ms: self.request_timeout.as_millis() as u64,
                });
            }
        };
        decode_response::<R>(body, self.version, self.correlation_id)
    }
}

fn api_key<R: Request>() -> Result<ApiKey, ClientError> {
    ApiKey::try_from(R::KEY)
        .map_err(|_| ClientError::Protocol(format!("unknown api key {}", R::KEY)))
}

fn decode_response<R: Request>(
    mut body: Bytes,
    version: i16,
    correlation_id: i32,
) -> Result<R::Response, ClientError> {
    let header_version = <R::Response as HeaderVersion>::header_version(version);
    let header = ResponseHeader::decode(&mut body, header_version)
        .map_err(|e| ClientError::Protocol(format!("response header: {e}")))?;
    if header.correlation_id != correlation_id {
        return Err(ClientError::Protocol(format!(
            "correlation id {} does not match request {correlation_id}",
            header.correlation_id
        )));
    }
    <R::Response as Decodable>::decode(&mut body, version)
        .map_err(|e| ClientError::Protocol(format!("decode response v{version}: {e}")))
}

fn fail_all(pending: &Mutex<Pending>, reason: String) {
    let mut p = pending.lock().expect("pending lock");
    if p.broken.is_none() {
        p.broken = Some(reason.clone());
    }
    for (_, tx) in std::mem::take(&mut p.waiting) {
        let _ = tx.send(Err(ClientError::Disconnected {
            addr: p.addr.clone(),
            reason: reason.clone(),
        }));
    }
}

async fn read_loop(mut read: ReadHalf<TcpStream>, pending: Arc<Mutex<Pending>>) {
    let reason = loop {
        let mut len = [0u8; 4];
        if let Err(e) = read.read_exact(&mut len).await {
            break format!("read: {e}");
        }
        let len = i32::from_be_bytes(len);
        if len < 4 || len as usize > RESPONSE_BYTES_MAX {
            break format!("bad response frame length {len}");
        }
        let mut frame = BytesMut::zeroed(len as usize);
        if let Err(e) = read.read_exact(&mut frame).await {
            break format!("read: {e}");
        }
        let frame = frame.freeze();
        let correlation_id = (&frame[..4]).get_i32();
        let reply = pending
            .lock()
            .expect("pending lock")
            .waiting
            .remove(&correlation_id);
        // A reply nobody waits for belongs to a request that timed out: drop it.
        if let Some(tx) = reply {
            let _ = tx.send(Ok(frame));
        }
    };
    fail_all(&pending, reason);
}
