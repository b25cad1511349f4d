//! How code travels: functions by registered name, closures by code offset.
//!
//! Rust cannot ship code, so a call names the code to run:
//!
//! - A function marked `#[cohort::remote]` is registered at link time (a `linkme`
//!   distributed slice: the table exists before `main` and needs no constructors)
//!   under a stable name, `module::path::fn_name`. A call carries the name; any
//!   executable that links the function can serve it.
//! - Any other function or closure — a function item, a closure that captures nothing,
//!   or a [`Closure`] whose captures travel as data — is identified by the address of
//!   its monomorphized *trampoline* (decode the arguments, call, encode the result),
//!   sent as an offset from a fixed anchor function of the executable. Only an identical
//!   executable can resolve the offset; the build fingerprint exchanged in the
//!   handshake guarantees that, and a peer running another executable gets a clear
//!   error instead of a jump into the unknown.

use std::any::TypeId;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec;
use crate::error::{ErrorKind, Failure};

/// What the runtime calls to run shipped code: decodes the function's state and the
/// argument tuple, calls the function (catching a panic) and encodes the result.
pub type Trampoline = fn(bytes::Bytes) -> Result<Vec<u8>, Failure>;

/// A function the runtime can run on another process with the argument tuple `Args`.
///
/// Implemented for every `Fn` of up to eight arguments and for [`Closure`]. A function
/// item or a closure that captures nothing is zero-sized — its code *is* its type — so
/// only its name or code offset travels; shipping a closure that captures values is a
/// compile-time error (wrap it with [`closure!`](crate::closure!) so the captures
/// travel as data).
///
/// ```
/// use cohort_cluster::RemoteFn;
/// fn add(a: i32, b: i32) -> i32 { a + b }
/// assert_eq!(RemoteFn::call(&add, (2, 3)), 5);
/// ```
pub trait RemoteFn<Args>: Send + Sync + Sized + 'static {
    /// What the function returns.
    type Output;

    /// Calls the function with its arguments as a tuple.
    fn call(&self, args: Args) -> Self::Output;

    /// Encodes the state that travels with the code (nothing, for zero-sized functions).
    ///
    /// # Errors
    /// The serialization error of captured state.
    fn encode_state(&self) -> Result<Vec<u8>, Failure>;

    /// Rebuilds the function from its state on the receiving process.
    ///
    /// # Errors
    /// The deserialization error of captured state.
    fn decode_state(state: &[u8]) -> Result<Self, Failure>;

    /// Where the function keeps its state once encoded, for all its calls: `None`
    /// (the default) makes each call encode it again. [`Prepared`](crate::Prepared)
    /// returns its cache.
    ///
    /// ```
    /// use cohort_cluster::{Prepared, RemoteFn};
    /// fn id(x: u8) -> u8 { x }
    /// assert!(RemoteFn::<(u8,)>::state_cache(&id).is_none());
    /// assert!(RemoteFn::<(u8,)>::state_cache(&Prepared::new(id)).is_some());
    /// ```
    fn state_cache(&self) -> Option<&crate::StateCache> {
        None
    }
}

macro_rules! impl_remote_fn {
    ($($arg:ident),*) => {
        impl<Func, Ret, $($arg,)*> RemoteFn<($($arg,)*)> for Func
        where
            Func: Fn($($arg),*) -> Ret + Copy + Send + Sync + 'static,
        {
            type Output = Ret;

            #[allow(non_snake_case)]
            fn call(&self, ($($arg,)*): ($($arg,)*)) -> Ret {
                self($($arg),*)
            }

            fn encode_state(&self) -> Result<Vec<u8>, Failure> {
                const { assert!(std::mem::size_of::<Func>() == 0, "a shipped closure must not capture values: use cohort::closure!") };
                Ok(Vec::new())
            }

            fn decode_state(_: &[u8]) -> Result<Self, Failure> {
                const { assert!(std::mem::size_of::<Func>() == 0, "a shipped closure must not capture values: use cohort::closure!") };
                // SAFETY: `Func` is zero-sized (checked at compile time above) and
                // `Copy`: a function item, a closure without captures, or a closure
                // that captures only zero-sized `Copy` values. A zero-sized type has
                // no bytes to be invalid, and a `Copy` type has no `Drop`, so making
                // its value from nothing creates no resource and skips no destructor;
                // duplicating it is what `Copy` already allows. The runtime only
                // resolves trampolines between identical executables, so this is the
                // same type that was sent.
                Ok(unsafe { std::mem::MaybeUninit::<Func>::uninit().assume_init() })
            }
        }
    };
}
impl_remote_fn!();
impl_remote_fn!(A1);
impl_remote_fn!(A1, A2);
impl_remote_fn!(A1, A2, A3);
impl_remote_fn!(A1, A2, A3, A4);
impl_remote_fn!(A1, A2, A3, A4, A5);
impl_remote_fn!(A1, A2, A3, A4, A5, A6);
impl_remote_fn!(A1, A2, A3, A4, A5, A6, A7);
impl_remote_fn!(A1, A2, A3, A4, A5, A6, A7, A8);

