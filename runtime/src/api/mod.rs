//! The REST/JSON API: the agent protocol, the admin API and the operations
//! endpoints, served by axum. [`wire`] holds every body.

pub mod wire;
