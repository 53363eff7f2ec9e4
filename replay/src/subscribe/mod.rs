//! Subscriptions served off replay cursors: the reader ([`hub`]), server-side
//! filters ([`filter`]), tokens ([`auth`]), per-tenant limits ([`limits`]).
//! The transports (GraphQL over WebSocket, JSON WebSocket, SSE) are in
//! `crate::server`.

pub mod auth;
pub mod event;
pub mod filter;
pub mod hub;
pub mod limits;
pub mod metrics;

pub use event::EventJson;
pub use filter::Filter;
pub use hub::{Delivery, Hub, StartAt, SubscribeError, SubscribeRequest, Subscription};
