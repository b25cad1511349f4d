//! The remotecall family: `remotecall`, `remotecall_fetch`, `remotecall_wait`,
//! `remote_do`, `spawnat`, `fetchfrom`.
//!
//! Arguments and results are copied (serialized) when the target is another process.
//! A call to this process itself runs on the very values passed, without
//! serialization, as Julia's local invocations do.

use bytes::Bytes;
use cohort_wire::envelope::Splices;
use cohort_wire::ids::Pid;
use cohort_wire::proto::{self, envelope::Kind, function_ref, CallMode, Envelope};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::future::Future;
use crate::captures::{self, StateBytes};
use crate::codec;
use crate::error::{CallError, Failure, RemoteException};
use crate::registry::{self, RemoteFn};
use std::sync::Arc;

use crate::shell::node::{current, enter, Node};

/// Where `spawnat` runs: a given process, or any worker in turn (Julia's `:any`).
///
/// ```
/// use cohort_cluster::Target;
/// assert_eq!(Target::from(3), Target::Pid(3));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// That process.
    Pid(Pid),
    /// The next worker, in turn.
    Any,
}

impl From<Pid> for Target {
    fn from(p: Pid) -> Self {
        Target::Pid(p)
    }
}

/// The wire name of `f`: its registered name, or its trampoline's code offset (after
/// checking the target runs this executable).
fn function_ref<F, Args>(n: &Node, f: &F, pid: Pid) -> Result<proto::FunctionRef, CallError>
where
    F: RemoteFn<Args>,
    Args: Serialize + DeserializeOwned,
    F::Output: Serialize,
{
    let display = std::any::type_name::<F>().to_string();
    if let Some(name) = registry::name_of_val(f) {
        return Ok(proto::FunctionRef {
            target: Some(function_ref::Target::Name(name.to_string())),
            display: name.to_string(),
        });
    }
    let peer = n.peer(pid)?;
    // A connection still in its handshake does not know yet; the callee checks the
    // fingerprint itself and refuses with an error naming the function.
    if peer.is_established() && !peer.same_exe() {
        return Err(CallError::CannotShipCode {
            pid,
            function: display,
        });
    }
    let t = registry::trampoline_of::<F, Args>(f);
    Ok(proto::FunctionRef {
        target: Some(function_ref::Target::CodeOffset(registry::code_offset(t))),
        display,
    })
}

/// A call's encoded payload: the arguments (after the state, unless it is kept) and,
/// for a state worth keeping on the callee, its key and bytes.
struct Payload {
    args: Vec<u8>,
    /// Shared buffers the arguments offered (`codec::serialize_shared`), to be
    /// written in their places in `args`.
    splices: Splices,
    kept: Option<(captures::Key, Bytes)>,
}

/// Encodes the call's arguments, taking them: they are dropped once encoded, or —
/// when a large [`Bulk`](codec::Bulk) among them is written from where it is — once
/// the message is written (`codec::encode_lent_into`).
fn encode_args<F, Args>(
    n: &Node,
    f: &F,
    args: Args,
    pid: Pid,
    by_code: bool,
) -> Result<Payload, CallError>
where
    F: RemoteFn<Args>,
    Args: Serialize + Send + 'static,
{
    let ser = |e: Failure| CallError::Serialization(e.message);
    let budget = n.capture_budget();
    let payload = codec::with_target(n, pid, || {
        let state = match f.state_cache() {
            Some(cache) => cache.state_of(f)?,
            None => captures::fresh(f)?,
        };
        // Kept on the callee: a state of code sent by offset (a named function has
        // none), large enough, within the budget, holding nothing receiver-specific.
        let keep = |len: usize| by_code && (captures::CAPTURE_MIN..=budget).contains(&len);
        let kept = match state {
            StateBytes::Kept(bytes, key) if keep(bytes.len()) => Ok((key, bytes)),
            StateBytes::Fresh(state, false) if keep(state.len()) => {
                Ok((captures::key_of::<F>(&state), Bytes::from(state)))
            }
            StateBytes::Kept(bytes, _) => Err(bytes.to_vec()),
            StateBytes::Fresh(state, _) => Err(state),
        };
        let (mut out, kept) = match kept {
            Ok(kept) => (Vec::new(), Some(kept)),
            // The state first, then the arguments.
            Err(state) => (registry::encode_state_prefix(&state)?, None),
        };
        let splices = codec::encode_lent_into(args, &mut out)?;
        Ok(Payload {
            args: out,
            splices,
            kept,
        })
    })
    .map_err(ser)?;
    // Checked here, not by the receiver: an oversized frame would cost the connection.
    let state_len = payload.kept.as_ref().map_or(0, |(_, b)| b.len());
    crate::api::limits::check_payload(
        n,
        "call arguments",
        payload.args.len() + payload.splices.bytes() + state_len,
    )?;
    Ok(payload)
}