/// A closure whose captured values travel as data: `captures` is serialized, and
/// `code` — a closure that captures nothing and takes the captures by reference before
/// its arguments — is identified by its type. Make one with [`closure!`](crate::closure!).
///
/// ```
/// use cohort_cluster::{Closure, RemoteFn};
/// let offset = 10;
/// let c = Closure::new(offset, |off: &i32, x: i32| x + off);
/// assert_eq!(c.call((5,)), 15);
/// ```
#[derive(Clone)]
pub struct Closure<C, F> {
    captures: C,
    code: F,
}

/// Names the types only: the captures may be large, and the code is a closure.
impl<C, F> std::fmt::Debug for Closure<C, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Closure")
            .field("captures", &std::any::type_name::<C>())
            .field("code", &std::any::type_name::<F>())
            .finish()
    }
}

impl<C, F> Closure<C, F> {
    /// Pairs captured values with the code that uses them.
    ///
    /// ```
    /// let c = cohort_cluster::Closure::new(vec![1, 2], |v: &Vec<i32>| v.len());
    /// ```
    pub fn new(captures: C, code: F) -> Self {
        Closure { captures, code }
    }

    /// The captured values.
    ///
    /// ```
    /// let c = cohort_cluster::Closure::new(3, |n: &i32| *n);
    /// assert_eq!(*c.captures(), 3);
    /// ```
    pub fn captures(&self) -> &C {
        &self.captures
    }
}

macro_rules! impl_closure {
    ($($arg:ident),*) => {
        impl<C, Func, Ret, $($arg,)*> RemoteFn<($($arg,)*)> for Closure<C, Func>
        where
            C: Serialize + DeserializeOwned + Send + Sync + 'static,
            Func: Fn(&C, $($arg),*) -> Ret + Copy + Send + Sync + 'static,
        {
            type Output = Ret;

            #[allow(non_snake_case)]
            fn call(&self, ($($arg,)*): ($($arg,)*)) -> Ret {
                (self.code)(&self.captures, $($arg),*)
            }

            fn encode_state(&self) -> Result<Vec<u8>, Failure> {
                const { assert!(std::mem::size_of::<Func>() == 0, "the code of a Closure must not capture: pass every captured value in `captures`") };
                codec::encode(&self.captures)
            }

            fn decode_state(state: &[u8]) -> Result<Self, Failure> {
                const { assert!(std::mem::size_of::<Func>() == 0, "the code of a Closure must not capture: pass every captured value in `captures`") };
                let captures = codec::decode(state)?;
                // SAFETY: as for function items above: `Func` is zero-sized (checked at
                // compile time) and `Copy`, so it has no bytes to be invalid and no
                // destructor to skip.
                let code = unsafe { std::mem::MaybeUninit::<Func>::uninit().assume_init() };
                Ok(Closure { captures, code })
            }
        }
    };
}
impl_closure!();
impl_closure!(A1);
impl_closure!(A1, A2);
impl_closure!(A1, A2, A3);
impl_closure!(A1, A2, A3, A4);
impl_closure!(A1, A2, A3, A4, A5);
impl_closure!(A1, A2, A3, A4, A5, A6);

