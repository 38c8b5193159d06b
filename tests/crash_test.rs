//! The crash test in a binary of its own: it starts hundreds of `tandem`
//! processes, and alone it neither slows the other tests down nor is slowed by
//! them. See `crash.rs`.

#[allow(dead_code)]
#[path = "support.rs"]
mod support;

#[path = "crash.rs"]
mod crash;
