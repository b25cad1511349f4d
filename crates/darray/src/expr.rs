//! Element-wise arithmetic through Rust operators: `2.0 * &da / &db` builds an
//! [`Expr`], and [`Expr::eval`] computes it on the owners — the whole expression in
//! one call per owner, fused as Julia's dot-broadcast `2 .* dA ./ dB` is, with no
//! distributed temporaries.

use std::ops::{Add, Div, Mul, Neg, Sub};

use cohort_cluster::Cluster;
use ndarray::{Array, Dimension, Zip};
use num_traits::Num;
use serde::{Deserialize, Serialize};

use crate::darray::{all_of, DArray};
use crate::element::Element;
use crate::error::{ChunkFailure, DArrayError};
use crate::store::{self, DArrayId};

/// An arithmetic operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
}

impl Op {
    fn apply<T: Num + Copy>(self, a: T, b: T) -> T {
        match self {
            Op::Add => a + b,
            Op::Sub => a - b,
            Op::Mul => a * b,
            Op::Div => a / b,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Node<T> {
    /// The `n`-th array of the expression.
    Leaf(usize),
    Scalar(T),
    Bin(Op, Box<Node<T>>, Box<Node<T>>),
}

/// An element-wise expression of distributed arrays and scalars, built with `+`,
/// `-`, `*`, `/` and unary `-` on `&DArray`s, scalars and other expressions; nothing
/// is computed until [`eval`](Self::eval). Every array in it must be laid out alike
/// ([`DArray::same_layout`]); [`DArray::redistribute_like`] makes one so.
///
/// ```
/// use cohort_darray::blocking::dfill;
/// let a = dfill(std::f64::consts::PI, 100).unwrap();
/// let b = dfill(0.5, 100).unwrap();
/// let c = (2.0 * &a / &b).eval_blocking().unwrap(); // Julia: 2 .* dA ./ dB
/// assert!(c.all_approx_blocking(4.0 * std::f64::consts::PI).unwrap());
/// ```
pub struct Expr<'a, T, D> {
    leaves: Vec<&'a DArray<T, D>>,
    node: Node<T>,
}

impl<T, D> std::fmt::Debug for Expr<'_, T, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Expr")
            .field(
                "arrays",
                &self.leaves.iter().map(|d| d.handle.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl<'a, T: Clone, D> Expr<'a, T, D> {
    fn leaf(d: &'a DArray<T, D>) -> Self {
        Expr {
            leaves: vec![d],
            node: Node::Leaf(0),
        }
    }

    fn scalar(x: T) -> Self {
        Expr {
            leaves: Vec::new(),
            node: Node::Scalar(x),
        }
    }

    fn bin(self, op: Op, rhs: Expr<'a, T, D>) -> Self {
        let offset = self.leaves.len();
        let mut leaves = self.leaves;
        leaves.extend(rhs.leaves);
        Expr {
            leaves,
            node: Node::Bin(op, Box::new(self.node), Box::new(shift(rhs.node, offset))),
        }
    }
}

fn shift<T>(n: Node<T>, by: usize) -> Node<T> {
    match n {
        Node::Leaf(i) => Node::Leaf(i + by),
        Node::Scalar(x) => Node::Scalar(x),
        Node::Bin(op, a, b) => Node::Bin(op, Box::new(shift(*a, by)), Box::new(shift(*b, by))),
    }
}

impl<T: Element + Num + Copy, D: Dimension + 'static> Expr<'_, T, D> {
    /// Computes the expression into a new array laid out like its operands: one call
    /// per owner, each computing its chunk from the operands' chunks it holds.
    ///
    /// # Errors
    /// [`DArrayError::LayoutMismatch`] if the arrays are not laid out alike; as
    /// [`DArray::map`].
    ///
    /// # Cancel safety
    /// As [`DArray::map`].
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let a = cohort_darray::dfill(3i64, 4).await.unwrap();
    /// let b = cohort_darray::dones::<i64, _>(4).await.unwrap();
    /// let c = (&a - &b * 2 + 1).eval().await.unwrap();
    /// assert_eq!(c.sum().await.unwrap(), 8);
    /// # });
    /// ```
    #[cohort_macros::twin(example = " let a = cohort_darray::blocking::dfill(3i64, 4).unwrap();
 let c = (-&a).eval_blocking().unwrap();
 assert_eq!(c.sum_blocking().unwrap(), -12);")]
    pub async fn eval(self) -> Result<DArray<T, D>, DArrayError> {
        let first = self.leaves[0];
        if let Some(bad) = self.leaves.iter().find(|d| !d.same_layout(first)) {
            return Err(DArrayError::LayoutMismatch {
                left: first.shape().to_vec(),
                right: bad.shape().to_vec(),
            });
        }
        let out = first.reserve_like::<T>();
        let ids: Vec<DArrayId> = self.leaves.iter().map(|d| d.id()).collect();
        let c = first.cluster();
        let calls = first
            .procs()
            .iter()
            .map(|&p| {
                let f = c.remotecall_fetch(
                    eval_chunk::<T, D>,
                    p,
                    (ids.clone(), self.node.clone(), out.id()),
                );
                (p, f)
            })
            .collect();
        all_of(calls).await?;
        Ok(out)
    }
}

/// A partial result on an owner: one of the chunks, a new array, or a scalar.
enum Val<T, D> {
    Chunk(usize),
    Owned(Array<T, D>),
    Scalar(T),
}

fn eval_node<T: Num + Copy, D: Dimension>(n: &Node<T>, chunks: &[&Array<T, D>]) -> Val<T, D> {
    match n {
        Node::Leaf(i) => Val::Chunk(*i),
        Node::Scalar(x) => Val::Scalar(*x),
        Node::Bin(op, a, b) => {
            let op = *op;
            match (eval_node(a, chunks), eval_node(b, chunks)) {
                (Val::Scalar(x), Val::Scalar(y)) => Val::Scalar(op.apply(x, y)),
                (Val::Owned(mut x), Val::Scalar(y)) => {
                    x.mapv_inplace(|v| op.apply(v, y));
                    Val::Owned(x)
                }
                (Val::Scalar(x), Val::Owned(mut y)) => {
                    y.mapv_inplace(|v| op.apply(x, v));
                    Val::Owned(y)
                }
                (Val::Chunk(i), Val::Scalar(y)) => Val::Owned(chunks[i].mapv(|v| op.apply(v, y))),
                (Val::Scalar(x), Val::Chunk(j)) => Val::Owned(chunks[j].mapv(|v| op.apply(x, v))),
                (Val::Chunk(i), Val::Chunk(j)) => Val::Owned(
                    Zip::from(chunks[i])
                        .and(chunks[j])
                        .map_collect(|p, q| op.apply(*p, *q)),
                ),
                (Val::Owned(mut x), Val::Chunk(j)) => {
                    x.zip_mut_with(chunks[j], |p, q| *p = op.apply(*p, *q));
                    Val::Owned(x)
                }
                (Val::Chunk(i), Val::Owned(mut y)) => {
                    y.zip_mut_with(chunks[i], |q, p| *q = op.apply(*p, *q));
                    Val::Owned(y)
                }
                (Val::Owned(mut x), Val::Owned(y)) => {
                    x.zip_mut_with(&y, |p, q| *p = op.apply(*p, *q));
                    Val::Owned(x)
                }
            }
        }
    }
}

fn eval_chunk<T: Element + Num + Copy, D: Dimension + 'static>(
    ids: Vec<DArrayId>,
    node: Node<T>,
    out: DArrayId,
) -> Result<(), ChunkFailure> {
    let chunks = ids
        .iter()
        .map(|id| store::get::<T, D>(*id))
        .collect::<Result<Vec<_>, _>>()?;
    // Recursive: `&a + &a` reads one chunk twice.
    let guards: Vec<_> = chunks.iter().map(|c| c.read_recursive()).collect();
    let arrays: Vec<&Array<T, D>> = guards.iter().map(|g| &**g).collect();
    let result = match eval_node(&node, &arrays) {
        Val::Owned(a) => a,
        Val::Chunk(i) => arrays[i].clone(),
        Val::Scalar(x) => Array::from_elem(arrays[0].raw_dim(), x),
    };
    drop(guards);
    store::insert(&Cluster::current(), out, result)
}

// ----- the operators -----

/// What may stand on either side of an operator: an array, an expression or (for
/// the concrete numeric types) a scalar.
pub trait IntoExpr<'a, T, D> {
    /// The operand as an expression.
    ///
    /// ```
    /// use cohort_darray::IntoExpr;
    /// let d = cohort_darray::blocking::dones::<f64, _>(2).unwrap();
    /// let e = (&d).into_expr();
    /// assert_eq!(e.eval_blocking().unwrap().sum_blocking().unwrap(), 2.0);
    /// ```
    fn into_expr(self) -> Expr<'a, T, D>;
}

impl<'a, T: Clone, D> IntoExpr<'a, T, D> for &'a DArray<T, D> {
    fn into_expr(self) -> Expr<'a, T, D> {
        Expr::leaf(self)
    }
}