fn build_call<F, Args>(
    n: &Node,
    f: &F,
    pid: Pid,
    args: Args,
    mode: CallMode,
    call_id: u64,
    result_ref: Option<cohort_wire::ids::RefId>,
) -> Result<(Envelope, Vec<codec::KeepAlive>, Splices), CallError>
where
    F: RemoteFn<Args>,
    Args: Serialize + DeserializeOwned + Send + 'static,
    F::Output: Serialize,
{
    let mut function = function_ref(n, f, pid)?;
    let by_code = matches!(function.target, Some(function_ref::Target::CodeOffset(_)));
    let (payload, keep) = codec::collecting_keepalives(|| encode_args(n, f, args, pid, by_code));
    let payload = payload?;
    let (capture, capture_state) = match payload.kept {
        Some((key, state)) => {
            // The callee finds the function in the state it keeps.
            let t = captures::cached_trampoline_of::<F, Args>();
            function.target = Some(function_ref::Target::CodeOffset(registry::code_offset(t)));
            (
                Some(proto::Capture {
                    key: key.to_vec(),
                    forget: Vec::new(),
                }),
                state,
            )
        }
        None => (None, Bytes::new()),
    };
    let env = Envelope {
        kind: Some(Kind::Call(proto::Call {
            call_id,
            mode: mode as i32,
            result_ref: result_ref.map(Into::into),
            function: Some(function),
            args: payload.args.into(),
            capture,
            capture_state,
        })),
    };
    Ok((env, keep, payload.splices))
}

/// Runs `f(args)` here, off the caller's thread, catching a panic.
fn run_local<F, Args>(n: &Arc<Node>, f: F, args: Args) -> Future<F::Output>
where
    F: RemoteFn<Args>,
    Args: Send + 'static,
    F::Output: Send + Sync + 'static,
{
    let fut = Future::local(n);
    let done = fut.clone();
    let n = n.clone();
    crate::runtime::handle().spawn_blocking(move || {
        let out = call_catching(&n, &f, args);
        done.set_local(out);
    });
    fut
}

/// Runs `f(args)` on this thread for `n` (its cluster is the current one inside),
/// catching a panic.
fn call_catching<F: RemoteFn<Args>, Args>(
    n: &Arc<Node>,
    f: &F,
    args: Args,
) -> Result<F::Output, CallError> {
    enter(n, || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f.call(args)))
    })
    .map_err(|p| {
        CallError::Remote(RemoteException::from_failure(
            n.myid(),
            std::any::type_name::<F>(),
            Failure::from_panic(p),
        ))
    })
}