/// Makes a [`Closure`] that ships its captures: list the captured variables in
/// brackets; inside the body they are references to the (copied) values. Closures of
/// up to four arguments, each with its type written out.
///
/// ```
/// use cohort_cluster::{closure, RemoteFn};
/// let base = 100;
/// let name = String::from("x");
/// let c = closure!([base, name] |i: i32| format!("{name}{}", base + i));
/// assert_eq!(c.call((1,)), "x101");
/// ```
#[macro_export]
macro_rules! closure {
    ([$($cap:ident),* $(,)?] || $body:expr) => {
        $crate::registry::bind0(($($cap,)*), |__captures| {
            #[allow(unused_variables)]
            let ($($cap,)*) = __captures;
            $body
        })
    };
    ([$($cap:ident),* $(,)?] |$a1:ident : $t1:ty $(,)?| $body:expr) => {
        $crate::registry::bind1(($($cap,)*), |__captures, $a1: $t1| {
            #[allow(unused_variables)]
            let ($($cap,)*) = __captures;
            $body
        })
    };
    ([$($cap:ident),* $(,)?] |$a1:ident : $t1:ty, $a2:ident : $t2:ty $(,)?| $body:expr) => {
        $crate::registry::bind2(($($cap,)*), |__captures, $a1: $t1, $a2: $t2| {
            #[allow(unused_variables)]
            let ($($cap,)*) = __captures;
            $body
        })
    };
    ([$($cap:ident),* $(,)?] |$a1:ident : $t1:ty, $a2:ident : $t2:ty, $a3:ident : $t3:ty $(,)?| $body:expr) => {
        $crate::registry::bind3(($($cap,)*), |__captures, $a1: $t1, $a2: $t2, $a3: $t3| {
            #[allow(unused_variables)]
            let ($($cap,)*) = __captures;
            $body
        })
    };
    ([$($cap:ident),* $(,)?] |$a1:ident : $t1:ty, $a2:ident : $t2:ty, $a3:ident : $t3:ty, $a4:ident : $t4:ty $(,)?| $body:expr) => {
        $crate::registry::bind4(($($cap,)*), |__captures, $a1: $t1, $a2: $t2, $a3: $t3, $a4: $t4| {
            #[allow(unused_variables)]
            let ($($cap,)*) = __captures;
            $body
        })
    };
}

macro_rules! binder {
    ($name:ident; $($arg:ident),*) => {
        /// Builds a [`Closure`] whose code takes the captures by reference and then
        /// the listed arguments; this fixes the captures' type for inference
        /// ([`closure!`](crate::closure!) uses it).
        ///
        /// ```
        /// let c = cohort_cluster::registry::bind0(5, |n: &i32| *n);
        /// assert_eq!(*c.captures(), 5);
        /// ```
        pub fn $name<C, Ret, $($arg,)* F>(captures: C, code: F) -> Closure<C, F>
        where
            F: Fn(&C, $($arg),*) -> Ret,
        {
            Closure::new(captures, code)
        }
    };
}
binder!(bind0;);
binder!(bind1; A1);
binder!(bind2; A1, A2);
binder!(bind3; A1, A2, A3);
binder!(bind4; A1, A2, A3, A4);

/// The trampoline for `F` called with `Args`: the one piece of code a call runs.
fn trampoline<F, Args>(payload: bytes::Bytes) -> Result<Vec<u8>, Failure>
where
    F: RemoteFn<Args>,
    Args: DeserializeOwned,
    F::Output: Serialize,
{
    let (state, rest): (&[u8], &[u8]) = postcard::take_from_bytes(&payload)
        .map_err(|e| Failure::new(ErrorKind::Serialization, format!("bad call payload: {e}")))?;
    let f = F::decode_state(state)?;
    // A large message's bytes may be kept by the arguments without a copy.
    let args: Args = codec::decoding_from(&payload, || codec::decode(rest))?;
    // Decoded: the encoded arguments (a slice of the connection's read buffer) go
    // before the function runs, so that a large argument is not held twice meanwhile:
    // given back to the node's spare buffer, where the next large message (a large
    // result of this call, or the next call's arguments) is encoded or read. If the
    // arguments kept bytes of the message (`SharedBytes`), it is given back once the
    // function has let them go.
    let kept = if payload.is_unique() {
        codec::give_back(payload);
        None
    } else {
        Some(payload)
    };
    let out = catch_unwind(AssertUnwindSafe(|| f.call(args))).map_err(Failure::from_panic);
    if let Some(payload) = kept {
        codec::give_back(payload);
    }
    codec::encode(&out?)
}

/// The trampoline of `F` as a plain function pointer.
///
/// ```
/// fn double(x: u64) -> u64 { x * 2 }
/// let t = cohort_cluster::registry::trampoline_of::<_, (u64,)>(&double);
/// let payload = cohort_cluster::registry::encode_call(&double, &(21u64,)).unwrap();
/// let out: u64 = postcard::from_bytes(&t(payload.into()).unwrap()).unwrap();
/// assert_eq!(out, 42);
/// ```
pub fn trampoline_of<F, Args>(_f: &F) -> Trampoline
where
    F: RemoteFn<Args>,
    Args: DeserializeOwned,
    F::Output: Serialize,
{
    trampoline::<F, Args>
}

