//! The state a plugin's store holds, and the WASI it sees: nothing granted.

use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

pub use crate::store::rules::Limits;
use super::ticker::Ticking;

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

pub struct SandboxState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limits: StoreLimits,
    stderr: MemoryOutputPipe,
    /// Epoch ticks this call may still run.
    pub ticks_left: u64,
    /// Keeps the epoch ticker running while this store lives.
    _ticking: Ticking,
}

impl SandboxState {
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
            limits: StoreLimitsBuilder::new().memory_size(limits.memory_bytes).instances(16).tables(16).memories(4).trap_on_grow_failure(true).build(),
            stderr,
            ticks_left: 0,
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
