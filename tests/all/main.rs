//! The end-to-end suite: one test binary for the workspace (every extra binary links the
//! server again). Add a module here rather than a new file under `tests/`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod admin;
mod audit;
mod cli;
mod concurrency;
mod console;
mod delivery;
mod dialects;
mod directory;
mod durability;
mod errors;
mod expr;
mod filters;
mod groups;
mod guard;
mod harness;
mod hostile;
mod isolation;
mod languages;
mod lifecycle;
mod matching;
mod ops;
mod ownership;
mod recreate;
mod replicas;
mod plugins;
mod rules;
mod scope;
mod shaping;
mod signin;
mod tls;
mod users;
