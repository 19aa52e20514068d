//! The state a plugin's store holds, and the WASI it sees: nothing granted.

use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::ticker::Ticking;
use crate::model::Limits;

/// How much of a plugin's stderr is kept (panic messages end up there).
const STDERR_CAPACITY: usize = 4096;

/// A clock that never moves: plugins are pure functions and get no real time.
struct FixedClock;

impl HostWallClock for FixedClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FixedClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// The store's resource limits, which also remember whether they refused a memory growth: a
/// trap after that is the plugin running out of memory, whatever its message says.
pub struct Limiter {
    limits: StoreLimits,
    memory_refused: bool,
    /// Linear memory the instance holds (all its memories), as last grown.
    memory_bytes: usize,
}

impl Limiter {
    /// Linear memory the instance holds now: what it started with plus every growth allowed.
    pub fn memory_bytes(&self) -> usize {
        self.memory_bytes
    }

    /// Whether a memory growth was refused since [`Limiter::reset`].
    pub fn memory_refused(&self) -> bool {
        self.memory_refused
    }

    /// Forgets earlier refusals (before a call).
    pub fn reset(&mut self) {
        self.memory_refused = false;
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum);
        if matches!(allowed, Ok(true)) {
            // A memory's creation is a growth from 0, so this counts every memory.
            self.memory_bytes += desired.saturating_sub(current);
        } else {
            self.memory_refused = true;
        }
        allowed
    }
    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory_refused = true;
        self.limits.memory_grow_failed(error)
    }
    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }
    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }
    fn instances(&self) -> usize {
        self.limits.instances()
    }
    fn tables(&self) -> usize {
        self.limits.tables()
    }
    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// What a plugin's store holds.
pub struct SandboxState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// Memory, table and instance limits.
    pub limits: Limiter,
    stderr: MemoryOutputPipe,
    /// Epoch ticks this call may still run.
    pub ticks_left: u64,
    /// Set when the call's CPU budget ran out (the epoch callback trapped it).
    pub cpu_exhausted: bool,
    /// Keeps the epoch ticker running while this store lives.
    _ticking: Ticking,
}

impl SandboxState {
    /// The state of a store for a plugin with these limits.
    pub fn new(limits: &Limits, ticking: Ticking) -> SandboxState {
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        let mut b = WasiCtxBuilder::new();
        // Defaults already grant no files, environment, arguments or name lookups, and
        // discard stdout; deny sockets outright and replace time and randomness.
        b.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .stderr(stderr.clone())
            .wall_clock(FixedClock)
            .monotonic_clock(FixedClock)
            .secure_random(wasmtime_wasi::Deterministic::new(vec![0x5a, 0xa5, 0x3c, 0xc3]))
            .insecure_random(wasmtime_wasi::Deterministic::new(vec![0x1f, 0xe0]))
            .insecure_random_seed(0x6d61_7077_7269_6768);
        SandboxState {
            wasi: b.build(),
            table: ResourceTable::new(),
            limits: Limiter {
                limits: StoreLimitsBuilder::new().memory_size(limits.memory_bytes).instances(16).tables(16).memories(4).trap_on_grow_failure(true).build(),
                memory_refused: false,
                memory_bytes: 0,
            },
            stderr,
            ticks_left: 0,
            cpu_exhausted: false,
            _ticking: ticking,
        }
    }

    /// What the plugin wrote to stderr (e.g. its panic message), lossily decoded.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.contents()).trim().to_string()
    }
}

impl WasiView for SandboxState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}