impl<'a, T: Clone, D> IntoExpr<'a, T, D> for Expr<'a, T, D> {
    fn into_expr(self) -> Expr<'a, T, D> {
        self
    }
}

macro_rules! binary {
    ($trait:ident, $method:ident, $op:expr) => {
        impl<'a, T: Clone, D, R: IntoExpr<'a, T, D>> $trait<R> for &'a DArray<T, D> {
            type Output = Expr<'a, T, D>;
            fn $method(self, rhs: R) -> Expr<'a, T, D> {
                Expr::leaf(self).bin($op, rhs.into_expr())
            }
        }
        impl<'a, T: Clone, D, R: IntoExpr<'a, T, D>> $trait<R> for Expr<'a, T, D> {
            type Output = Expr<'a, T, D>;
            fn $method(self, rhs: R) -> Expr<'a, T, D> {
                self.bin($op, rhs.into_expr())
            }
        }
    };
}
binary!(Add, add, Op::Add);
binary!(Sub, sub, Op::Sub);
binary!(Mul, mul, Op::Mul);
binary!(Div, div, Op::Div);

macro_rules! scalars {
    ($($t:ty),*) => {$(
        impl<'a, D> IntoExpr<'a, $t, D> for $t {
            fn into_expr(self) -> Expr<'a, $t, D> {
                Expr::scalar(self)
            }
        }
        impl<'a, D> Add<&'a DArray<$t, D>> for $t {
            type Output = Expr<'a, $t, D>;
            fn add(self, rhs: &'a DArray<$t, D>) -> Expr<'a, $t, D> {
                Expr::scalar(self).bin(Op::Add, Expr::leaf(rhs))
            }
        }
        impl<'a, D> Sub<&'a DArray<$t, D>> for $t {
            type Output = Expr<'a, $t, D>;
            fn sub(self, rhs: &'a DArray<$t, D>) -> Expr<'a, $t, D> {
                Expr::scalar(self).bin(Op::Sub, Expr::leaf(rhs))
            }
        }
        impl<'a, D> Mul<&'a DArray<$t, D>> for $t {
            type Output = Expr<'a, $t, D>;
            fn mul(self, rhs: &'a DArray<$t, D>) -> Expr<'a, $t, D> {
                Expr::scalar(self).bin(Op::Mul, Expr::leaf(rhs))
            }
        }
        impl<'a, D> Div<&'a DArray<$t, D>> for $t {
            type Output = Expr<'a, $t, D>;
            fn div(self, rhs: &'a DArray<$t, D>) -> Expr<'a, $t, D> {
                Expr::scalar(self).bin(Op::Div, Expr::leaf(rhs))
            }
        }
        impl<'a, D> Add<Expr<'a, $t, D>> for $t {
            type Output = Expr<'a, $t, D>;
            fn add(self, rhs: Expr<'a, $t, D>) -> Expr<'a, $t, D> {
                Expr::scalar(self).bin(Op::Add, rhs)
            }
        }
        impl<'a, D> Sub<Expr<'a, $t, D>> for $t {
            type Output = Expr<'a, $t, D>;
            fn sub(self, rhs: Expr<'a, $t, D>) -> Expr<'a, $t, D> {
                Expr::scalar(self).bin(Op::Sub, rhs)
            }
        }
        impl<'a, D> Mul<Expr<'a, $t, D>> for $t {
            type Output = Expr<'a, $t, D>;
            fn mul(self, rhs: Expr<'a, $t, D>) -> Expr<'a, $t, D> {
                Expr::scalar(self).bin(Op::Mul, rhs)
            }
        }
        impl<'a, D> Div<Expr<'a, $t, D>> for $t {
            type Output = Expr<'a, $t, D>;
            fn div(self, rhs: Expr<'a, $t, D>) -> Expr<'a, $t, D> {
                Expr::scalar(self).bin(Op::Div, rhs)
            }
        }
    )*};
}
scalars!(f32, f64, i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize);

impl<'a, T: Num + Clone, D> Neg for &'a DArray<T, D> {
    type Output = Expr<'a, T, D>;
    fn neg(self) -> Expr<'a, T, D> {
        Expr::scalar(T::zero()).bin(Op::Sub, Expr::leaf(self))
    }
}

impl<'a, T: Num + Clone, D> Neg for Expr<'a, T, D> {
    type Output = Expr<'a, T, D>;
    fn neg(self) -> Expr<'a, T, D> {
        Expr::scalar(T::zero()).bin(Op::Sub, self)
    }
}
