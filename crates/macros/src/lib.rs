//! # cohort-macros — procedural macros for cohort
//!
//! - `#[cohort::remote]` registers a function under a stable name so that any process
//!   linking it can run it when called by name — also a worker running a different
//!   executable.
//! - `#[cohort::main]` marks `main`: a program started in worker mode serves as a
//!   worker instead of running `main`; an `async fn main` runs on cohort's runtime.
//! - `#[twin]` and `#[twin_fn]` (used inside cohort's crates) generate the blocking
//!   form of an async method or function from its one definition.
//!
//! Use them through the `cohort` crate, which re-exports both. A crate that depends on
//! a layer (`cohort-cluster`) rather than on the facade names it with
//! `crate = …`: `#[cohort_macros::remote(crate = cohort_cluster)]`.
//!
//! ## What the expansions name in that crate
//!
//! Both macros expand to paths under the crate they are given (`::cohort` by
//! default), which must provide: `__private::linkme` (the `linkme` crate),
//! `registry::REMOTE_FUNCTIONS` and `registry::RemoteFnEntry` (for `remote`), and
//! `init` and `runtime::run_main` (for `main`). `cohort` and `cohort-cluster` both do.

use proc_macro::TokenStream;
use quote::quote;
use syn::{parse_macro_input, FnArg, ItemFn};

mod twin;

/// Generates the blocking form `name_blocking` of an async method (an `async fn` or
/// a `fn` returning `impl Future<Output = T>`) from its one definition: same
/// generics, arguments and bounds, returning `T`, waiting on the calling thread
/// through `runtime::block_here` (which panics with a clear message on a thread that
/// runs async tasks). `example = "..."` is the blocking form's doc test; `rt = path`
/// names the crate with `runtime::block_here` (default `::cohort_cluster`).
///
/// ```
/// struct Counter(u8);
/// impl Counter {
///     /// The value.
///     #[cohort_macros::twin(example = "assert_eq!(1, 1);")]
///     pub async fn get(&self) -> u8 {
///         self.0
///     }
/// }
/// assert_eq!(Counter(3).get_blocking(), 3);
/// ```
#[proc_macro_attribute]
pub fn twin(attr: TokenStream, item: TokenStream) -> TokenStream {
    let args = match twin::parse_args(attr) {
        Ok(a) => a,
        Err(e) => return e.to_compile_error().into(),
    };
    let item = parse_macro_input!(item as syn::ImplItemFn);
    twin::method(args, item)
        .unwrap_or_else(|e| e.to_compile_error())
        .into()
}

/// Generates the blocking form of an async free function from its one definition,
/// under the same name in a hidden module `__twin_<name>` beside it, for a `blocking`
/// module to re-export (`pub use …::__twin_<name>::<name>;`). Arguments as
/// [`macro@twin`].
///
/// ```
/// mod api {
///     /// Doubles.
///     #[cohort_macros::twin_fn(example = "assert_eq!(1, 1);")]
///     pub async fn double(x: u8) -> u8 {
///         x * 2
///     }
/// }
/// assert_eq!(api::__twin_double::double(4), 8);
/// ```
#[proc_macro_attribute]
pub fn twin_fn(attr: TokenStream, item: TokenStream) -> TokenStream {
    let args = match twin::parse_args(attr) {
        Ok(a) => a,
        Err(e) => return e.to_compile_error().into(),
    };
    let item = parse_macro_input!(item as ItemFn);
    twin::free(args, item)
        .unwrap_or_else(|e| e.to_compile_error())
        .into()
}

/// The crate the expansion names: `crate = path` or `crate = "path"`, else `::cohort`.
fn crate_path(attr: TokenStream, macro_name: &str) -> syn::Result<syn::Path> {
    let mut krate: Option<syn::Path> = None;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("crate") {
            if krate.is_some() {
                return Err(meta.error("`crate` is given twice"));
            }
            let value = meta.value()?;
            krate = Some(if value.peek(syn::LitStr) {
                value.parse::<syn::LitStr>()?.parse()?
            } else {
                value.parse()?
            });
            Ok(())
        } else {
            Err(meta.error(format!(
                "unknown argument; #[{macro_name}] takes only `crate = path`"
            )))
        }
    });
    syn::parse::Parser::parse(parser, attr)?;
    Ok(krate.unwrap_or_else(|| syn::parse_quote!(::cohort)))
}

