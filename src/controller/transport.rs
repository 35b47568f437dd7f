//! The controller listener: one TCP listener per controller node carrying
//! raft messages between voters and RPCs from brokers to the controller.
//!
//! ## Framing
//! Every frame is `[u32 length][u8 kind][payload]`, big endian, where
//! `length` counts the kind byte and the payload and is at most
//! [`FRAME_BYTES_MAX`]:
//! - kind 1 ([`FRAME_KIND_RAFT`]): a raft message (protobuf bytes), one way,
//!   fed to [`RaftNode::step`];
//! - kind 2 ([`FRAME_KIND_REQUEST`]): an RPC request `[u32 correlation][bytes]`;
//! - kind 3 ([`FRAME_KIND_RESPONSE`]): its response `[u32 correlation][bytes]`.
//!
//! A bad frame (oversized, unknown kind, undecodable raft message, a response
//! sent to the server) closes only that connection. Responses may come back
//! in any order; the correlation id pairs them.

use std::io;

use protobuf::Message as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

use super::raft_node::RaftNode;

/// A raft message between voters.
pub const FRAME_KIND_RAFT: u8 = 1;
/// An RPC request to the controller.
pub const FRAME_KIND_REQUEST: u8 = 2;
/// An RPC response from the controller.
pub const FRAME_KIND_RESPONSE: u8 = 3;
/// Largest frame (kind + payload) accepted or sent.
pub const FRAME_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Responses queued per connection before the server stops reading it.
const RESPONSE_QUEUE_MAX: usize = 1024;

/// One RPC request handed to the controller service; send the response on
/// `reply` (dropping it leaves the caller to time out).
pub struct RpcCall {
    pub request: Vec<u8>,
    pub reply: oneshot::Sender<Vec<u8>>,
}

/// Encode one frame.
pub fn encode_frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    assert!(
        payload.len() < FRAME_BYTES_MAX,
        "controller frames: payload below the frame limit"
    );
    let mut out = Vec::with_capacity(5 + payload.len());
    out.extend_from_slice(&(payload.len() as u32 + 1).to_be_bytes());
    out.push(kind);
    out.extend_from_slice(payload);
    out
}

/// Encode an RPC frame (kind 2 or 3) with its correlation id.
pub fn encode_rpc_frame(kind: u8, correlation: u32, body: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(4 + body.len());
    payload.extend_from_slice(&correlation.to_be_bytes());
    payload.extend_from_slice(body);
    encode_frame(kind, &payload)
}

/// Split an RPC payload into its correlation id and body.
pub fn decode_rpc_payload(payload: &[u8]) -> io::Result<(u32, &[u8])> {
    if payload.len() < 4 {
        return Err(bad_frame("rpc frame shorter than its correlation id"));
    }
    let corr = u32::from_be_bytes(payload[..4].try_into().expect("4 bytes"));
    Ok((corr, &payload[4..]))
}

fn bad_frame(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Read one frame; `Ok(None)` at a clean end of stream.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > FRAME_BYTES_MAX {
        return Err(bad_frame("controller frame length out of range"));
    }
    let mut kind = [0u8; 1];
    r.read_exact(&mut kind).await?;
    let mut payload = vec![0u8; len - 1];
    r.read_exact(&mut payload).await?;
    Ok(Some((kind[0], payload)))
}

/// Serve the controller listener until `shutdown` turns true: raft messages
/// go to `raft`, RPC requests to `rpc`.
pub async fn serve_controller_listener(
    listener: TcpListener,
    raft: RaftNode,
    rpc: mpsc::Sender<RpcCall>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let (raft, rpc, shutdown) = (raft.clone(), rpc.clone(), shutdown.clone());
                    tokio::spawn(async move {
                        if let Err(e) = serve_connection(stream, raft, rpc, shutdown).await {
                            tracing::debug!(error = %e, "controller connection closed");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "controller listener accept failed");
                    crate::env::time::sleep(crate::env::time::Duration::from_millis(10)).await;
                }
            },
            _ = shutdown.changed() => {}
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    raft: RaftNode,
    rpc: mpsc::Sender<RpcCall>,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let (mut read, mut write) = tokio::io::split(stream);
    let (resp_tx, mut resp_rx) = mpsc::channel::<Vec<u8>>(RESPONSE_QUEUE_MAX);
    let writer = tokio::spawn(async move {
        while let Some(frame) = resp_rx.recv().await {
            // Flush: a simulated stream sends only on flush.
            if write.write_all(&frame).await.is_err() || write.flush().await.is_err() {
                return;
            }
        }
    });
    let result = async {
        loop {
            let frame = tokio::select! {
                f = read_frame(&mut read) => f?,
                _ = shutdown.changed() => return Ok(()),
            };
            let Some((kind, payload)) = frame else {
                return Ok(());
            };
            match kind {
                FRAME_KIND_RAFT => {
                    let msg = raft::eraftpb::Message::parse_from_bytes(&payload)
                        .map_err(|_| bad_frame("undecodable raft message"))?;
                    raft.step(msg);
                }
                FRAME_KIND_REQUEST => {
                    let (corr, body) = decode_rpc_payload(&payload)?;
                    let (reply, rx) = oneshot::channel();
                    let call = RpcCall {
                        request: body.to_vec(),
                        reply,
                    };
                    if rpc.send(call).await.is_err() {
                        return Ok(());
                    }
                    let resp_tx = resp_tx.clone();
                    tokio::spawn(async move {
                        if let Ok(response) = rx.await {
                            if response.len() + 4 < FRAME_BYTES_MAX {
                                let frame = encode_rpc_frame(FRAME_KIND_RESPONSE, corr, &response);
                                let _ = resp_tx.send(frame).await;
                            } else {
                                tracing::error!(
                                    bytes = response.len(),
                                    "controller response over the frame limit: dropped"
                                );
                            }
                        }
                    });
                }
                _ => return Err(bad_frame("unexpected controller frame kind")),
            }
        }
    }
    .await;
    writer.abort();
    result
}
