//! Every interval of the member state machine, by name. The shell reads them from its
//! command line (`--heartbeat-ms`, `--misses`, `--manual-start`); the rest are the defaults
//! below, each with the reason for its size.

/// Timing of failure detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailoverConfig {
    /// Heartbeat interval.
    pub heartbeat_ms: u64,
    /// Heartbeats missed before the primary counts as silent.
    pub misses: u32,
}

impl Default for FailoverConfig {
    fn default() -> Self {
        Self {
            heartbeat_ms: 100,
            misses: 4,
        }
    }
}

impl FailoverConfig {
    /// Silence longer than this means the peer missed its heartbeats.
    pub fn silence_ms(&self) -> u64 {
        self.heartbeat_ms * u64::from(self.misses.max(1))
    }

    /// A primary fails a silent (not dead) secondary out of its stream — releasing replies
    /// without it — only after twice the silence time.
    pub fn fail_out_ms(&self) -> u64 {
        2 * self.silence_ms()
    }

    /// A secondary takes over only if its primary fell silent *to it* at most this long
    /// before the evidence that the primary is gone (its host refused a connection, or the
    /// witness lost it). A heartbeat less than [`fail_out_ms`](Self::fail_out_ms): so the
    /// primary cannot have failed this secondary out and released replies without it before
    /// it was gone (`takeover.rs`; found by `tests/sim_group.rs`).
    pub fn takeover_window_ms(&self) -> u64 {
        self.fail_out_ms() - self.heartbeat_ms
    }

    /// The lease of a primary: half the silence time ([`super::fencing::lease_ok`]).
    pub fn lease_ms(&self) -> u64 {
        self.silence_ms() / 2
    }

    /// The takeover window when the evidence is the witness's (and the other members')
    /// silence rather than a refused connection: a primary they stopped hearing may still
    /// release replies for a lease on the last answer it got, so the window is a lease
    /// shorter (500 ms by default; the simulation found a stale takeover at 648 ms).
    pub fn vouched_window_ms(&self) -> u64 {
        self.takeover_window_ms().saturating_sub(self.lease_ms())
    }
}

/// The member state machine's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Heartbeats and silence.
    pub failover: FailoverConfig,
    /// How often a member without a primary asks the others what they are (`Probe`).
    pub probe_every_ms: u64,
    /// After its start, how long a member waits for the group to link up before it decides
    /// anything from probes (a peer not yet dialed is not a peer that is gone).
    pub startup_grace_ms: u64,
    /// How old a probe answer or a refused connection may be and still count.
    pub probe_fresh_ms: u64,
    /// How often a primary asks a linked listed member that is out to join again.
    pub rejoin_every_ms: u64,
    /// How often the listed primary, in step again after a resync, asks for its role back.
    pub ask_back_every_ms: u64,
    /// Longest a reason for not taking over is repeated in the log.
    pub holdoff_log_ms: u64,
    /// Longest an unchanged reason for not starting as primary is repeated in the log.
    pub startup_log_ms: u64,
    /// How long a member that stood down cleanly waits for the member it stood down for to
    /// take over before it negotiates like any member without a primary.
    pub clean_wait_ms: u64,
    /// A member that finds no primary never starts as one by itself (`ftnfsctl promote`).
    pub manual_start: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            failover: FailoverConfig::default(),
            probe_every_ms: 1000,
            startup_grace_ms: 2000,
            probe_fresh_ms: 3000,
            rejoin_every_ms: 3000,
            ask_back_every_ms: 2000,
            holdoff_log_ms: 5000,
            startup_log_ms: 30_000,
            clean_wait_ms: 5000,
            manual_start: false,
        }
    }
}

impl Settings {
    /// Silence after which a peer counts as gone.
    pub fn silence_ms(&self) -> u64 {
        self.failover.silence_ms()
    }

    /// How long a primary's read lease lasts after a secondary confirmed its epoch: half the
    /// silence time, so that it has expired well before any secondary, which waits the whole
    /// silence time, can take over ([`super::fencing::lease_ok`]).
    pub fn lease_ms(&self) -> u64 {
        self.failover.lease_ms()
    }
}