/// Calls `f(args…)` on process `pid` and returns at once with a [`Future`] to the
/// result (Julia's `remotecall(f, pid, args...)`). `args` is the argument tuple.
///
/// Failures — an unknown pid, a function the worker lacks, a panic, arguments or a
/// result over the message limit ([`CallError::PayloadTooLarge`], or a remote error
/// of kind [`ErrorKind::PayloadTooLarge`](crate::ErrorKind::PayloadTooLarge)) — surface
/// when the future is waited on or fetched.
///
/// ```
/// fn add(a: i32, b: i32) -> i32 { a + b }
/// let f = cohort_cluster::remotecall(add, cohort_cluster::myid(), (1, 2));
/// assert_eq!(f.fetch_blocking().unwrap(), 3);
/// ```
pub fn remotecall<F, Args>(f: F, pid: Pid, args: Args) -> Future<F::Output>
where
    F: RemoteFn<Args>,
    Args: Serialize + DeserializeOwned + Send + 'static,
    F::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    remotecall_in(&current(), f, pid, args)
}

pub(crate) fn remotecall_in<F, Args>(n: &Arc<Node>, f: F, pid: Pid, args: Args) -> Future<F::Output>
where
    F: RemoteFn<Args>,
    Args: Serialize + DeserializeOwned + Send + 'static,
    F::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    if pid == n.myid() {
        return run_local(n, f, args);
    }
    let id = n.new_ref();
    // The caller holds the handle, so the result comes back unasked (if small): a
    // fetch then finds it here instead of asking (protocol: `CALL_PUSH`).
    let call_id = n.new_call_id();
    match build_call(n, &f, pid, args, CallMode::CallPush, call_id, Some(id)).and_then(
        |(env, keep, splices)| Ok((n.start_call_push(pid, call_id, id, env, splices)?, keep)),
    ) {
        Ok((pushed, keep)) => Future::remote_pushed(n, id, pid, pushed, keep),
        Err(e) => Future::ready(n, pid, Err(e)),
    }
}

/// Calls `f(args…)` on `pid` and waits for the result (Julia's `remotecall_fetch`):
/// one round trip, and nothing is stored on the worker.
///
/// # Errors
/// [`CallError::Remote`] if `f` failed or panicked there (the worker survives);
/// [`CallError::WorkerExited`] if the worker died first; [`CallError::NoSuchProcess`];
/// [`CallError::CannotShipCode`]; [`CallError::Serialization`];
/// [`CallError::PayloadTooLarge`] if the encoded arguments are over the cluster's
/// message limit ([`Cluster::set_max_frame`](crate::Cluster::set_max_frame); nothing
/// is sent), and [`CallError::Remote`] of kind
/// [`ErrorKind::PayloadTooLarge`](crate::ErrorKind::PayloadTooLarge) if the result is
/// (the worker sends that error instead, and goes on).
///
/// # Cancel safety
/// Dropping the future abandons the wait (the reply is dropped when it comes);
/// the call itself still runs on `pid`, and a call to this process runs to its end.
///
/// ```
/// # cohort_cluster::runtime::block_on(async {
/// fn square(x: u64) -> u64 { x * x }
/// let v = cohort_cluster::remotecall_fetch(square, cohort_cluster::myid(), (9,)).await.unwrap();
/// assert_eq!(v, 81);
/// # });
/// ```
#[cohort_macros::twin_fn(example = " fn square(x: u64) -> u64 { x * x }
 assert_eq!(cohort_cluster::blocking::remotecall_fetch(square, 1, (3,)).unwrap(), 9);")]
pub fn remotecall_fetch<F, Args>(
    f: F,
    pid: Pid,
    args: Args,
) -> impl std::future::Future<Output = Result<F::Output, CallError>>
where
    F: RemoteFn<Args>,
    Args: Serialize + DeserializeOwned + Send + 'static,
    F::Output: Serialize + DeserializeOwned + Send + 'static,
{
    remotecall_fetch_in(current(), f, pid, args)
}

