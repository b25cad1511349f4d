//! Message tags: what tells consecutive messages (or collectives) between the same
//! processes apart (Julia's `tag` keyword; its default `nothing` is [`Tag::None`]).

use serde::{Deserialize, Serialize};

/// A message tag. Anything that converts into one may be passed where a tag is
/// expected: `()` (Julia's `nothing`), an integer or a string.
///
/// ```
/// use cohort_darray::spmd::Tag;
/// assert_eq!(Tag::from(()), Tag::None);
/// assert_eq!(Tag::from(7u32), Tag::Int(7));
/// assert_eq!(Tag::from("halo"), Tag::Name("halo".into()));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Tag {
    /// No tag (Julia's `tag=nothing`).
    #[default]
    None,
    /// An integer tag.
    Int(i64),
    /// A named tag.
    Name(String),
}

impl From<()> for Tag {
    fn from((): ()) -> Tag {
        Tag::None
    }
}

impl From<&str> for Tag {
    fn from(s: &str) -> Tag {
        Tag::Name(s.to_string())
    }
}

impl From<String> for Tag {
    fn from(s: String) -> Tag {
        Tag::Name(s)
    }
}

macro_rules! int_tags {
    ($($t:ty),*) => {$(
        impl From<$t> for Tag {
            fn from(n: $t) -> Tag {
                Tag::Int(n as i64)
            }
        }
    )*};
}
int_tags!(i32, u32, i64, u64, usize);

/// Which primitive a message belongs to: a user's `sendto` and the messages of a
/// `barrier` or `bcast` with the same tag never match each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) enum Op {
    User,
    Barrier,
    Bcast,
    /// `bcast_into`: raw elements, never matched by a `bcast`.
    BcastInto,
    Scatter,
    Gather,
    Reduce,
    Allreduce,
}

/// What a receiver matches a message on, beside its sender.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct Key {
    pub(crate) op: Op,
    pub(crate) tag: Tag,
    /// A collective's step (a barrier's round).
    pub(crate) step: u32,
}

impl Key {
    pub(crate) fn new(op: Op, tag: Tag, step: u32) -> Key {
        Key { op, tag, step }
    }
}
