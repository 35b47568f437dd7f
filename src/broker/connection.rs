//! One client connection: read frames, dispatch them one at a time, write the
//! responses in request order.
//!
//! Pipelining: responses of every complete request already buffered are
//! batched into one write. A request is not read past until the previous one
//! is answered (Kafka mutes a channel the same way), so order is trivially kept.
//!
//! Memory: a frame is read into its own exactly-sized buffer, so the produce
//! handler can get the records bytes back as a unique, mutable buffer and the
//! log can patch offsets in place without a copy.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::handlers;
use super::Broker;
use crate::protocol::frame::frame_size;
use crate::protocol::{
    decode_request_frame, unsupported_api_versions_response, RequestError, FRAME_PREFIX_BYTES,
};

/// Read buffer size for small requests.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Why a connection ended early.
#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Frame(#[from] crate::protocol::FrameError),
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error("shutting down")]
    Shutdown,
    #[error("peer closed the connection")]
    Eof,
}

/// Serve one connection until the peer closes it, it sends something we
/// cannot answer, or the broker shuts down. Never panics on input.
pub async fn serve(broker: Arc<Broker>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    match run(&broker, stream, peer).await {
        Ok(()) | Err(ConnectionError::Eof) | Err(ConnectionError::Shutdown) => {
            tracing::debug!(%peer, "connection closed");
        }
        Err(e) => tracing::info!(%peer, error = %e, "closing connection"),
    }
}

async fn run(
    broker: &Broker,
    mut stream: TcpStream,
    peer: SocketAddr,
) -> Result<(), ConnectionError> {
    let mut shutdown = broker.shutdown.clone();
    let request_bytes_max = broker.config.socket_request_max_bytes;
    let mut rbuf = BytesMut::with_capacity(READ_BUFFER_BYTES);
    let mut out = BytesMut::with_capacity(READ_BUFFER_BYTES);
    loop {
        while rbuf.len() < FRAME_PREFIX_BYTES {
            read_some(&mut stream, &mut rbuf, &mut shutdown).await?;
        }
        let size = frame_size([rbuf[0], rbuf[1], rbuf[2], rbuf[3]], request_bytes_max)?;
        rbuf.advance(FRAME_PREFIX_BYTES);
        let mut frame = BytesMut::with_capacity(size);
        let buffered = rbuf.len().min(size);
        frame.extend_from_slice(&rbuf[..buffered]);
        rbuf.advance(buffered);
        while frame.len() < size {
            let want = size - frame.len();
            let mut limited = (&mut frame).limit(want);
            let n = tokio::select! {
                r = stream.read_buf(&mut limited) => r?,
                _ = shutdown.changed() => return Err(ConnectionError::Shutdown),
            };
            if n == 0 {
                return Err(ConnectionError::Eof);
            }
        }
        match decode_request_frame(frame.freeze()) {
            Ok(request) => handlers::dispatch(broker, request, peer, &mut out).await?,
            Err(RequestError::UnsupportedApiVersions {
                correlation_id,
                version,
            }) => {
                tracing::debug!(version, "ApiVersions at an unsupported version");
                unsupported_api_versions_response(&mut out, correlation_id);
            }
            Err(e) => return Err(e.into()),
        }
        if !holds_complete_frame(&rbuf) && !out.is_empty() {
            // A client that stops reading must not hold up shutdown.
            let write = async {
                stream.write_all(&out).await?;
                // A no-op on real TCP; madsim's stream sends only on flush.
                stream.flush().await
            };
            tokio::select! {
                r = write => r?,
                _ = shutdown.changed() => return Err(ConnectionError::Shutdown),
            }
            out.clear();
        }
        if rbuf.is_empty() && rbuf.capacity() < READ_BUFFER_BYTES {
            rbuf = BytesMut::with_capacity(READ_BUFFER_BYTES);
        }
    }
}

fn holds_complete_frame(buf: &BytesMut) -> bool {
    if buf.len() < FRAME_PREFIX_BYTES {
        return false;
    }
    let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    size >= 0 && buf.len() - FRAME_PREFIX_BYTES >= size as usize
}

async fn read_some(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) -> Result<(), ConnectionError> {
    if *shutdown.borrow() {
        return Err(ConnectionError::Shutdown);
    }
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(READ_BUFFER_BYTES);
    }
    let n = tokio::select! {
        r = stream.read_buf(buf) => r?,
        _ = shutdown.changed() => return Err(ConnectionError::Shutdown),
    };
    if n == 0 {
        return Err(ConnectionError::Eof);
    }
    Ok(())
}
