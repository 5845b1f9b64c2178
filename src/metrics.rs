//! Metrics: the Prometheus families (`rota_` prefix, bounded labels: no job ids). Counters are
//! bumped where things happen; gauges of state (load, master, epoch, queue depths) are read fresh at
//! each scrape (`Node::refresh_metrics`). Served over HTTP by `api::http`. Uses nothing of rota.
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PathLabel {
    pub path: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabel {
    pub node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

/// How a fire reached the node that ran it.
pub mod path {
    /// The master ran it itself.
    pub const LOCAL: &str = "local";
    /// Sent by SubmitTask and accepted.
    pub const DIRECT: &str = "direct";
    /// Put in a node's durable queue (the direct call failed).
    pub const QUEUED: &str = "queued";
    /// Taken over from a busier node's queue.
    pub const STOLEN: &str = "stolen";
    /// Moved from a dead node.
    pub const REAPED: &str = "reaped";
}

pub struct Metrics {
    registry: Registry,
    /// Terminal outcomes of executions, by state.
    pub fires: Family<OutcomeLabel, Counter>,
    /// Scheduled instant to handler start, first attempts of scheduled fires.
    pub fire_delay: Histogram,
    pub running: Gauge,
    pub load_ratio: Gauge<f64, AtomicU64>,
    pub master: Gauge,
    pub epoch: Gauge,
    pub queue_depth: Family<NodeLabel, Gauge>,
    pub dispatch: Family<PathLabel, Counter>,
    /// SubmitTasks calls this node made as master (each carries one or more fires).
    pub submit_calls: Counter,
    pub prevented_duplicates: Counter,
    /// Queue entries set aside in the dead-letter list (malformed, oversized, naming no fire).
    pub dead_letters: Counter,
    /// Jobs and fires set aside because a stored key is not what it should be.
    pub set_aside: Counter,
    pub alerts: Family<ResultLabel, Counter>,
    /// Round trip of the heartbeat script, a proxy for the store's latency.
    pub store_rtt: Histogram,
    /// Redis's clock minus this node's wall clock (the correction it applies), as last measured.
    pub clock_offset: Gauge<f64, AtomicU64>,
    /// 1 while some live node holds the master lease, as this node last saw it.
    pub master_present: Gauge,
    /// Scheduler ticks (claim passes) of this node as master that failed.
    pub tick_failures: Counter,
    /// On the master: seconds since its last successful tick; 0 on other nodes.
    pub tick_age: Gauge<f64, AtomicU64>,
    /// Execution records this node's archiver copied to the history store (PostgreSQL).
    pub history_archived: Counter,
    /// Entries waiting in the history outbox, as this node's archiver last saw them (0 on a node
    /// that does not archive).
    pub history_backlog: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("rota");
        let m = Metrics {
            fires: Family::default(),
            // 0.5 ms .. ~16 s
            fire_delay: Histogram::new([
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 16.0,
            ]),
            running: Gauge::default(),
            load_ratio: Gauge::default(),
            master: Gauge::default(),
            epoch: Gauge::default(),
            queue_depth: Family::default(),
            dispatch: Family::default(),
            submit_calls: Counter::default(),
            prevented_duplicates: Counter::default(),
            dead_letters: Counter::default(),
            set_aside: Counter::default(),
            alerts: Family::default(),
            store_rtt: Histogram::new([0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.0]),
            clock_offset: Gauge::default(),
            master_present: Gauge::default(),
            tick_failures: Counter::default(),
            tick_age: Gauge::default(),
            history_archived: Counter::default(),
            history_backlog: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register("fires", "Executions that reached a terminal state, by outcome", m.fires.clone());
        registry.register(
            "history_archived",
            "Execution records this node copied to the history store",
            m.history_archived.clone(),
        );
        registry.register(
            "history_backlog",
            "Entries waiting in the history outbox, as this node's archiver last saw them",
            m.history_backlog.clone(),
        );
        registry.register("fire_delay_seconds", "Delay from scheduled instant to handler start", m.fire_delay.clone());
        registry.register("executions_running", "Executions running on this node", m.running.clone());
        registry.register("node_load_ratio", "(running + waiting) / workers on this node", m.load_ratio.clone());
        registry.register("master", "1 while this node holds the master lease", m.master.clone());
        registry.register("epoch", "Highest fencing epoch this node has seen", m.epoch.clone());
        registry.register("queue_depth", "Fires waiting in each live node's durable queue", m.queue_depth.clone());
        registry.register(
            "dispatch",
            "Fires by the path that brought them to the node that ran them",
            m.dispatch.clone(),
        );
        registry.register(
            "submit_calls",
            "SubmitTasks calls made as master (one or more fires each)",
            m.submit_calls.clone(),
        );
        registry.register(
            "prevented_duplicates",
            "Claims refused because the fire was already claimed",
            m.prevented_duplicates.clone(),
        );
        registry.register(
            "queue_dead_letters",
            "Queue entries set aside in the dead-letter list, with their reason",
            m.dead_letters.clone(),
        );
        registry.register(
            "set_aside",
            "Jobs and fires set aside because a key the store holds for them has the wrong type or does not decode",
            m.set_aside.clone(),
        );
        registry.register("alerts", "Alerts raised (logged) and webhook deliveries (sent, failed)", m.alerts.clone());
        registry.register("store_round_trip_seconds", "Heartbeat round trip to the store", m.store_rtt.clone());
        registry.register(
            "clock_offset_seconds",
            "Redis's clock (TIME) minus this node's wall clock, as last measured (negative: the node is ahead); fires use the corrected clock",
            m.clock_offset.clone(),
        );
        registry.register(
            "master_present",
            "1 while a live node holds the master lease (as this node sees it)",
            m.master_present.clone(),
        );
        registry.register(
            "scheduler_tick_failures",
            "Scheduler ticks (claim passes) of this node as master that failed",
            m.tick_failures.clone(),
        );
        registry.register(
            "scheduler_seconds_since_last_tick",
            "On the master, seconds since its last successful scheduler tick (0 on other nodes)",
            m.tick_age.clone(),
        );
        Metrics { registry, ..m }
    }

    pub fn outcome(&self, state: &str) {
        self.fires.get_or_create(&OutcomeLabel { outcome: state.to_string() }).inc();
    }

    pub fn dispatched(&self, path: &str) {
        self.dispatch.get_or_create(&PathLabel { path: path.to_string() }).inc();
    }

    pub fn alert(&self, result: &str) {
        self.alerts.get_or_create(&ResultLabel { result: result.to_string() }).inc();
    }

    /// The registry in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
