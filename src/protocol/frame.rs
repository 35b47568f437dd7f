//! Request framing: every Kafka request and response is a 4-byte big-endian
//! size followed by that many bytes.

/// Size of the length prefix in front of every frame.
pub const FRAME_PREFIX_BYTES: usize = 4;

/// Why a frame cannot be read; either way the connection is closed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame of {size} bytes exceeds socket.request.max.bytes {max}")]
    TooLarge { size: usize, max: usize },
    #[error("negative frame size {0}")]
    Negative(i32),
}

/// Read a frame's size from its 4-byte prefix and check it against the limit.
pub fn frame_size(prefix: [u8; 4], request_bytes_max: usize) -> Result<usize, FrameError> {
    let size = i32::from_be_bytes(prefix);
    if size < 0 {
        return Err(FrameError::Negative(size));
    }
    let size = size as usize;
    if size > request_bytes_max {
        return Err(FrameError::TooLarge {
            size,
            max: request_bytes_max,
        });
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(frame_size(10i32.to_be_bytes(), 100), Ok(10));
        assert_eq!(
            frame_size(101i32.to_be_bytes(), 100),
            Err(FrameError::TooLarge {
                size: 101,
                max: 100
            })
        );
        assert_eq!(
            frame_size((-1i32).to_be_bytes(), 100),
            Err(FrameError::Negative(-1))
        );
    }
}
