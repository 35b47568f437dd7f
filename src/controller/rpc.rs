//! The client side of controller RPCs (kind 2 requests, kind 3 responses,
//! see `transport`): one cached connection per address, requests pipelined
//! and paired with responses by correlation id.
//!
//! A connection that fails (connect, write, read, a bad frame) is dropped
//! from the cache and every call waiting on it fails; the next call
//! reconnects. A call that times out also retires its connection (calls in
//! flight on it go on), so a half-open connection to a vanished controller
//! is never reused; a late response is discarded.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use super::transport::{
    decode_rpc_payload, encode_rpc_frame, read_frame, FRAME_BYTES_MAX, FRAME_KIND_REQUEST,
    FRAME_KIND_RESPONSE,
};
use crate::env::time::{timeout, Duration};

/// Requests queued per connection before callers wait.
const REQUEST_QUEUE_MAX: usize = 1024;

type Waiters = Arc<Mutex<BTreeMap<u32, oneshot::Sender<Vec<u8>>>>>;

struct Conn {
    requests: mpsc::Sender<Vec<u8>>,
    waiters: Waiters,
    next_correlation: AtomicU32,
    /// Set (before the waiters are failed) once the connection is unusable.
    closed: Arc<AtomicBool>,
}

/// RPC client for controller listeners; cheap to clone (shares connections).
#[derive(Clone, Default)]
pub struct RpcClient {
    conns: Arc<Mutex<BTreeMap<String, Arc<Conn>>>>,
}

impl std::fmt::Debug for RpcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcClient").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RpcClient {
    pub fn new() -> Self {
        Self::default()
    }

    /// Send `request` to the controller listener at `addr` and wait for its
    /// response, at most `timeout` in all (connecting included).
    pub async fn call(
        &self,
        addr: &str,
        request: Vec<u8>,
        timeout_after: Duration,
    ) -> io::Result<Vec<u8>> {
        if request.len() + 4 >= FRAME_BYTES_MAX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "controller request over the frame limit",
            ));
        }
        let used: Mutex<Option<Arc<Conn>>> = Mutex::new(None);
        match timeout(timeout_after, self.call_inner(addr, request, &used)).await {
            Ok(r) => r,
            Err(_) => {
                if let Some(conn) = lock(&used).take() {
                    self.forget(addr, &conn);
                }
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("controller rpc to {addr} timed out"),
                ))
            }
        }
    }

    async fn call_inner(
        &self,
        addr: &str,
        request: Vec<u8>,
        used: &Mutex<Option<Arc<Conn>>>,
    ) -> io::Result<Vec<u8>> {
        let conn = self.connection(addr).await?;
        *lock(used) = Some(conn.clone());
        let corr = conn.next_correlation.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&conn.waiters).insert(corr, tx);
        // Removes the waiter however this call ends (timeout included).
        struct Forget<'a>(&'a Waiters, u32);
        impl Drop for Forget<'_> {
            fn drop(&mut self) {
                lock(self.0).remove(&self.1);
            }
        }
        let _forget = Forget(&conn.waiters, corr);
        if conn.closed.load(Ordering::SeqCst) {
            self.forget(addr, &conn);
            return Err(broken(addr));
        }
        let frame = encode_rpc_frame(FRAME_KIND_REQUEST, corr, &request);
        if conn.requests.send(frame).await.is_err() {
            self.forget(addr, &conn);
            return Err(broken(addr));
        }
        match rx.await {
            Ok(response) => Ok(response),
            Err(_) => {
                self.forget(addr, &conn);
                Err(broken(addr))
            }
        }
    }

    fn forget(&self, addr: &str, conn: &Arc<Conn>) {
        let mut conns = lock(&self.conns);
        if conns.get(addr).is_some_and(|c| Arc::ptr_eq(c, conn)) {
            conns.remove(addr);
        }
    }

    async fn connection(&self, addr: &str) -> io::Result<Arc<Conn>> {
        if let Some(c) = lock(&self.conns).get(addr) {
            if !c.closed.load(Ordering::SeqCst) {
                return Ok(c.clone());
            }
        }
        let stream = TcpStream::connect(addr).await?;
        let _ = stream.set_nodelay(true);
        let (mut read, mut write) = tokio::io::split(stream);
        let (req_tx, mut req_rx) = mpsc::channel::<Vec<u8>>(REQUEST_QUEUE_MAX);
        let waiters: Waiters = Arc::default();
        let closed = Arc::new(AtomicBool::new(false));
        let conn = Arc::new(Conn {
            requests: req_tx,
            waiters: waiters.clone(),
            next_correlation: AtomicU32::new(0),
            closed: closed.clone(),
        });
        // The reader ends on EOF, an error or a bad frame; dropping the
        // waiters then fails every call in flight, and closing the request
        // channel stops the writer and takes the connection out of use.
        let (reader_done_tx, mut reader_done) = oneshot::channel::<()>();
        let reader_closed = closed.clone();
        let reader_waiters = waiters.clone();
        let reader = tokio::spawn(async move {
            loop {
                let Ok(Some((kind, payload))) = read_frame(&mut read).await else {
                    break;
                };
                if kind != FRAME_KIND_RESPONSE {
                    break;
                }
                let Ok((corr, body)) = decode_rpc_payload(&payload) else {
                    break;
                };
                if let Some(tx) = lock(&reader_waiters).remove(&corr) {
                    let _ = tx.send(body.to_vec());
                }
            }
            reader_closed.store(true, Ordering::SeqCst);
            lock(&reader_waiters).clear();
            let _ = reader_done_tx.send(());
        });
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    frame = req_rx.recv() => {
                        let Some(frame) = frame else { break };
                        // Flush: a simulated stream sends only on flush.
                        if write.write_all(&frame).await.is_err() || write.flush().await.is_err() {
                            break;
                        }
                    }
                    _ = &mut reader_done => break,
                }
            }
            // The connection is done for: fail the calls still waiting and
            // stop the reader (a half-open peer would never end it).
            closed.store(true, Ordering::SeqCst);
            lock(&waiters).clear();
            reader.abort();
            let _ = write.shutdown().await;
        });
        let mut conns = lock(&self.conns);
        // Another call may have connected meanwhile; either connection works.
        conns.insert(addr.to_string(), conn.clone());
        Ok(conn)
    }
}

fn broken(addr: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        format!("controller connection to {addr} broke"),
    )
}
