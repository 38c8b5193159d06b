//! Simulator fidelity tests.