/// Encodes a call's payload: the function's state, then the argument tuple.
///
/// # Errors
/// The serialization error of the state or the arguments.
///
/// ```
/// fn id(x: u8) -> u8 { x }
/// let p = cohort_cluster::registry::encode_call(&id, &(7u8,)).unwrap();
/// assert_eq!(p, vec![0, 7]);
/// ```
pub fn encode_call<F, Args>(f: &F, args: &Args) -> Result<Vec<u8>, Failure>
where
    F: RemoteFn<Args>,
    Args: Serialize,
{
    encode_with_state(&f.encode_state()?, args)
}

/// Encodes a call's payload from an encoded state: the state (length-prefixed),
/// then the argument tuple — what [`encode_call`] makes.
///
/// # Errors
/// The serialization error of the arguments.
pub(crate) fn encode_with_state<Args: Serialize>(
    state: &[u8],
    args: &Args,
) -> Result<Vec<u8>, Failure> {
    let mut out = encode_state_prefix(state)?;
    codec::encode_into(args, &mut out)?;
    Ok(out)
}

/// The start of a call's payload for an encoded state: the state, length-prefixed
/// (the arguments follow).
///
/// # Errors
/// Never in practice (bytes always encode); postcard's error otherwise.
pub(crate) fn encode_state_prefix(state: &[u8]) -> Result<Vec<u8>, Failure> {
    postcard::to_stdvec(state).map_err(|e| Failure::new(ErrorKind::Serialization, e.to_string()))
}

/// One registered function: its stable name, its trampoline, and its type (to find the
/// name from a call site).
#[derive(Debug)]
pub struct RemoteFnEntry {
    /// The stable name, `module::path::fn_name`.
    pub name: &'static str,
    /// Runs the function on encoded arguments.
    pub trampoline: Trampoline,
    /// The `TypeId` of the function item's type.
    pub type_id: fn() -> TypeId,
    /// Runs where its message arrives, on the connection's reader, instead of on a
    /// call runner ([`inline`](Self::inline)).
    pub inline: bool,
}

impl RemoteFnEntry {
    /// The registry entry for function `f` under `name` (used by `#[cohort::remote]`).
    ///
    /// ```
    /// fn sq(x: i64) -> i64 { x * x }
    /// let e = cohort_cluster::registry::RemoteFnEntry::of::<_, (i64,)>("demo::sq", &sq);
    /// assert_eq!(e.name, "demo::sq");
    /// ```
    pub fn of<F, Args>(name: &'static str, f: &F) -> Self
    where
        F: RemoteFn<Args>,
        Args: DeserializeOwned,
        F::Output: Serialize,
    {
        let _ = f;
        RemoteFnEntry {
            name,
            trampoline: trampoline::<F, Args>,
            type_id: TypeId::of::<F>,
            inline: false,
        }
    }

    /// Marks the function to run where its message arrives — on the reader of the
    /// connection it came on — rather than on a call runner: it saves the hand-off
    /// (a task and a thread wake-up), and it does not queue behind a long call
    /// holding a runner (which waits for the call queue's stall monitor). Only for
    /// functions that return
    /// at once and never wait (hand a message to a mailbox, set a flag): every
    /// message behind it on the connection waits while it runs. A call with more
    /// than 64 KiB of arguments, or with kept captures, still goes to a runner.
    ///
    /// ```
    /// fn note(x: u8) { let _ = x; }
    /// let e = cohort_cluster::registry::RemoteFnEntry::of::<_, (u8,)>("demo::note", &note).inline();
    /// assert!(e.inline);
    /// ```
    #[must_use]
    pub fn inline(mut self) -> Self {
        self.inline = true;
        self
    }
}

/// The link-time table of registered functions; `#[cohort::remote]` adds to it.
#[linkme::distributed_slice]
pub static REMOTE_FUNCTIONS: [fn() -> RemoteFnEntry];

struct Tables {
    by_name: HashMap<&'static str, Trampoline>,
    by_type: HashMap<TypeId, &'static str>,
    /// The trampolines of inline functions, by address.
    inline: std::collections::HashSet<usize>,
}

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let mut by_name = HashMap::new();
        let mut by_type = HashMap::new();
        let mut inline = std::collections::HashSet::new();
        for make in REMOTE_FUNCTIONS {
            let e = make();
            by_name.insert(e.name, e.trampoline);
            by_type.insert((e.type_id)(), e.name);
            if e.inline {
                inline.insert(e.trampoline as usize);
            }
        }
        Tables {
            by_name,
            by_type,
            inline,
        }
    })
}

