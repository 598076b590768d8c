//! Notifications: webhooks, signed and delivered at least once, in order per
//! subscription, from a durable outbox.
//!
//! # The flow
//!
//! The event log (every change of state, [`crate::scheduler::Event`]) and
//! the inventory's changes are the sources. The feeder ([`feed`]) reads both
//! from where it stopped, keeps the events a subscriber may want
//! ([`EventKind`]), and appends them to the outbox with the position it read
//! up to, in one transaction that moves the position by compare-and-set: two
//! daemons never feed the same events. The deliverer ([`delivery`]) posts
//! each subscription's outbox events in order, signed ([`signature`]), and
//! records how far it got: a failed delivery is retried with backoff, then
//! dead-lettered, and an admin may re-send a dead letter. The receiving hosts
//! are the admin's allow-list ([`AllowList`]).
//!
//! Nothing here runs on the scheduler's or the inventory's path: they write
//! their events as before, and the feeder reads them afterwards.
//!
//! - [`kinds`]: the event kinds and the body delivered for each;
//! - [`subscription`]: subscriptions and the allow-list;
//! - [`signature`]: the signature header, for senders and receivers;
//! - [`store`]: the port both backends implement;
//! - [`feed`] and [`delivery`]: the two loops the daemon runs.

pub mod delivery;
pub mod feed;
pub mod kinds;
pub mod signature;
pub mod store;
pub mod subscription;

pub use kinds::EventKind;
pub use store::{DeadLetter, FeedPosition, OutboxEvent, OutboxStore};
pub use subscription::{AllowList, NewSubscription, Subscription};
