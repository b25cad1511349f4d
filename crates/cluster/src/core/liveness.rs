//! Liveness: a heartbeat on every connection each interval, and the verdict on a
//! peer that has gone quiet.
//!
//! A stopped process (SIGSTOP, a hung host) or a cut link closes no socket, so
//! without this every call to it would wait forever. Each process sends a
//! `Heartbeat` to every peer it has a connection with once per interval, whatever
//! else it sends, and notes when it last heard *anything* from each peer (a message,
//! or the bytes of a large one still arriving). A peer it has not heard from for the
//! timeout is declared unresponsive; [`Core`](super::Core) then treats it as lost.
//!
//! Checking once per interval (one timer for all peers, not one per peer) keeps the
//! cost flat: one `Instant` store per message received, one heartbeat per peer per
//! interval. A peer is declared within `timeout + interval` of the last thing heard
//! from it, and never before `timeout` has passed.

use std::time::{Duration, Instant};

use cohort_wire::ids::Pid;

/// The heartbeat interval and timeout of a cluster.
///
/// ```
/// use std::time::Duration;
/// let h = cohort_cluster::Heartbeat::new(Duration::from_millis(500), Duration::from_secs(5)).unwrap();
/// assert_eq!(h.timeout(), Duration::from_secs(5));
/// assert!(cohort_cluster::Heartbeat::new(Duration::from_secs(5), Duration::from_secs(1)).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    interval: Duration,
    timeout: Duration,
}

/// Why a [`Heartbeat`] setting was refused.
///
/// ```
/// use std::time::Duration;
/// let e = cohort_cluster::Heartbeat::new(Duration::ZERO, Duration::from_secs(1)).unwrap_err();
/// assert!(e.to_string().contains("interval"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeartbeatError {
    /// The interval is zero.
    #[error("the heartbeat interval must be more than zero")]
    ZeroInterval,
    /// The timeout is not at least twice the interval: one late heartbeat would
    /// declare a healthy peer lost.
    #[error(
        "the heartbeat timeout ({timeout:?}) must be at least twice the interval ({interval:?})"
    )]
    TimeoutTooShort {
        /// The interval asked for.
        interval: Duration,
        /// The timeout asked for.
        timeout: Duration,
    },
}

impl Heartbeat {
    /// The default interval: one heartbeat a second on each connection.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
    /// The default timeout: a peer silent for 10 s is declared unresponsive.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    /// A heartbeat every `interval`; a peer not heard from for `timeout` is
    /// unresponsive.
    ///
    /// # Errors
    /// [`HeartbeatError::ZeroInterval`], or [`HeartbeatError::TimeoutTooShort`] if
    /// `timeout` is less than twice `interval`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let h = cohort_cluster::Heartbeat::new(Duration::from_millis(100), Duration::from_secs(1)).unwrap();
    /// assert_eq!(h.interval(), Duration::from_millis(100));
    /// ```
    pub fn new(interval: Duration, timeout: Duration) -> Result<Self, HeartbeatError> {
        if interval.is_zero() {
            return Err(HeartbeatError::ZeroInterval);
        }
        if timeout < interval * 2 {
            return Err(HeartbeatError::TimeoutTooShort { interval, timeout });
        }
        Ok(Heartbeat { interval, timeout })
    }