/// Whether `t` is the trampoline of a function registered as
/// [`inline`](RemoteFnEntry::inline) or marked so with [`run_inline`].
pub(crate) fn is_inline(t: Trampoline) -> bool {
    tables().inline.contains(&(t as usize)) || MARKED_INLINE.read().contains(&(t as usize))
}

/// Trampolines marked inline at run time ([`run_inline`]), by address.
static MARKED_INLINE: parking_lot::RwLock<std::collections::BTreeSet<usize>> =
    parking_lot::RwLock::new(std::collections::BTreeSet::new());

/// Marks `f` — typically a monomorph of a generic function, which the link-time
/// table of [`RemoteFnEntry::inline`] cannot name — as one that runs where its
/// calls arrive in this process, as an inline registered function does: without
/// the hand-off to a call runner, and so without waiting behind a long call that
/// holds one. The mark is this process's: mark `f` in the process that runs it
/// (the callee), before the calls come — a library does it where it makes the
/// state such calls read (cohort-darray marks its region reads when a chunk is
/// stored). The same rules hold as for `RemoteFnEntry::inline`: only for functions
/// that return at once and never wait (no lock another thread may hold while it
/// waits on a message, no blocking call), since every message behind it on the
/// connection waits while it runs; calls with more than 64 KiB of arguments or
/// with kept captures still go to a runner. Marking twice is harmless.
///
/// ```
/// fn peek(x: u8) -> u8 { x }
/// cohort_cluster::registry::run_inline::<_, (u8,)>(&peek);
/// cohort_cluster::registry::run_inline::<_, (u8,)>(&peek);
/// ```
pub fn run_inline<F, Args>(f: &F)
where
    F: RemoteFn<Args>,
    Args: DeserializeOwned,
    F::Output: Serialize,
{
    let t = trampoline_of::<F, Args>(f) as usize;
    if !MARKED_INLINE.read().contains(&t) {
        MARKED_INLINE.write().insert(t);
    }
}

/// The trampoline registered under `name`, if this executable has one.
///
/// ```
/// assert!(cohort_cluster::registry::lookup("no::such::fn").is_none());
/// ```
pub fn lookup(name: &str) -> Option<Trampoline> {
    tables().by_name.get(name).copied()
}

/// The registered name of function type `F`, if it was registered.
///
/// ```
/// fn unregistered() {}
/// assert!(cohort_cluster::registry::name_of_val(&unregistered).is_none());
/// ```
pub fn name_of_val<F: 'static>(_f: &F) -> Option<&'static str> {
    tables().by_type.get(&TypeId::of::<F>()).copied()
}

/// Every registered name (for diagnostics and the worker's `--list-functions`).
///
/// ```
/// let names = cohort_cluster::registry::registered_names();
/// assert!(names.iter().all(|n| !n.is_empty()));
/// ```
pub fn registered_names() -> Vec<&'static str> {
    let mut v: Vec<_> = tables().by_name.keys().copied().collect();
    v.sort_unstable();
    v
}

/// The fixed point code offsets are measured from. `#[inline(never)]` and a body
/// of its own keep it a distinct function at a fixed place in the executable.
#[inline(never)]
fn anchor() -> u64 {
    std::hint::black_box(0x636f686f7274)
}

/// The offset of a trampoline from the anchor, as sent on the wire.
///
/// ```
/// fn f() {}
/// let t = cohort_cluster::registry::trampoline_of::<_, ()>(&f);
/// let off = cohort_cluster::registry::code_offset(t);
/// // SAFETY: `off` was made by `code_offset` in this very executable.
/// assert_eq!(unsafe { cohort_cluster::registry::trampoline_at(off) } as usize, t as usize);
/// ```
pub fn code_offset(t: Trampoline) -> i64 {
    (t as usize as i64).wrapping_sub(anchor as *const () as usize as i64)
}

