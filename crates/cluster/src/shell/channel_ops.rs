//! Running operations on stored channels for other processes
//! ([`Output::Channel`](crate::core::Output::Channel)): an operation may wait (for
//! room, for a value), so each runs as a task and answers through the core when done.

use std::any::Any;
use std::sync::Arc;

use bytes::Bytes;
use cohort_wire::proto::RefRequestKind;
use futures::future::BoxFuture;

use super::node::{enter, Node};
use crate::core::ChannelOp;
use crate::error::{CallError, ProtocolError};

/// The owner's channel, seen through bytes, for requests from other processes.
pub(crate) trait ErasedChannel: Send + Sync {
    /// Decodes `bytes` before it returns (on the thread of the call, with its
    /// current node), then puts the value when polled.
    fn put(&self, bytes: Bytes) -> BoxFuture<'_, Result<(), CallError>>;
    fn take(&self) -> BoxFuture<'_, Result<Bytes, CallError>>;
    fn fetch(&self) -> BoxFuture<'_, Result<Bytes, CallError>>;
    fn wait(&self) -> BoxFuture<'_, Result<(), CallError>>;
    fn isready(&self) -> bool;
    fn close(&self);
}

/// The store's record of a channel: the byte face for remote requests and the typed
/// one for this process.
#[derive(Clone)]
pub(crate) struct ChannelSlot {
    pub(crate) erased: Arc<dyn ErasedChannel>,
    pub(crate) typed: Arc<dyn Any + Send + Sync>,
}

/// Runs `op` as a task and answers its requester through `node` when it is done.
pub(crate) fn run(node: Arc<Node>, op: ChannelOp<ChannelSlot>) {
    let ChannelOp {
        from,
        call_id,
        channel,
        kind,
        value,
    } = op;
    super::runtime::handle().spawn(async move {
        let e = &channel.erased;
        let reply = match kind {
            // Handles inside the value are this node's.
            // `put` decodes at once, here: handles inside the value are this node's.
            RefRequestKind::Put => enter(&node, || e.put(value)).await.map(|()| Bytes::new()),
            RefRequestKind::Take => e.take().await,
            RefRequestKind::Fetch => e.fetch().await,
            RefRequestKind::Wait => e.wait().await.map(|()| Bytes::new()),
            RefRequestKind::IsReady => {
                Ok(Bytes::from_static(if e.isready() { &[1] } else { &[0] }))
            }
            RefRequestKind::Close => {
                e.close();
                Ok(Bytes::new())
            }
            RefRequestKind::Unspecified => {
                Err(CallError::Protocol(ProtocolError::RequestWithoutKind))
            }
        };
        node.with_core(|c| c.reply(from, call_id, reply));
    });
}