    /// How often each connection carries a heartbeat.
    ///
    /// ```
    /// assert_eq!(cohort_cluster::Heartbeat::default().interval().as_secs(), 1);
    /// ```
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// How long a peer may stay silent before it is declared unresponsive.
    ///
    /// ```
    /// assert_eq!(cohort_cluster::Heartbeat::default().timeout().as_secs(), 10);
    /// ```
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl Default for Heartbeat {
    /// [`DEFAULT_INTERVAL`](Self::DEFAULT_INTERVAL) and
    /// [`DEFAULT_TIMEOUT`](Self::DEFAULT_TIMEOUT).
    fn default() -> Self {
        Heartbeat {
            interval: Self::DEFAULT_INTERVAL,
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }
}

/// What a check found: whom to send a heartbeat, and who has gone quiet (with how
/// long it has been silent).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Check {
    pub(crate) beat: Vec<Pid>,
    pub(crate) silent: Vec<(Pid, Duration)>,
}

/// The liveness state of one process.
#[derive(Debug, Default)]
pub(crate) struct Liveness {
    /// `None`: no heartbeats (nothing is sent, nobody is declared).
    config: Option<Heartbeat>,
    next_check: Option<Instant>,
    /// When each peer was last heard from, by pid (pids are small and dense; a
    /// vector keeps the per-message note to one store).
    heard: Vec<Option<Instant>>,
}

impl Liveness {
    /// Turns heartbeats on with `config`, or off with `None`; the first check is
    /// one interval after `now`. Peers count as heard from `now` on.
    pub(crate) fn configure(&mut self, config: Option<Heartbeat>, now: Instant) {
        self.config = config;
        self.next_check = config.map(|c| now + c.interval);
        for h in self.heard.iter_mut().flatten() {
            *h = now;
        }
    }

    pub(crate) fn config(&self) -> Option<Heartbeat> {
        self.config
    }

    /// Something came from `pid`.
    pub(crate) fn heard(&mut self, pid: Pid, now: Instant) {
        let i = pid as usize;
        if let Some(slot) = self.heard.get_mut(i) {
            *slot = Some(now);
            return;
        }
        self.heard.resize(i + 1, None);
        self.heard[i] = Some(now);
    }

    /// `pid`'s connection is gone: a new one starts with a clean slate.
    pub(crate) fn forget(&mut self, pid: Pid) {
        if let Some(slot) = self.heard.get_mut(pid as usize) {
            *slot = None;
        }
    }

    /// When [`check`](Self::check) is next due.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.next_check
    }

