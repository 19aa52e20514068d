//! Host bindings of the plugin contract (`plugin-sdk/wit`). Exports are async so that a
//! running plugin yields to the executor at every epoch tick instead of holding a worker.
#![allow(missing_docs, clippy::all)]

wasmtime::component::bindgen!({
    world: "rules",
    path: "../plugin-sdk/wit",
    exports: { default: async },
});
