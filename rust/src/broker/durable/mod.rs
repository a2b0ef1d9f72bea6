//! Durable streams of the in-memory broker: retention, durable consumers, ack
//! tracking and redelivery timers.
//!
//! The pure logic (`stream`, `consumer`, `streams`) has no PyO3 in it and is
//! tested with `cargo test`; `py` binds it as `RustStreams` and
//! `RustDurableMessage`. Its twin is `microstd/broker/_streams_pure.py`.

pub mod consumer;
#[cfg(feature = "python")]
pub mod py;
pub mod stream;
pub mod streams;

#[cfg(test)]
mod tests;
