//! Host bindings of the plugin contract (`plugin-sdk/wit`). Exports are async so that a
//! running plugin yields to the executor at every epoch tick instead of holding a worker.
#![allow(missing_docs, clippy::all)]

wasmtime::component::bindgen!({
    world: "host-rules",
    path: "../plugin-sdk/wit",
    exports: { default: async },
});

/// The optional `self-test` export (contract 0.1.1), bound separately.
pub mod self_test {
    wasmtime::component::bindgen!({
        world: "self-tested",
        path: "../plugin-sdk/wit",
        exports: { default: async },
    });
}

/// The optional `shape` export (contract 0.1.2), bound separately: it is loaded from the same
/// instance as the rules, so a shaping call reuses the entry's pooled instances.
pub mod shaping {
    wasmtime::component::bindgen!({
        world: "shaping",
        path: "../plugin-sdk/wit",
        exports: { default: async },
        // One set of shared types (provenance, rejection) for every binding.
        with: { "mapwright:plugin/types": crate::plugins::bindings::mapwright::plugin::types },
    });
}

/// The optional `scope` export (contract 0.1.2), bound separately and loaded from the same
/// instance as the rules.
pub mod scoping {
    wasmtime::component::bindgen!({
        world: "scoping",
        path: "../plugin-sdk/wit",
        exports: { default: async },
        with: { "mapwright:plugin/types": crate::plugins::bindings::mapwright::plugin::types },
    });
}

/// The optional `username-candidates` export (contract 0.1.2), bound separately and loaded
/// from the same instance as the rules.
pub mod candidates {
    wasmtime::component::bindgen!({
        world: "candidates",
        path: "../plugin-sdk/wit",
        exports: { default: async },
        with: { "mapwright:plugin/types": crate::plugins::bindings::mapwright::plugin::types },
    });
}
