//! Whether this process's connections run over TLS, and with which credentials.
//!
//! The setting belongs to a node (a process's membership of one cluster): once a
//! master has launched workers with TLS (see
//! [`AddProcs::tls`](crate::AddProcs::tls)), every later connection it makes — and
//! every connection its workers make or accept — runs mutually authenticated TLS 1.3
//! under the cookie handshake. A worker gets the credentials from its master over
//! stdin (`--tls-stdin`) or from a bundle file (`--tls-bundle FILE`).
//!
//! The whole module is the `tls` feature (on by default).

use std::path::PathBuf;

use super::node::Node;
use crate::error::ClusterError;
use cohort_transport::tls::ClusterTls;

/// How a master gets the cluster's TLS credentials. (Feature `tls`, on by default.)
///
/// ```
/// let _ = cohort_cluster::TlsMode::Generate;
/// let _ = cohort_cluster::TlsMode::Files {
///     ca: "ca.pem".into(),
///     cert: "node.pem".into(),
///     key: "node.key".into(),
/// };
/// ```
#[derive(Debug, Clone)]
pub enum TlsMode {
    /// Generate a fresh CA and node certificate at start-up
    /// ([`ClusterTls::generate`]).
    Generate,
    /// Load the user's PEM files ([`ClusterTls::from_files`]).
    Files {
        /// The CA certificate(s) every process trusts.
        ca: PathBuf,
        /// The node certificate (chain) every process presents; it must name
        /// `cohort-cluster` as a DNS subject alternative name.
        cert: PathBuf,
        /// The node certificate's private key.
        key: PathBuf,
    },
    /// Credentials already loaded.
    Credentials(ClusterTls),
}

/// The TLS credentials the current cluster's connections use, if TLS is on (see
/// [`Cluster::tls`](crate::Cluster::tls)). (Feature `tls`, on by default.)
///
/// ```
/// // TLS is off until a launch with `AddProcs::tls` turns it on.
/// assert!(cohort_cluster::cluster_tls().is_none());
/// ```
pub fn cluster_tls() -> Option<ClusterTls> {
    super::node::current().tls.read().clone()
}

pub(crate) fn set(node: &Node, tls: ClusterTls) {
    *node.tls.write() = Some(tls);
}

/// The credentials a launch should use, turning TLS on for `node` if `mode`
/// asks for it. Once on, TLS stays on (with the same credentials) for every later
/// launch, since the workers already running refuse anything else.
pub(crate) fn resolve(
    node: &Node,
    mode: Option<TlsMode>,
    has_workers: bool,
) -> Result<Option<ClusterTls>, ClusterError> {
    let mut current = node.tls.write();
    let wanted = match mode {
        None => return Ok(current.clone()),
        Some(TlsMode::Generate) => {
            if let Some(t) = current.as_ref() {
                return Ok(Some(t.clone()));
            }
            ClusterTls::generate()?
        }
        Some(TlsMode::Files { ca, cert, key }) => ClusterTls::from_files(ca, cert, key)?,
        Some(TlsMode::Credentials(t)) => t,
    };
    if let Some(t) = current.as_ref() {
        if t.bundle() != wanted.bundle() {
            return Err(ClusterError::TlsCredentialsInUse);
        }
        return Ok(Some(t.clone()));
    }
    if has_workers {
        return Err(ClusterError::TlsAfterPlaintext);
    }
    *current = Some(wanted.clone());
    Ok(Some(wanted))
}
