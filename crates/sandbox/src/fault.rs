//! Fault injection: a middleware in front of every HTTP stand-in, configured per system and per
//! route, driven by a seeded random generator so a run can be repeated exactly.
//!
//! Rules are checked in order for every request. Every matching [`Fault::Latency`] that fires adds
//! its delay; the first matching rule with any other fault that fires decides what happens to the
//! request. A rule fires with its `probability` (drawn from the system's seeded generator) and at
//! most `times` times when a limit is set.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// One of the external systems the sandbox stands in for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum System {
    /// Stripe's REST API (and the hosted checkout page).
    Stripe,
    /// Twilio's Messages API.
    Twilio,
    /// Dentrix Ascend.
    Dentrix,
    /// NexHealth.
    NexHealth,
    /// Open Dental.
    OpenDental,
    /// CareCredit (Synchrony).
    CareCredit,
    /// Sunbit.
    Sunbit,
}

impl System {
    /// Every HTTP system, in a fixed order.
    pub const ALL: [Self; 7] = [
        Self::Stripe,
        Self::Twilio,
        Self::Dentrix,
        Self::NexHealth,
        Self::OpenDental,
        Self::CareCredit,
        Self::Sunbit,
    ];

    /// A short lower-case name (`stripe`, `nexhealth`, ...), as used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Stripe => "stripe",
            Self::Twilio => "twilio",
            Self::Dentrix => "dentrix",
            Self::NexHealth => "nexhealth",
            Self::OpenDental => "opendental",
            Self::CareCredit => "carecredit",
            Self::Sunbit => "sunbit",
        }
    }

    /// Parses [`System::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }

    fn seed_salt(self) -> u64 {
        // Distinct, fixed per system so one system's draws never shift another's.
        match self {
            Self::Stripe => 0x5354_5249,
            Self::Twilio => 0x5457_494c,
            Self::Dentrix => 0x4445_4e54,
            Self::NexHealth => 0x4e45_5848,
            Self::OpenDental => 0x4f50_454e,
            Self::CareCredit => 0x4341_5245,
            Self::Sunbit => 0x5355_4e42,
        }
    }
}

impl fmt::Display for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An added delay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Latency {
    /// Always this long.
    Fixed(Duration),
    /// Uniformly distributed between `min` and `max` (inclusive), drawn from the seeded generator.
    Uniform {
        /// Shortest delay.
        min: Duration,
        /// Longest delay.
        max: Duration,
    },
}

/// What happens to a request after the handler ran, when its response is lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LostResponse {
    /// The connection is reset: the client gets a connection error at once.
    Reset,
    /// Nothing is ever written: the client waits until its own timeout.
    Hang,
}

/// A fault to inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Fault {
    /// Delay the request before it is handled; combines with the other faults.
    Latency(Latency),
    /// Answer with this status (429, 500, 503, ...) and a vendor-shaped error body, without
    /// running the handler. A `retry_after` becomes a `Retry-After` header in whole seconds.
    Status {
        /// The HTTP status.
        status: u16,
        /// The `Retry-After` to send, if any.
        retry_after: Option<Duration>,
    },
    /// Reset the connection without running the handler: nothing was applied.
    ConnectionReset,
    /// Run the handler (so its effects happen), then lose the response.
    ResponseLost(LostResponse),
    /// Run the handler, then send the response body `chunk` bytes at a time, `interval` apart.
    SlowDrip {
        /// Bytes per chunk (at least 1).
        chunk: usize,
        /// Pause between chunks.
        interval: Duration,
    },
}

impl Fault {
    /// 429 with `Retry-After: secs`.
    pub fn too_many_requests(secs: u64) -> Self {
        Self::Status {
            status: 429,
            retry_after: Some(Duration::from_secs(secs)),
        }
    }

    /// A bare status (500, 503, ...), without `Retry-After`.
    pub fn status(status: u16) -> Self {
        Self::Status {
            status,
            retry_after: None,
        }
    }

    /// A fixed added delay.
    pub fn latency(delay: Duration) -> Self {
        Self::Latency(Latency::Fixed(delay))
    }

    /// The handler runs, then the connection is reset: applied, but the client never knows.
    pub fn applied_then_reset() -> Self {
        Self::ResponseLost(LostResponse::Reset)
    }

    /// The handler runs, then nothing is sent: the client times out.
    pub fn applied_then_hang() -> Self {
        Self::ResponseLost(LostResponse::Hang)
    }

    fn label(&self) -> String {
        match self {
            Self::Latency(_) => "latency".into(),
            Self::Status { status, .. } => format!("status_{status}"),
            Self::ConnectionReset => "connection_reset".into(),
            Self::ResponseLost(LostResponse::Reset) => "response_lost_reset".into(),
            Self::ResponseLost(LostResponse::Hang) => "response_lost_hang".into(),
            Self::SlowDrip { .. } => "slow_drip".into(),
        }
    }
}

/// Which requests a rule applies to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteMatch {
    /// The HTTP method (`POST`), or any when `None`. Compared case-insensitively.
    pub method: Option<String>,
    /// A path prefix (`/v1/customers`); the empty string matches every path.
    pub path_prefix: String,
}

impl RouteMatch {
    /// Every request.
    pub fn any() -> Self {
        Self::default()
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && path.starts_with(&self.path_prefix)
    }
}

/// One fault rule: which requests, what fault, how often.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    /// The requests it applies to.
    pub route: RouteMatch,
    /// The fault.
    pub fault: Fault,
    /// Chance that a matching request gets the fault, from 0.0 to 1.0 (default 1.0).
    pub probability: f64,
    /// Apply to at most this many matching requests, then stop; unlimited when `None`.
    pub times: Option<u32>,
}