    /// If a check is due at `now`: a heartbeat for every peer in `connected`, and the
    /// peers silent for the timeout or longer. A peer seen for the first time counts
    /// as heard now (its connection has just been made).
    pub(crate) fn check(&mut self, now: Instant, connected: impl Iterator<Item = Pid>) -> Check {
        let (Some(config), Some(due)) = (self.config, self.next_check) else {
            return Check::default();
        };
        if now < due {
            return Check::default();
        }
        // The next check one interval on (not `due + interval`: after a stall of the
        // process itself, checks do not fire back to back to catch up).
        self.next_check = Some(now + config.interval);
        let stalled = now.saturating_duration_since(due) > config.interval;
        let mut check = Check::default();
        if stalled {
            // This process itself did not run for a while (it was stopped, or starved:
            // its check is more than an interval late). Its peers' silence may be its
            // own: what they sent is still unread. Everyone starts a fresh timeout,
            // and only a peer that stays silent after that is declared — so a whole
            // local cluster stopped and resumed together (Ctrl-Z, `fg`) survives.
            for h in self.heard.iter_mut().flatten() {
                *h = now;
            }
        }
        for pid in connected {
            let last = match self.heard.get(pid as usize).copied().flatten() {
                Some(t) => t,
                None => {
                    self.heard(pid, now);
                    now
                }
            };
            let quiet = now.saturating_duration_since(last);
            if quiet >= config.timeout {
                check.silent.push((pid, quiet));
            } else {
                check.beat.push(pid);
            }
        }
        check.beat.sort_unstable();
        check.silent.sort_unstable();
        check
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb(interval_ms: u64, timeout_ms: u64) -> Heartbeat {
        Heartbeat::new(
            Duration::from_millis(interval_ms),
            Duration::from_millis(timeout_ms),
        )
        .unwrap()
    }

    #[test]
    fn off_by_default_sends_and_declares_nothing() {
        let mut l = Liveness::default();
        let t0 = Instant::now();
        assert_eq!(l.poll_timeout(), None);
        let c = l.check(t0 + Duration::from_secs(3600), [2, 3].into_iter());
        assert_eq!(c, Check::default());
    }

    #[test]
    fn a_peer_heard_from_is_sent_heartbeats_and_never_declared() {
        let mut l = Liveness::default();
        let t0 = Instant::now();
        l.configure(Some(hb(100, 1000)), t0);
        for step in 1..=100u64 {
            let now = t0 + Duration::from_millis(100 * step);
            l.heard(2, now - Duration::from_millis(50));
            assert_eq!(l.poll_timeout(), Some(now));
            let c = l.check(now, [2].into_iter());
            assert_eq!(c.beat, vec![2]);
            assert!(c.silent.is_empty());
        }
    }

    #[test]
    fn a_silent_peer_is_declared_after_the_timeout_and_not_before() {
        let mut l = Liveness::default();
        let t0 = Instant::now();
        l.configure(Some(hb(100, 1000)), t0);
        l.heard(3, t0);
        let mut declared_at = None;
        for step in 1..=20u64 {
            let now = t0 + Duration::from_millis(100 * step);
            l.heard(2, now);
            let c = l.check(now, [2, 3].into_iter());
            if let Some(&(pid, quiet)) = c.silent.first() {
                assert_eq!(pid, 3);
                assert!(quiet >= Duration::from_millis(1000));
                declared_at.get_or_insert(now);
            }
        }
        let at = declared_at.expect("declared");
        assert!(at - t0 >= Duration::from_millis(1000));
        assert!(at - t0 <= Duration::from_millis(1100));
    }

    #[test]
    fn a_check_before_it_is_due_does_nothing() {
        let mut l = Liveness::default();
        let t0 = Instant::now();
        l.configure(Some(hb(100, 1000)), t0);
        assert_eq!(
            l.check(t0 + Duration::from_millis(99), [2].into_iter()),
            Check::default()
        );
    }

    #[test]
    fn a_new_connection_starts_heard_and_a_forgotten_one_starts_over() {
        let mut l = Liveness::default();
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        l.configure(Some(hb(100, 300)), t0);
        // First seen at a check: not silent, though nothing came before.
        assert_eq!(l.check(ms(100), [4].into_iter()).beat, vec![4]);
        assert_eq!(l.check(ms(200), [4].into_iter()).beat, vec![4]);
        // Its connection went; a new one counts from its first check.
        l.forget(4);
        assert_eq!(l.check(ms(300), [4].into_iter()).beat, vec![4]);
        assert_eq!(l.check(ms(400), [4].into_iter()).beat, vec![4]);
        assert_eq!(l.check(ms(500), [4].into_iter()).beat, vec![4]);
        let c = l.check(ms(600), [4].into_iter());
        assert_eq!(c.silent, vec![(4, Duration::from_millis(300))]);
    }

    #[test]
    fn after_its_own_stall_a_process_gives_every_peer_a_fresh_timeout() {
        let mut l = Liveness::default();
        let t0 = Instant::now();
        l.configure(Some(hb(100, 1000)), t0);
        l.heard(2, t0);
        // The process itself ran nothing for 5 s: its first check is late.
        let c = l.check(t0 + Duration::from_secs(5), [2].into_iter());
        assert_eq!(c.beat, vec![2]);
        assert!(c.silent.is_empty());
        // Then the peer gets a full timeout from there.
        let mut t = t0 + Duration::from_secs(5);
        let mut declared = None;
        for _ in 0..12 {
            t += Duration::from_millis(100);
            let c = l.check(t, [2].into_iter());
            if !c.silent.is_empty() {
                declared.get_or_insert(t);
            }
        }
        assert_eq!(declared, Some(t0 + Duration::from_millis(6000)));
    }

    #[test]
    fn settings_that_would_declare_healthy_peers_are_refused() {
        assert_eq!(
            Heartbeat::new(Duration::ZERO, Duration::from_secs(1)),
            Err(HeartbeatError::ZeroInterval)
        );
        assert!(matches!(
            Heartbeat::new(Duration::from_secs(1), Duration::from_millis(1999)),
            Err(HeartbeatError::TimeoutTooShort { .. })
        ));
        assert!(Heartbeat::new(Duration::from_secs(1), Duration::from_secs(2)).is_ok());
    }
}
