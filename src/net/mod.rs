//! The libp2p network layer: a [`Client`] handle sends [`Command`]s to an [`EventLoop`] that
//! owns the `Swarm`; what arrives from peers comes out as [`Event`]s. Nothing here knows about
//! DKG or signing: it moves bytes between allow-listed peers.

mod behaviour;
mod client;
mod dialing;
mod error;
mod event_loop;
mod messages;

pub use behaviour::{Behaviour, BehaviourEvent, GossipSettings, RpcCodec};
pub use client::{Client, TryCommandError};
pub use error::NetError;
pub use event_loop::EventLoop;
pub use messages::{Command, Event, NetParams, DEFAULT_EVENT_QUEUE};
