//! Which topology a cluster runs under, for layers above that need worker-to-worker
//! messages (SPMD) and must refuse clearly where the topology forbids them.

use cohort_transport::Topology;

use crate::api::cluster::Cluster;

impl Cluster {
    /// The topology this process knows its cluster by: on a master, the one its
    /// workers were launched with (`Topology::AllToAll` before any launch); on a
    /// worker, the one its master's `Join` announced.
    ///
    /// ```
    /// use cohort_cluster::{Cluster, Topology};
    /// assert_eq!(Cluster::new().topology(), Topology::AllToAll);
    /// ```
    pub fn topology(&self) -> Topology {
        self.node.peek(|c| c.membership().topology().0)
    }
}

/// The topology of the [current](Cluster::current) cluster (see
/// [`Cluster::topology`]).
///
/// ```
/// assert_eq!(cohort_cluster::topology(), cohort_cluster::Topology::AllToAll);
/// ```
pub fn topology() -> Topology {
    Cluster::current().topology()
}