/// The trampoline at `offset` from the anchor.
///
/// The runtime calls it only for peers whose build fingerprint equals ours; that is
/// also the trust model: a peer that knows the cookie and runs the same executable
/// can run any trampoline of it (see `docs/security.md`).
///
/// # Safety
/// `offset` must have been made by [`code_offset`] from a real [`Trampoline`] in an
/// executable identical to this one (equal [build fingerprints](crate::fingerprint)).
/// Any other value gives a pointer to arbitrary code, and calling it is undefined
/// behaviour.
///
/// ```
/// fn f() {}
/// let t = cohort_cluster::registry::trampoline_of::<_, ()>(&f);
/// let off = cohort_cluster::registry::code_offset(t);
/// // SAFETY: made by `code_offset` in this executable.
/// let back = unsafe { cohort_cluster::registry::trampoline_at(off) };
/// assert_eq!(back as usize, t as usize);
/// ```
pub unsafe fn trampoline_at(offset: i64) -> Trampoline {
    let addr = (anchor as *const () as usize as i64).wrapping_add(offset) as usize;
    // SAFETY: by the caller's contract `offset` came from `code_offset` in an
    // identical executable, computed from a real `Trampoline`; position-independent
    // code moves every function by the same amount, so anchor + offset is that
    // trampoline here too.
    unsafe { std::mem::transmute::<usize, Trampoline>(addr) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(x: u8) -> u8 {
        x
    }
    fn marked(x: u8) -> u8 {
        x + 1
    }

    #[linkme::distributed_slice(REMOTE_FUNCTIONS)]
    static PLAIN: fn() -> RemoteFnEntry =
        || RemoteFnEntry::of::<_, (u8,)>("cohort_cluster::registry::tests::plain", &plain);
    #[linkme::distributed_slice(REMOTE_FUNCTIONS)]
    static MARKED: fn() -> RemoteFnEntry = || {
        RemoteFnEntry::of::<_, (u8,)>("cohort_cluster::registry::tests::marked", &marked).inline()
    };

    #[test]
    fn only_functions_marked_inline_run_where_they_arrive() {
        let plain = lookup("cohort_cluster::registry::tests::plain").expect("registered");
        let marked = lookup("cohort_cluster::registry::tests::marked").expect("registered");
        assert!(!is_inline(plain));
        assert!(is_inline(marked));
        // Found by its trampoline, as a call by code offset finds it.
        assert!(is_inline(trampoline_of::<_, (u8,)>(&super::tests::marked)));
    }

    fn generic_peek<T: Clone>(x: T) -> T {
        x
    }

    #[test]
    fn a_monomorph_marked_at_run_time_runs_where_it_arrives_and_its_siblings_do_not() {
        let t16 = trampoline_of::<_, (u16,)>(&generic_peek::<u16>);
        let t32 = trampoline_of::<_, (u32,)>(&generic_peek::<u32>);
        assert!(!is_inline(t16) && !is_inline(t32));
        run_inline::<_, (u16,)>(&generic_peek::<u16>);
        assert!(is_inline(t16));
        assert!(!is_inline(t32), "only the monomorph marked");
    }

    /// Bytes that say, when decoded, whether they came as a slice of the message.
    struct Shared(bool);

    impl<'de> serde::Deserialize<'de> for Shared {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Shared;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_bytes<E: serde::de::Error>(self, b: &[u8]) -> Result<Shared, E> {
                    Ok(Shared(codec::shared_bytes(b).is_some_and(|s| {
                        s.as_ptr() == b.as_ptr() && s.len() == b.len()
                    })))
                }
            }
            d.deserialize_bytes(V)
        }
    }

    fn shared(s: Shared) -> bool {
        s.0
    }

    #[test]
    fn a_large_call_s_arguments_may_keep_its_bytes_without_a_copy_and_a_small_one_s_not() {
        let t = trampoline_of::<_, (Shared,)>(&shared);
        for (len, want) in [(crate::shell::spare::SPARE_MIN, true), (1000, false)] {
            let bytes = codec::Bulk(vec![7u8; len]);
            let state = RemoteFn::<(Shared,)>::encode_state(&shared).unwrap();
            let payload = encode_with_state(&state, &(bytes,)).unwrap();
            let out: bool = postcard::from_bytes(&t(payload.into()).unwrap()).unwrap();
            assert_eq!(out, want, "{len} bytes");
        }
        // Outside a call's decoding: nothing to share.
        assert!(codec::shared_bytes(&[1; 10]).is_none());
    }
}
