//! The service's one message, and the adaptation of a stream of messages to a pair
//! of byte streams (what cohort's runtime speaks over).

use cohort_transport::Connection;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};

/// The service's name and its one method's path.
pub(crate) const SERVICE: &str = "cohort.grpc.Transport";
pub(crate) const CONNECT_PATH: &str = "/cohort.grpc.Transport/Connect";
/// The most bytes one `Chunk` carries.
const CHUNK: usize = 32 * 1024;

/// `message Chunk { bytes data = 1; }`
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Chunk {
    #[prost(bytes = "vec", tag = "1")]
    pub(crate) data: Vec<u8>,
}

/// Adapts a message stream pair to a byte-stream pair: returns the runtime's end (an
/// in-memory duplex pipe) and the outgoing messages. Bytes written to the returned
/// end become outgoing `Chunk`s (the returned stream); incoming chunks (`inbound`)
/// become bytes to read from it. Either side closing closes the other.
pub(crate) fn adapt<S>(
    inbound: S,
) -> (
    DuplexStream,
    impl futures::Stream<Item = Chunk> + Send + 'static,
)
where
    S: futures::Stream<Item = Result<Chunk, tonic::Status>> + Send + Unpin + 'static,
{
    use futures::StreamExt;
    let (ours, theirs) = tokio::io::duplex(4 * CHUNK);
    let (ours_r, mut ours_w) = tokio::io::split(ours);
    tokio::spawn(async move {
        let mut inbound = inbound;
        while let Some(Ok(chunk)) = inbound.next().await {
            if ours_w.write_all(&chunk.data).await.is_err() {
                break;
            }
        }
        let _ = ours_w.shutdown().await;
    });
    let outbound = futures::stream::unfold(ours_r, |mut r| async move {
        let mut data = vec![0u8; CHUNK];
        match r.read(&mut data).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                data.truncate(n);
                Some((Chunk { data }, r))
            }
        }
    });
    (theirs, outbound)
}

/// Splits a byte stream into the `Connection` the runtime wants.
pub(crate) fn connection<T>(io: T, peer: String) -> Connection
where
    T: AsyncRead + AsyncWrite + Send + 'static,
{
    let (r, w) = tokio::io::split(io);
    Connection::new(Box::new(r), Box::new(w), peer)
}