impl FaultRule {
    /// A rule applying `fault` to every request, always.
    pub fn new(fault: Fault) -> Self {
        Self {
            route: RouteMatch::any(),
            fault,
            probability: 1.0,
            times: None,
        }
    }

    /// Restricts the rule to `method` requests whose path starts with `path_prefix`.
    #[must_use]
    pub fn on(mut self, method: &str, path_prefix: &str) -> Self {
        self.route = RouteMatch {
            method: Some(method.to_ascii_uppercase()),
            path_prefix: path_prefix.to_owned(),
        };
        self
    }

    /// Restricts the rule to paths starting with `path_prefix`, any method.
    #[must_use]
    pub fn path(mut self, path_prefix: &str) -> Self {
        self.route.path_prefix = path_prefix.to_owned();
        self
    }

    /// Fires with this probability (clamped to 0.0..=1.0).
    #[must_use]
    pub fn probability(mut self, p: f64) -> Self {
        self.probability = p.clamp(0.0, 1.0);
        self
    }

    /// Fires at most `n` times.
    #[must_use]
    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }
}

#[derive(Debug)]
struct RuleState {
    rule: FaultRule,
    fired: u32,
}

#[derive(Debug)]
struct SystemFaults {
    rules: Vec<RuleState>,
    rng: StdRng,
}

/// What the middleware must do with one request.
#[derive(Debug, Default)]
pub(crate) struct Verdict {
    pub(crate) delay: Duration,
    pub(crate) fault: Option<Fault>,
    pub(crate) labels: Vec<String>,
}

/// The live fault configuration of every system. Cheap to clone; changes apply to the next
/// request.
#[derive(Clone)]
pub struct FaultController {
    inner: Arc<Mutex<BTreeMap<System, SystemFaults>>>,
}

impl fmt::Debug for FaultController {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultController").finish_non_exhaustive()
    }
}

impl FaultController {
    pub(crate) fn new(seed: u64, initial: &BTreeMap<System, Vec<FaultRule>>) -> Self {
        let mut map = BTreeMap::new();
        for system in System::ALL {
            let rules = initial
                .get(&system)
                .map(|rules| {
                    rules
                        .iter()
                        .map(|rule| RuleState {
                            rule: rule.clone(),
                            fired: 0,
                        })
                        .collect()
                })
                .unwrap_or_default();
            map.insert(
                system,
                SystemFaults {
                    rules,
                    rng: StdRng::seed_from_u64(seed ^ system.seed_salt()),
                },
            );
        }
        Self {
            inner: Arc::new(Mutex::new(map)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<System, SystemFaults>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the rules of `system`.
    pub fn set(&self, system: System, rules: Vec<FaultRule>) {
        if let Some(s) = self.lock().get_mut(&system) {
            s.rules = rules
                .into_iter()
                .map(|rule| RuleState { rule, fired: 0 })
                .collect();
        }
    }

    /// Appends one rule to `system`'s rules.
    pub fn push(&self, system: System, rule: FaultRule) {
        if let Some(s) = self.lock().get_mut(&system) {
            s.rules.push(RuleState { rule, fired: 0 });
        }
    }

    /// Removes every rule of `system`.
    pub fn clear(&self, system: System) {
        self.set(system, Vec::new());
    }

    /// Removes every rule of every system.
    pub fn clear_all(&self) {
        for s in self.lock().values_mut() {
            s.rules.clear();
        }
    }

    /// The rules of `system`, as currently configured.
    pub fn rules(&self, system: System) -> Vec<FaultRule> {
        self.lock()
            .get(&system)
            .map(|s| s.rules.iter().map(|r| r.rule.clone()).collect())
            .unwrap_or_default()
    }

    /// How many times each rule of `system` has fired, in rule order.
    pub fn fired(&self, system: System) -> Vec<u32> {
        self.lock()
            .get(&system)
            .map(|s| s.rules.iter().map(|r| r.fired).collect())
            .unwrap_or_default()
    }

    /// Reseeds `system`'s generator (for repeating a run from a known point).
    pub fn reseed(&self, system: System, seed: u64) {
        if let Some(s) = self.lock().get_mut(&system) {
            s.rng = StdRng::seed_from_u64(seed ^ system.seed_salt());
        }
    }

    pub(crate) fn decide(&self, system: System, method: &str, path: &str) -> Verdict {
        let mut guard = self.lock();
        let mut verdict = Verdict::default();
        let Some(state) = guard.get_mut(&system) else {
            return verdict;
        };
        let SystemFaults { rules, rng } = state;
        for rs in rules.iter_mut() {
            if !rs.rule.route.matches(method, path) {
                continue;
            }
            if rs.rule.times.is_some_and(|n| rs.fired >= n) {
                continue;
            }
            let is_latency = matches!(rs.rule.fault, Fault::Latency(_));
            if !is_latency && verdict.fault.is_some() {
                continue;
            }
            // Always draw, so one rule's outcome does not depend on whether another fired.
            let draw: f64 = rng.r#gen();
            if draw >= rs.rule.probability {
                continue;
            }
            rs.fired += 1;
            verdict.labels.push(rs.rule.fault.label());
            match rs.rule.fault {
                Fault::Latency(Latency::Fixed(d)) => verdict.delay += d,
                Fault::Latency(Latency::Uniform { min, max }) => {
                    let (lo, hi) = if min <= max { (min, max) } else { (max, min) };
                    let nanos = rng.gen_range(lo.as_nanos()..=hi.as_nanos());
                    verdict.delay += Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
                }
                other => verdict.fault = Some(other),
            }
        }
        verdict
    }
}
