//! # cohort-macros — procedural macros for cohort
//!
//! - `#[cohort::remote]` registers a function under a stable name so that any process
//!   linking it can run it when called by name — also a worker running a different
//!   executable.
//! - `#[cohort::main]` marks `main`: a program started in worker mode serves as a
//!   worker instead of running `main`; an `async fn main` runs on cohort's runtime.
//!
//! Use them through the `cohort` crate, which re-exports both.

use proc_macro::TokenStream;
use quote::quote;
use syn::{parse_macro_input, FnArg, ItemFn};

/// Registers a function for remote calls by name: `module::path::fn_name`.
///
/// The function stays an ordinary function. Its arguments and result must be serde
/// types, and it must not be generic.
///
/// ```ignore
/// #[cohort::remote]
/// fn add(a: i64, b: i64) -> i64 { a + b }
///
/// let v = cohort::remotecall_fetch_blocking(add, 2, (1, 2))?;
/// ```
#[proc_macro_attribute]
pub fn remote(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return syn::Error::new(
            proc_macro2::Span::call_site(),
            "#[cohort::remote] takes no arguments",
        )
        .to_compile_error()
        .into();
    }
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
        #[::cohort::__private::linkme::distributed_slice(::cohort::__private::REMOTE_FUNCTIONS)]
        #[linkme(crate = ::cohort::__private::linkme)]
        #[allow(non_upper_case_globals)]
        static #entry: fn() -> ::cohort::__private::RemoteFnEntry = || {
            ::cohort::__private::RemoteFnEntry::of::<_, (#(#arg_types,)*)>(
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
#[proc_macro_attribute]
pub fn main(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return syn::Error::new(
            proc_macro2::Span::call_site(),
            "#[cohort::main] takes no arguments",
        )
        .to_compile_error()
        .into();
    }
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
                ::cohort::init();
                ::cohort::__private::run_main(async move #body)
            }
        }
    } else {
        quote! {
            #(#attrs)*
            #vis #sig {
                ::cohort::init();
                #body
            }
        }
    };
    expanded.into()
}
