//! Launching and joining workers (the master's side of `addprocs`) and removing
//! them (`rmprocs`): the manager starts processes, each is connected to, shaken hands
//! with and told its pid and the cluster in a `Join`; the core records it and tells
//! the others.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cohort_transport::{
    ClusterManager, LaunchParams, ManageEvent, Topology, WorkerConfig, WorkerTransport,
};
use cohort_wire::ids::Pid;
use cohort_wire::proto::{self, envelope::Kind, Envelope, Role};

use super::driver::Peer;
use super::handshake::{authenticate, read_one, write_one, ConnectError};
use super::node::{duration_ms, Managed, Node};
#[cfg(feature = "tls")]
use super::tls::TlsMode;
use crate::error::ClusterError;

/// How long a new worker may take to finish joining.
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Launches workers with `manager` and joins them to `n`'s cluster, with TLS as `tls`
/// asks ([`AddProcs::tls`](crate::AddProcs::tls); feature `tls`).
pub(crate) async fn launch(
    n: Arc<Node>,
    manager: Arc<dyn ClusterManager>,
    mut params: LaunchParams,
    #[cfg(feature = "tls")] tls: Option<TlsMode>,
) -> Result<Vec<Pid>, ClusterError> {
    if n.is_worker() {
        return Err(ClusterError::NotMaster);
    }
    check_topology(manager.as_ref(), params.topology, &n.managed.read())?;
    check_lazy(&n, &params)?;
    crate::api::observe::first_use(&n);
    #[cfg(feature = "tls")]
    {
        let has_workers = n.workers().iter().any(|&p| p != cohort_wire::ids::MASTER);
        params.tls = super::tls::resolve(&n, tls, has_workers)?;
    }
    params.cookie = n.cookie().expose().to_string();
    // The workers get this cluster's message limit, so that both ends of every
    // connection check against the same one (unless the caller set the variable).
    if n.max_frame() != cohort_wire::frame::DEFAULT_MAX_FRAME
        && !params
            .env
            .iter()
            .any(|(k, _)| k == crate::api::limits::MAX_FRAME_ENV)
    {
        params.env.push((
            crate::api::limits::MAX_FRAME_ENV.to_string(),
            n.max_frame().to_string(),
        ));
    }
    n.with_core(|c| c.set_topology(params.topology, params.lazy));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let m = manager.clone();
    let p = params.clone();
    let launcher = super::runtime::handle().spawn(async move { m.launch(&p, tx).await });
    let mut joins = Vec::new();
    while let Some(config) = rx.recv().await {
        joins.push(super::runtime::handle().spawn(join_worker(
            n.clone(),
            manager.clone(),
            config,
            params.clone(),
        )));
    }
    let launched = launcher.await.unwrap_or_else(|e| {
        Err(cohort_transport::LaunchError::Other(format!(
            "the cluster manager's launch task failed: {e}"
        )))
    });
    let mut pids = Vec::new();
    let mut first_err = None;
    for j in joins {
        match j.await {
            Ok(Ok(pid)) => pids.push(pid),
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(_) => {
                first_err.get_or_insert(ClusterError::Connect {
                    addr: String::new(),
                    source: ConnectError::TaskLost,
                });
            }
        }
    }
    launched?;
    if let Some(e) = first_err {
        return Err(e);
    }
    pids.sort_unstable();
    Ok(pids)
}

/// Refuses, before anything is launched, an all-to-all launch whose `lazy` setting
/// contradicts that of the all-to-all workers already running (Julia: "Active workers
/// with lazy=… Cannot set lazy=…"): connections are either made at join or at first
/// use, for the whole cluster.
fn check_lazy(n: &Node, params: &LaunchParams) -> Result<(), ClusterError> {
    let has_workers = n.workers().iter().any(|&p| p != cohort_wire::ids::MASTER);
    let (topology, lazy) = n.peek(|c| c.membership().topology());
    if has_workers
        && topology == Topology::AllToAll
        && params.topology == Topology::AllToAll
        && lazy != params.lazy
    {
        return Err(ClusterError::LazyMismatch {
            running: lazy,
            asked: params.lazy,
        });
    }
    Ok(())
}

/// Refuses, before anything is launched, a topology whose worker-to-worker
/// connections the manager's workers could not make: any but master–worker when they
/// cannot reach each other at all, and all-to-all when a worker already in the
/// cluster (`managed`) reaches its peers over another transport.
fn check_topology(
    manager: &dyn ClusterManager,
    topology: Topology,
    managed: &HashMap<Pid, Managed>,
) -> Result<(), ClusterError> {
    if topology == Topology::MasterWorker {
        return Ok(());
    }
    let transport = manager.worker_transport();
    if !transport.connects_workers() {
        return Err(ClusterError::TopologyUnsupported {
            topology,
            transport,
        });
    }
    if topology == Topology::AllToAll {
        let mut others: Vec<(Pid, WorkerTransport)> = managed
            .iter()
            .map(|(&pid, (m, _))| (pid, m.worker_transport()))
            .filter(|&(_, t)| t != transport)
            .collect();
        others.sort_unstable_by_key(|&(pid, _)| pid);
        if let Some(&(pid, other)) = others.first() {
            return Err(ClusterError::TransportMismatch {
                transport,
                pid,
                other,
            });
        }
    }
    Ok(())
}