pub(crate) async fn remotecall_fetch_in<F, Args>(
    n: Arc<Node>,
    f: F,
    pid: Pid,
    args: Args,
) -> Result<F::Output, CallError>
where
    F: RemoteFn<Args>,
    Args: Serialize + DeserializeOwned + Send + 'static,
    F::Output: Serialize + DeserializeOwned + Send + 'static,
{
    if pid == n.myid() {
        // On cohort's runtime, so this works from any executor.
        return crate::runtime::handle()
            .spawn_blocking(move || call_catching(&n, &f, args))
            .await
            .unwrap_or(Err(CallError::TaskLost));
    }
    let call_id = n.new_call_id();
    // Taken: the arguments go once encoded (or written), not when the result is
    // back (a large one would otherwise be held twice while the call runs); what
    // they asked to keep stays until then.
    let (env, keep, splices) = build_call(&n, &f, pid, args, CallMode::Fetch, call_id, None)?;
    let bytes: Bytes = n.request_spliced(pid, call_id, env, splices).await?;
    drop(keep);
    let out = decode_result(&n, &bytes);
    // Decoded: a large result's memory holds the next large message here.
    n.spare.recycle(bytes);
    out
}

/// Decodes a call's result for `n` (handles inside it are `n`'s).
fn decode_result<T: DeserializeOwned + 'static>(
    n: &Arc<Node>,
    bytes: &[u8],
) -> Result<T, CallError> {
    enter(n, || codec::decode_value(bytes)).map_err(|e| CallError::Serialization(e.message))
}

/// Calls `f(args…)` on `pid`, waits until it has finished, and returns the
/// [`Future`] holding its result, stored on `pid` (Julia's `remotecall_wait`).
///
/// # Errors
/// As [`remotecall_fetch`]: the call's failure is reported here (and stays in the
/// future).
///
/// # Cancel safety
/// As [`remotecall_fetch`]; the handle to the result goes with the future, so the
/// owner frees the result once it is stored.
///
/// ```
/// # cohort_cluster::runtime::block_on(async {
/// fn one() -> i32 { 1 }
/// let f = cohort_cluster::remotecall_wait(one, cohort_cluster::myid(), ()).await.unwrap();
/// assert_eq!(f.fetch().await.unwrap(), 1);
/// # });
/// ```
#[cohort_macros::twin_fn(example = " fn one() -> i32 { 1 }
 let f = cohort_cluster::blocking::remotecall_wait(one, 1, ()).unwrap();
 assert!(f.isready_blocking().unwrap());")]
pub fn remotecall_wait<F, Args>(
    f: F,
    pid: Pid,
    args: Args,
) -> impl std::future::Future<Output = Result<Future<F::Output>, CallError>>
where
    F: RemoteFn<Args>,
    Args: Serialize + DeserializeOwned + Send + 'static,
    F::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    remotecall_wait_in(current(), f, pid, args)
}

pub(crate) async fn remotecall_wait_in<F, Args>(
    n: Arc<Node>,
    f: F,
    pid: Pid,
    args: Args,
) -> Result<Future<F::Output>, CallError>
where
    F: RemoteFn<Args>,
    Args: Serialize + DeserializeOwned + Send + 'static,
    F::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    if pid == n.myid() {
        let fut = run_local(&n, f, args);
        fut.wait().await?;
        return Ok(fut);
    }
    let id = n.new_ref();
    let call_id = n.new_call_id();
    let (env, keep, splices) = build_call(&n, &f, pid, args, CallMode::Wait, call_id, Some(id))?;
    // Track the handle before sending, so a fast reply cannot race the registration.
    let fut = Future::remote(&n, id, pid);
    n.request_spliced(pid, call_id, env, splices).await?;
    drop(keep);
    Ok(fut)
}

