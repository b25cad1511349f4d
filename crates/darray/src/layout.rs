//! How a `DArray` is split: Julia's `defaultdist`, its cuts and its chunk placement.
//!
//! All indices here are 0-based and half-open (`lo..hi`); Julia's are 1-based and
//! closed, so Julia's `cuts[i] = [1, 5, 8, 11]` is our `[0, 4, 7, 10]`.

use std::ops::Range;

use cohort_cluster::Pid;
use serde::{Deserialize, Serialize};

use crate::error::DArrayError;

/// Julia's `defaultdist(dims, pids)`: how many chunks each dimension is cut into
/// when `nprocs` processes share an array of shape `dims`.
///
/// The prime factors of `nprocs`, largest first, are given one at a time to the
/// dimension that is currently longest (the *last* such dimension on a tie), which is
/// divided by it; a factor larger than that dimension is dropped, so the product may
/// be less than `nprocs` (then only that many processes are used, as in Julia).
///
/// ```
/// use cohort_darray::defaultdist;
/// assert_eq!(defaultdist(&[100, 100, 10], 4), vec![2, 2, 1]);
/// assert_eq!(defaultdist(&[1000, 1000], 4), vec![2, 2]);
/// assert_eq!(defaultdist(&[10], 3), vec![3]);
/// assert_eq!(defaultdist(&[2, 2], 8), vec![2, 2]);
/// assert_eq!(defaultdist(&[100, 10], 6), vec![6, 1]);
/// ```
pub fn defaultdist(dims: &[usize], nprocs: usize) -> Vec<usize> {
    let mut dims = dims.to_vec();
    let mut chunks = vec![1; dims.len()];
    if dims.is_empty() {
        return chunks;
    }
    let mut factors = prime_factors(nprocs);
    factors.sort_unstable_by(|a, b| b.cmp(a));
    factors.dedup();
    let mut np = nprocs;
    let mut k = 0;
    while np > 1 {
        if !np.is_multiple_of(factors[k]) {
            k += 1;
            if k >= factors.len() {
                break;
            }
        }
        let fac = factors[k];
        let longest = *dims.iter().max().expect("non-empty");
        let dno = dims.iter().rposition(|d| *d == longest).expect("present");
        if dims[dno] >= fac {
            dims[dno] /= fac;
            chunks[dno] *= fac;
        }
        np /= fac;
    }
    chunks
}

fn prime_factors(mut n: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut p = 2;
    while p * p <= n {
        while n.is_multiple_of(p) {
            out.push(p);
            n /= p;
        }
        p += 1;
    }
    if n > 1 {
        out.push(n);
    }
    out
}

/// Julia's `defaultdist(sz, nc)` for one dimension: the `nc + 1` boundaries of `nc`
/// chunks of `0..len`. Each chunk gets `len / nc` elements and the **first**
/// `len % nc` chunks one more (where Julia puts the remainder); with more chunks than
/// elements the first `len` get one each and the rest are empty.
///
/// ```
/// use cohort_darray::cuts;
/// assert_eq!(cuts(10, 3), vec![0, 4, 7, 10]);
/// assert_eq!(cuts(12, 3), vec![0, 4, 8, 12]);
/// assert_eq!(cuts(2, 4), vec![0, 1, 2, 2, 2]);
/// ```
pub fn cuts(len: usize, nc: usize) -> Vec<usize> {
    let nc = nc.max(1);
    let each = len / nc;
    let rem = len % nc;
    (0..=nc).map(|i| i * each + i.min(rem)).collect()
}

/// Where every chunk of a distributed array is and which indices it holds.
///
/// Chunks form a grid of `dist[0] × dist[1] × …` chunks. They are numbered in
/// Julia's (column-major) order — the first dimension's chunk index varies fastest —
/// and chunk number `k` lives on `pids[k]` (Julia's `reshape(procs[1:np], dist)`).
/// Chunk `(c0, c1, …)` holds the indices `cuts[0][c0]..cuts[0][c0 + 1]` of the first
/// dimension, and so on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Layout {
    pub(crate) dims: Vec<usize>,
    pub(crate) dist: Vec<usize>,
    pub(crate) cuts: Vec<Vec<usize>>,
    pub(crate) pids: Vec<Pid>,
}

