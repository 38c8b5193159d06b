//! tandem keeps two live SaaS systems aligned in both directions, field by
//! field, with a three-way merge against the last agreed values and conflicts
//! that people resolve. See ARCHITECTURE.md for the map.

pub mod bench;
pub mod bench_decisions;
pub mod bench_latency;
pub mod bench_migrate;
pub mod cli;
pub mod config;
pub mod crash;
pub mod demo;
pub mod engine;
pub mod fixtures;
pub mod http;
pub mod inspect;
pub mod location;
pub mod people;
pub mod policy;
pub mod reconcile;
pub mod side;
pub mod store;
pub mod telemetry;
