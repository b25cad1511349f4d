//! `#[twin]`: the blocking form of an async function or method, generated from its one
//! definition so the two cannot drift.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};
use syn::{
    FnArg, GenericArgument, ImplItemFn, Pat, PathArguments, ReturnType, Signature, Type,
    TypeParamBound,
};

/// The arguments of `#[twin(...)]`.
pub(crate) struct Args {
    /// The example of the blocking form's docs (a doc test).
    example: String,
    /// Where `runtime::block_here` is: `::cohort_cluster` by default.
    rt: syn::Path,
    /// The example only compiles (it would start workers).
    no_run: bool,
}

pub(crate) fn parse_args(attr: proc_macro::TokenStream) -> syn::Result<Args> {
    let mut example = None;
    let mut rt: Option<syn::Path> = None;
    let mut no_run = false;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("no_run") {
            no_run = true;
            return Ok(());
        }
        if meta.path.is_ident("example") {
            let s: syn::LitStr = meta.value()?.parse()?;
            example = Some(s.value());
            Ok(())
        } else if meta.path.is_ident("rt") {
            rt = Some(meta.value()?.parse()?);
            Ok(())
        } else {
            Err(meta.error("expected `example = \"...\"`, `no_run` or `rt = path`"))
        }
    });
    syn::parse::Parser::parse(parser, attr)?;
    let example = example.ok_or_else(|| {
        syn::Error::new(
            Span::call_site(),
            "#[twin] needs `example = \"...\"`: the doc test of the blocking form",
        )
    })?;
    Ok(Args {
        example,
        rt: rt.unwrap_or_else(|| syn::parse_quote!(::cohort_cluster)),
        no_run,
    })
}

/// What the async form resolves to: an `async fn`'s return type, or the `Output` of
/// a `fn … -> impl Future<Output = T>`.
fn output_of(sig: &Signature) -> syn::Result<Type> {
    let ret = match &sig.output {
        ReturnType::Default => return Ok(syn::parse_quote!(())),
        ReturnType::Type(_, t) => t,
    };
    if sig.asyncness.is_some() {
        return Ok((**ret).clone());
    }
    if let Type::ImplTrait(it) = &**ret {
        for b in &it.bounds {
            if let TypeParamBound::Trait(t) = b {
                let Some(last) = t.path.segments.last() else {
                    continue;
                };
                if last.ident != "Future" {
                    continue;
                }
                if let PathArguments::AngleBracketed(a) = &last.arguments {
                    for g in &a.args {
                        if let GenericArgument::AssocType(at) = g {
                            if at.ident == "Output" {
                                return Ok(at.ty.clone());
                            }
                        }
                    }
                }
            }
        }
    }
    Err(syn::Error::new_spanned(
        ret,
        "#[twin] takes an `async fn` or a `fn` returning `impl Future<Output = T>`",
    ))
}

/// The argument names to pass on, and whether there is a receiver.
fn call_args(sig: &Signature) -> syn::Result<(Vec<syn::Ident>, bool)> {
    let mut names = Vec::new();
    let mut receiver = false;
    for a in &sig.inputs {
        match a {
            FnArg::Receiver(_) => receiver = true,
            FnArg::Typed(t) => match &*t.pat {
                Pat::Ident(p) => names.push(p.ident.clone()),
                other => {
                    return Err(syn::Error::new_spanned(
                        other,
                        "#[twin] needs plain argument names",
                    ))
                }
            },
        }
    }
    Ok((names, receiver))
}

/// The blocking form's signature: the same, not async, returning the output.
fn blocking_sig(sig: &Signature, name: syn::Ident, out: Type) -> Signature {
    let mut s = sig.clone();
    s.asyncness = None;
    s.ident = name;
    s.output = syn::parse_quote!(-> #out);
    // Patterns like `mut x` become plain: the blocking form only passes them on.
    for a in s.inputs.iter_mut() {
        if let FnArg::Typed(t) = a {
            if let Pat::Ident(p) = &mut *t.pat {
                p.mutability = None;
            }
        }
    }
    s
}

fn docs(link: &str, args: &Args) -> TokenStream {
    let example = &args.example;
    let fence = if args.no_run { " ```no_run" } else { " ```" };
    let summary = format!(" Blocking form of {link}: waits for it on the calling thread.");
    let errors = format!(" As {link}.");
    let example = format!("{fence}\n{example}\n ```");
    quote! {
        #[doc = #summary]
        #[doc = ""]
        #[doc = " # Errors"]
        #[doc = #errors]
        #[doc = ""]
        #[doc = " # Panics"]
        #[doc = " When called from async code on a tokio runtime thread, where blocking would"]
        #[doc = " stall that thread's other tasks (`.await` the async form there)."]
        #[doc = ""]
        #[doc = #example]
    }
}

/// Expands `#[twin]` on an associated function: the method and `name_blocking`.
pub(crate) fn method(args: Args, item: ImplItemFn) -> syn::Result<TokenStream> {
    let sig = &item.sig;
    let out = output_of(sig)?;
    let (names, receiver) = call_args(sig)?;
    let name = &sig.ident;
    let bname = format_ident!("{}_blocking", name);
    let bsig = blocking_sig(sig, bname, out);
    let rt = &args.rt;
    let what = format!("{name}_blocking");
    let call = if receiver {
        quote!(self.#name(#(#names),*))
    } else {
        quote!(Self::#name(#(#names),*))
    };
    let doc = docs(&format!("[`{name}`](Self::{name})"), &args);
    let vis = &item.vis;
    Ok(quote! {
        #item
        #doc
        #vis #bsig {
            #rt::runtime::block_here(#what, #call)
        }
    })
}

/// Expands `#[twin]` on a free function: the function, and its blocking form of the
/// same name in a hidden module `__twin_<name>` (for a `blocking` module to re-export).
pub(crate) fn free(args: Args, item: syn::ItemFn) -> syn::Result<TokenStream> {
    let sig = &item.sig;
    let out = output_of(sig)?;
    let (names, receiver) = call_args(sig)?;
    if receiver {
        return Err(syn::Error::new_spanned(
            sig,
            "a free function has no receiver",
        ));
    }
    let name = &sig.ident;
    let module = format_ident!("__twin_{}", name);
    let bsig = blocking_sig(sig, name.clone(), out);
    let rt = &args.rt;
    let what = format!("blocking::{name}");
    let doc = docs(&format!("[`{name}`](super::{name})"), &args);
    let vis = &item.vis;
    Ok(quote! {
        #item
        #[doc(hidden)]
        #vis mod #module {
            #[allow(unused_imports)]
            use super::*;
            #doc
            #vis #bsig {
                #rt::runtime::block_here(#what, super::#name(#(#names),*))
            }
        }
    })
}