impl Layout {
    /// The layout of an array of `dims` on `procs` with `dist` chunks per dimension
    /// (Julia's `DArray(init, dims, procs, dist)`), or with Julia's defaults.
    pub(crate) fn new(
        dims: &[usize],
        procs: Option<&[Pid]>,
        dist: Option<&[usize]>,
        default_procs: impl FnOnce() -> Vec<Pid>,
    ) -> Result<Layout, DArrayError> {
        let procs: Vec<Pid> = match procs {
            Some(p) => p.to_vec(),
            None => {
                // Julia: `workers()[1:min(nworkers(), maximum(dims))]`.
                let mut p = default_procs();
                let most = dims.iter().copied().max().unwrap_or(1).max(1);
                p.truncate(most);
                p
            }
        };
        if procs.is_empty() {
            return Err(DArrayError::NoProcs);
        }
        let mut seen = procs.clone();
        seen.sort_unstable();
        if let Some(w) = seen.windows(2).find(|w| w[0] == w[1]) {
            return Err(DArrayError::DuplicateProc { pid: w[0] });
        }
        let dist = match dist {
            Some(d) => {
                if d.len() != dims.len() {
                    return Err(DArrayError::DistRank {
                        dist: d.to_vec(),
                        ndims: dims.len(),
                    });
                }
                let product: usize = d.iter().product();
                if product != procs.len() || d.contains(&0) {
                    return Err(DArrayError::DistMismatch {
                        dist: d.to_vec(),
                        nprocs: procs.len(),
                    });
                }
                d.to_vec()
            }
            None => defaultdist(dims, procs.len()),
        };
        let np: usize = dist.iter().product();
        let pids = procs[..np].to_vec();
        let cuts = dims.iter().zip(&dist).map(|(&n, &c)| cuts(n, c)).collect();
        Ok(Layout {
            dims: dims.to_vec(),
            dist,
            cuts,
            pids,
        })
    }

    /// A layout from the sizes of the chunks of a grid (the `DArray(futures)` case):
    /// `sizes[d]` are the lengths along dimension `d` of the chunks of that grid line.
    pub(crate) fn from_sizes(sizes: Vec<Vec<usize>>, pids: Vec<Pid>) -> Layout {
        let dist: Vec<usize> = sizes.iter().map(Vec::len).collect();
        let cuts: Vec<Vec<usize>> = sizes
            .iter()
            .map(|s| {
                let mut c = Vec::with_capacity(s.len() + 1);
                let mut at = 0;
                c.push(0);
                for n in s {
                    at += n;
                    c.push(at);
                }
                c
            })
            .collect();
        let dims = cuts.iter().map(|c| *c.last().expect("non-empty")).collect();
        Layout {
            dims,
            dist,
            cuts,
            pids,
        }
    }

    /// The number of chunks.
    pub(crate) fn nchunks(&self) -> usize {
        self.pids.len()
    }

    /// The grid position of chunk number `k` (first dimension fastest).
    pub(crate) fn grid_pos(&self, mut k: usize) -> Vec<usize> {
        self.dist
            .iter()
            .map(|&n| {
                let c = k % n;
                k /= n;
                c
            })
            .collect()
    }

    /// The chunk number at a grid position.
    pub(crate) fn chunk_at(&self, pos: &[usize]) -> usize {
        let mut k = 0;
        for (d, &c) in pos.iter().enumerate().rev() {
            k = k * self.dist[d] + c;
        }
        k
    }

    /// The index ranges chunk number `k` holds.
    pub(crate) fn ranges(&self, k: usize) -> Vec<Range<usize>> {
        self.grid_pos(k)
            .iter()
            .enumerate()
            .map(|(d, &c)| self.cuts[d][c]..self.cuts[d][c + 1])
            .collect()
    }

    /// The chunk number `pid` holds, if any.
    pub(crate) fn chunk_of(&self, pid: Pid) -> Option<usize> {
        self.pids.iter().position(|p| *p == pid)
    }

    /// For a range along dimension `d`, the chunk coordinates it touches and, for
    /// each, the part of the range inside that chunk.
    fn touched(&self, d: usize, r: &Range<usize>) -> Vec<(usize, Range<usize>)> {
        let c = &self.cuts[d];
        let mut out = Vec::new();
        if r.start >= r.end {
            return out;
        }
        // The first chunk whose end is past r.start.
        let mut i = c[1..].partition_point(|&hi| hi <= r.start);
        while i + 1 < c.len() && c[i] < r.end {
            let lo = c[i].max(r.start);
            let hi = c[i + 1].min(r.end);
            if lo < hi {
                out.push((i, lo..hi));
            }
            i += 1;
        }
        out
    }

