//! tandem's one integration test binary: the engine, the connectors and the
//! command line against the simulators, through real HTTP on loopback.

mod api;
mod bad_input;
mod browser;
mod cli;
mod connectors;
mod converge;
mod deletes;
mod drift;
mod faults;
mod hubspot_history;
mod init;
mod limits;
mod linkup;
mod logs;
mod loops;
mod mailchimp_tags;
mod migrate;
mod ops;
mod policy_cli;
mod reload;
mod resolve;
mod scope;
mod sims;
mod support;
mod sync;
mod tidy;
mod web;
mod webhooks;