/// Registers a function for remote calls by name: `module::path::fn_name`.
///
/// The function stays an ordinary function. Its arguments and result must be serde
/// types, and it must not be generic.
///
/// `#[cohort::remote]` names the `cohort` facade; a crate that depends on
/// `cohort-cluster` instead says so with `crate = cohort_cluster` (or
/// `crate = "cohort_cluster"`, as tokio's `#[tokio::main(crate = "…")]`).
///
/// ```ignore
/// #[cohort::remote]
/// fn add(a: i64, b: i64) -> i64 { a + b }
///
/// let v = cohort::blocking::remotecall_fetch(add, 2, (1, 2))?;
/// ```
///
/// Without the facade:
///
/// ```
/// #[cohort_macros::remote(crate = cohort_cluster)]
/// fn add(a: i64, b: i64) -> i64 {
///     a + b
/// }
///
/// // A call to this process itself runs the function in place.
/// let me = cohort_cluster::myid();
/// assert_eq!(cohort_cluster::blocking::remotecall_fetch(add, me, (1, 2)).unwrap(), 3);
/// ```
///
/// A remote function cannot be generic (it is registered under one name):
///
/// ```compile_fail
/// #[cohort_macros::remote(crate = cohort_cluster)]
/// fn first<T>(v: Vec<T>) -> Option<T> {
///     v.into_iter().next()
/// }
/// ```
///
/// Only `crate` is an argument:
///
/// ```compile_fail
/// #[cohort_macros::remote(crate = cohort_cluster, name = "add")]
/// fn add(a: i64, b: i64) -> i64 {
///     a + b
/// }
/// ```
#[proc_macro_attribute]
pub fn remote(attr: TokenStream, item: TokenStream) -> TokenStream {
    let krate = match crate_path(attr, "cohort::remote") {
        Ok(k) => k,
        Err(e) => return e.to_compile_error().into(),
    };
    let func = parse_macro_input!(item as ItemFn);
    if !func.sig.generics.params.is_empty() {
        return syn::Error::new_spanned(&func.sig.generics, "a remote function cannot be generic")
            .to_compile_error()
            .into();
    }
    if func.sig.asyncness.is_some() {
        return syn::Error::new_spanned(
            func.sig.asyncness,
            "#[cohort::remote] functions are synchronous; they run on a blocking pool",
        )
        .to_compile_error()
        .into();
    }
    let name = &func.sig.ident;
    let mut arg_types = Vec::new();
    for input in &func.sig.inputs {
        match input {
            FnArg::Typed(t) => arg_types.push(t.ty.clone()),
            FnArg::Receiver(r) => {
                return syn::Error::new_spanned(r, "a remote function cannot take self")
                    .to_compile_error()
                    .into()
            }
        }
    }
    let entry = quote::format_ident!("__COHORT_REMOTE_{}", name.to_string().to_uppercase());
    let expanded = quote! {
        #func

        #[doc(hidden)]
        #[#krate::__private::linkme::distributed_slice(#krate::registry::REMOTE_FUNCTIONS)]
        #[linkme(crate = #krate::__private::linkme)]
        #[allow(non_upper_case_globals)]
        static #entry: fn() -> #krate::registry::RemoteFnEntry = || {
            #krate::registry::RemoteFnEntry::of::<_, (#(#arg_types,)*)>(
                ::core::concat!(::core::module_path!(), "::", ::core::stringify!(#name)),
                &#name,
            )
        };
    };
    expanded.into()
}

/// Marks `main`. In worker mode (started with `--cohort-worker`) the process serves
/// as a worker and never runs `main`; otherwise `main` runs as usual — an `async fn
/// main` on cohort's runtime.
///
/// ```ignore
/// #[cohort::main]
/// async fn main() {
///     cohort::addprocs(2).await.unwrap();
/// }
/// ```
///
/// Like [`remote`](macro@remote), it takes `crate = path` for programs that use
/// `cohort-cluster` without the facade:
///
/// ```
/// #[cohort_macros::main(crate = "cohort_cluster")]
/// async fn main() {
///     assert_eq!(cohort_cluster::myid(), 1);
/// }
/// ```
#[proc_macro_attribute]
pub fn main(attr: TokenStream, item: TokenStream) -> TokenStream {
    let krate = match crate_path(attr, "cohort::main") {
        Ok(k) => k,
        Err(e) => return e.to_compile_error().into(),
    };
    let mut func = parse_macro_input!(item as ItemFn);
    let is_async = func.sig.asyncness.take().is_some();
    let body = &func.block;
    let attrs = &func.attrs;
    let vis = &func.vis;
    let sig = &func.sig;
    let expanded = if is_async {
        quote! {
            #(#attrs)*
            #vis #sig {
                #krate::init();
                #krate::runtime::run_main(async move #body)
            }
        }
    } else {
        quote! {
            #(#attrs)*
            #vis #sig {
                #krate::init();
                #body
            }
        }
    };
    expanded.into()
}