    /// The chunks a rectangular range touches: for each, its number and the part of
    /// the range it holds (global indices). Empty when the range is empty.
    pub(crate) fn pieces(&self, ranges: &[Range<usize>]) -> Vec<(usize, Vec<Range<usize>>)> {
        let per_dim: Vec<Vec<(usize, Range<usize>)>> = ranges
            .iter()
            .enumerate()
            .map(|(d, r)| self.touched(d, r))
            .collect();
        if per_dim.iter().any(Vec::is_empty) {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut at = vec![0usize; per_dim.len()];
        loop {
            let pos: Vec<usize> = at
                .iter()
                .enumerate()
                .map(|(d, &i)| per_dim[d][i].0)
                .collect();
            let part = at
                .iter()
                .enumerate()
                .map(|(d, &i)| per_dim[d][i].1.clone())
                .collect();
            out.push((self.chunk_at(&pos), part));
            // Next combination, first dimension fastest.
            let mut d = 0;
            loop {
                if d == at.len() {
                    return out;
                }
                at[d] += 1;
                if at[d] < per_dim[d].len() {
                    break;
                }
                at[d] = 0;
                d += 1;
            }
        }
    }

    /// Checks that `ranges` lies inside the array.
    pub(crate) fn check_ranges(&self, ranges: &[Range<usize>]) -> Result<(), DArrayError> {
        let ok = ranges.len() == self.dims.len()
            && ranges
                .iter()
                .zip(&self.dims)
                .all(|(r, &n)| r.start <= r.end && r.end <= n);
        if ok {
            Ok(())
        } else {
            Err(DArrayError::RangeOutOfBounds {
                ranges: ranges.to_vec(),
                shape: self.dims.clone(),
            })
        }
    }

    /// Whether two arrays are cut the same way on the same processes.
    pub(crate) fn same_as(&self, other: &Layout) -> bool {
        self == other
    }
}

#[cfg(test)]
// One range per dimension: a 1-D array's ranges are a one-element slice.
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;

    fn layout(dims: &[usize], np: usize, dist: Option<&[usize]>) -> Layout {
        let procs: Vec<Pid> = (2..2 + np as Pid).collect();
        Layout::new(dims, Some(&procs), dist, Vec::new).unwrap()
    }

    #[test]
    fn defaultdist_matches_julia() {
        // Julia's algorithm (DistributedArrays.defaultdist) worked through by hand.
        assert_eq!(defaultdist(&[100, 100, 10], 4), vec![2, 2, 1]);
        assert_eq!(defaultdist(&[100, 100], 12), vec![4, 3]);
        assert_eq!(defaultdist(&[5], 8), vec![4]);
        assert_eq!(defaultdist(&[7, 3], 1), vec![1, 1]);
        assert_eq!(defaultdist(&[4000, 4000], 2), vec![1, 2]);
    }

    #[test]
    fn remainders_go_first() {
        assert_eq!(cuts(7, 2), vec![0, 4, 7]);
        assert_eq!(cuts(11, 4), vec![0, 3, 6, 9, 11]);
        assert_eq!(cuts(0, 2), vec![0, 0, 0]);
    }

    #[test]
    fn chunk_order_is_column_major() {
        let l = layout(&[4, 6], 4, Some(&[2, 2]));
        assert_eq!(l.ranges(0), vec![0..2, 0..3]);
        assert_eq!(l.ranges(1), vec![2..4, 0..3]);
        assert_eq!(l.ranges(2), vec![0..2, 3..6]);
        assert_eq!(l.chunk_at(&[1, 1]), 3);
        assert_eq!(l.pids, vec![2, 3, 4, 5]);
    }

    #[test]
    fn pieces_cross_boundaries() {
        let l = layout(&[10, 10], 4, Some(&[2, 2]));
        let p = l.pieces(&[3..7, 4..6]);
        assert_eq!(
            p,
            vec![
                (0, vec![3..5, 4..5]),
                (1, vec![5..7, 4..5]),
                (2, vec![3..5, 5..6]),
                (3, vec![5..7, 5..6]),
            ]
        );
        assert!(l.pieces(&[3..3, 0..10]).is_empty());
        let uneven = layout(&[10], 3, None);
        assert_eq!(
            uneven.pieces(&[3..5]),
            vec![(0, vec![3..4]), (1, vec![4..5])]
        );
    }

    #[test]
    fn dist_must_match_procs() {
        let procs = [2, 3, 4];
        let e = Layout::new(&[10, 10], Some(&procs), Some(&[2, 2]), Vec::new).unwrap_err();
        assert!(matches!(e, DArrayError::DistMismatch { nprocs: 3, .. }));
        let e = Layout::new(&[10, 10], Some(&procs), Some(&[3]), Vec::new).unwrap_err();
        assert!(matches!(e, DArrayError::DistRank { .. }));
        assert!(matches!(
            Layout::new(&[10], Some(&[]), None, Vec::new),
            Err(DArrayError::NoProcs)
        ));
    }

    #[test]
    fn default_procs_are_capped_by_the_longest_dimension() {
        let l = Layout::new(&[2, 1], None, None, || vec![2, 3, 4, 5]).unwrap();
        assert_eq!(l.pids, vec![2, 3]);
        assert_eq!(l.dist, vec![2, 1]);
    }
}