async fn join_worker(
    n: Arc<Node>,
    manager: Arc<dyn ClusterManager>,
    config: WorkerConfig,
    params: LaunchParams,
) -> Result<Pid, ClusterError> {
    // Where the worker is, for errors: a TCP address, or a custom transport's.
    let addr = match (&config.host, config.port, &config.bind_addr) {
        (Some(h), Some(p), _) => format!("{h}:{p}"),
        (Some(a), None, _) | (None, _, Some(a)) => a.clone(),
        (None, _, None) => "the address its manager knows".to_string(),
    };
    let fail = |source: ConnectError| ClusterError::Connect {
        addr: addr.clone(),
        source,
    };
    let pid = n.with_core(|c| c.allocate_pid());
    let conn = match manager.connect(pid, &config).await {
        Ok(c) => c,
        Err(e) => {
            manager.kill(pid, &config).await;
            return Err(fail(e.into()));
        }
    };
    // TLS (when on) goes under the cookie handshake.
    let est = match authenticate(&n, conn, Role::Connector).await {
        Ok(e) => e,
        Err(e) => {
            manager.kill(pid, &config).await;
            return Err(fail(e));
        }
    };
    match finish_join(
        &n,
        pid,
        manager.clone(),
        &config,
        params.topology,
        params.lazy,
        est,
    )
    .await
    {
        Ok(()) => Ok(pid),
        Err(e) => {
            manager.kill(pid, &config).await;
            Err(fail(e))
        }
    }
}

/// The part of joining a worker that follows the handshake, whichever end opened the
/// connection: tells the worker its pid and the cluster in a `Join`, waits for its
/// `JoinComplete`, and records it (its manager, its connection, its membership).
/// `config` says where it listens for the other workers. On an error the worker is
/// not recorded; the caller stops it.
pub(crate) async fn finish_join(
    n: &Arc<Node>,
    pid: Pid,
    manager: Arc<dyn ClusterManager>,
    config: &WorkerConfig,
    topology: Topology,
    lazy: bool,
    mut est: super::handshake::Established,
) -> Result<(), ConnectError> {
    let _serial = n.join_lock.lock().await;
    let (known, custom_links): (Vec<proto::WorkerInfo>, Vec<proto::WorkerInfo>) = {
        let known: Vec<proto::WorkerInfo> =
            n.peek(|c| c.membership().worker_infos().cloned().collect());
        let managed = n.managed.read();
        // Custom topology: the new worker connects to every existing worker it names in
        // its connect_idents, and to every existing worker that names it in theirs, so
        // each wanted link is made exactly once, by whichever end joins later.
        let me = config.ident.as_deref().unwrap_or("");
        let links = known
            .iter()
            .filter(|info| {
                let wants_it = config.connect_idents.contains(&info.ident);
                let wanted_by = !me.is_empty()
                    && managed
                        .get(&info.pid)
                        .is_some_and(|(_, c)| c.connect_idents.iter().any(|i| i == me));
                !info.ident.is_empty() && (wants_it || wanted_by)
            })
            .cloned()
            .collect();
        (known, links)
    };
    let connect_now = match topology {
        Topology::AllToAll if !lazy => known.clone(),
        Topology::Custom => custom_links,
        _ => Vec::new(),
    };
    let heartbeat = n.peek(|c| c.heartbeat());
    let join = proto::Join {
        pid,
        topology: wire_topology(topology) as i32,
        lazy,
        connect_now,
        known: if topology == Topology::MasterWorker {
            Vec::new()
        } else {
            known
        },
        master_hostname: n.master_hostname.read().clone(),
        connect_idents: config.connect_idents.clone(),
        heartbeat_interval_ms: heartbeat.map_or(0, |h| duration_ms(h.interval())),
        heartbeat_timeout_ms: heartbeat.map_or(0, |h| duration_ms(h.timeout())),
    };
    let joined = async {
        write_one(
            &mut est,
            &Envelope {
                kind: Some(Kind::Join(join)),
            },
        )
        .await?;
        match read_one(&mut est, JOIN_TIMEOUT).await?.kind {
            Some(Kind::JoinComplete(jc)) => Ok(jc),
            _ => Err(ConnectError::Unexpected {
                expected: "JoinComplete",
            }),
        }
    }
    .await;
    let jc = joined?;
    let info = proto::WorkerInfo {
        pid,
        host: config
            .bind_addr
            .clone()
            .or_else(|| config.host.clone())
            .unwrap_or_default(),
        port: u32::from(config.port.unwrap_or(0)),
        // The manager's name for the worker's host (a scheduler's node name) wins
        // over the one the worker reports.
        hostname: config.hostname.clone().unwrap_or(jc.hostname),
        ident: config.ident.clone().unwrap_or_default(),
        // Its same-host socket, as `NAME@KEY` (empty: none).
        local: config
            .local
            .as_ref()
            .map(cohort_transport::same_host::LocalEndpoint::to_token)
            .unwrap_or_default(),
    };
    n.managed
        .write()
        .insert(pid, (manager.clone(), config.clone()));
    Peer::register(n, pid, est);
    let announce = topology != Topology::MasterWorker;
    n.with_core(|c| c.handle_connected(pid, Some(info), announce));
    manager.manage(pid, config, ManageEvent::Register);
    Ok(())
}

fn wire_topology(t: Topology) -> proto::Topology {
    match t {
        Topology::AllToAll => proto::Topology::AllToAll,
        Topology::MasterWorker => proto::Topology::MasterWorker,
        Topology::Custom => proto::Topology::Custom,
    }
}

pub(crate) fn topology_from_wire(t: proto::Topology) -> Topology {
    match t {
        proto::Topology::MasterWorker => Topology::MasterWorker,
        proto::Topology::Custom => Topology::Custom,
        _ => Topology::AllToAll,
    }
}