/// Runs `f(args…)` on `pid` for its effect: nothing is stored, nothing is waited for,
/// and a failure is printed on the worker's stderr (Julia's `remote_do`). Calls to one
/// worker are sent in the order made; their execution order there is not guaranteed.
///
/// # Errors
/// Only what can be known at once: an unknown or disconnected pid, code that cannot
/// be shipped, arguments that cannot be encoded or are over the message limit
/// ([`CallError::PayloadTooLarge`]).
///
/// ```
/// fn log(msg: String) { println!("{msg}"); }
/// cohort_cluster::remote_do(log, cohort_cluster::myid(), ("hi".to_string(),)).unwrap();
/// ```
pub fn remote_do<F, Args>(f: F, pid: Pid, args: Args) -> Result<(), CallError>
where
    F: RemoteFn<Args>,
    Args: Serialize + DeserializeOwned + Send + 'static,
    F::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    remote_do_in(&current(), f, pid, args)
}

pub(crate) fn remote_do_in<F, Args>(
    n: &Arc<Node>,
    f: F,
    pid: Pid,
    args: Args,
) -> Result<(), CallError>
where
    F: RemoteFn<Args>,
    Args: Serialize + DeserializeOwned + Send + 'static,
    F::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    if pid == n.myid() {
        let n = n.clone();
        crate::runtime::handle().spawn_blocking(move || {
            if let Err(e) = call_catching(&n, &f, args) {
                eprintln!("error in remote_do: {e}");
            }
        });
        return Ok(());
    }
    // Nothing answers a remote_do: what its arguments asked to keep goes once it is
    // sent.
    let (env, _keep, splices) = build_call(n, &f, pid, args, CallMode::RemoteDo, 0, None)?;
    n.send_spliced(pid, env, splices)
}

/// Runs the zero-argument function `f` on `target` and returns a [`Future`] (Julia's
/// `@spawnat`); `Target::Any` picks the workers in turn (`@spawnat :any`).
///
/// ```
/// use cohort_cluster::{spawnat, Target};
/// let f = spawnat(Target::Any, || 40 + 2);
/// assert_eq!(f.fetch_blocking().unwrap(), 42);
/// ```
pub fn spawnat<F>(target: impl Into<Target>, f: F) -> Future<F::Output>
where
    F: RemoteFn<()>,
    F::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    spawnat_in(&current(), target.into(), f)
}

pub(crate) fn spawnat_in<F>(n: &Arc<Node>, target: Target, f: F) -> Future<F::Output>
where
    F: RemoteFn<()>,
    F::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let pid = match target {
        Target::Pid(p) => p,
        Target::Any => n.next_worker(),
    };
    remotecall_in(n, f, pid, ())
}

/// Runs the zero-argument function `f` on `pid` and waits for its value (Julia's
/// `@fetchfrom`).
///
/// # Errors
/// As [`remotecall_fetch`].
///
/// # Cancel safety
/// As [`remotecall_fetch`].
///
/// `target` is a pid or [`Target::Any`], the next worker in turn (Julia's
/// `@fetch expr`).
///
/// ```
/// # cohort_cluster::runtime::block_on(async {
/// use cohort_cluster::{fetchfrom, Target};
/// let v = fetchfrom(1, || cohort_cluster::myid()).await.unwrap();
/// assert_eq!(v, 1);
/// // Julia's `@fetch`: whichever worker is next (the master while it has none).
/// assert_eq!(fetchfrom(Target::Any, || 2 + 2).await.unwrap(), 4);
/// # });
/// ```
#[cohort_macros::twin_fn(
    example = " assert_eq!(cohort_cluster::blocking::fetchfrom(1, || 5).unwrap(), 5);"
)]
pub fn fetchfrom<F>(
    target: impl Into<Target>,
    f: F,
) -> impl std::future::Future<Output = Result<F::Output, CallError>>
where
    F: RemoteFn<()>,
    F::Output: Serialize + DeserializeOwned + Send + 'static,
{
    let n = current();
    let pid = match target.into() {
        Target::Pid(p) => p,
        Target::Any => n.next_worker(),
    };
    remotecall_fetch_in(n, f, pid, ())
}
