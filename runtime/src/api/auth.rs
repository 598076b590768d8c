//! Tokens: admin tokens, the agents' enrollment secret and per-agent tokens.
//!
//! Tokens are 256 random bits, so a plain SHA-256 of the token (not a slow
//! password hash) is what the daemon stores and compares: it cannot be reversed
//! and there is nothing to brute-force. Only hashes are kept; a token is shown
//! once, when it is made.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::ApiState;
use super::error::ApiError;
use crate::scheduler::Agent;

/// A fresh random token: 64 hex digits.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The stored form of a token.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The hashes of the tokens the daemon accepts.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// Hashes of the admin tokens.
    pub admin_hashes: Vec<String>,
    /// Hash of the enrollment secret agents register with.
    pub enroll_hash: String,
}

impl Credentials {
    /// Whether `token` is an admin token (compared hash to hash).
    pub fn is_admin(&self, token: &str) -> bool {
        let hash = hash_token(token);
        self.admin_hashes.iter().any(|h| constant_time_eq(h, &hash))
    }

    /// Whether `token` is the enrollment secret.
    pub fn is_enrollment(&self, token: &str) -> bool {
        constant_time_eq(&self.enroll_hash, &hash_token(token))
    }
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The bearer token of a request.
pub fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or_else(|| ApiError::Unauthorized("missing Authorization: Bearer <token>".into()))?;
    header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::Unauthorized("malformed Authorization header: use Bearer <token>".into())
        })
}

/// A request made with an admin token.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl FromRequestParts<ApiState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        if state.credentials.is_admin(bearer(parts)?) {
            Ok(Admin)
        } else {
            Err(ApiError::Unauthorized("unknown admin token".into()))
        }
    }
}

/// A request made with an agent's token: the agent.
#[derive(Debug, Clone)]
pub struct AgentCaller(pub Agent);

impl FromRequestParts<ApiState> for AgentCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let token_hash = hash_token(bearer(parts)?);
        let now = std::time::Instant::now();
        if let Some(agent) = state.agents.get(&token_hash, now) {
            return Ok(AgentCaller(agent));
        }
        let agent =
            state.scheduler.store().agent_by_token(&token_hash).await?.ok_or_else(|| {
                ApiError::Unauthorized("unknown agent token: register again".into())
            })?;
        state.agents.insert(&token_hash, agent.clone(), now);
        Ok(AgentCaller(agent))
    }
}

/// A request made with the enrollment secret.
#[derive(Debug, Clone, Copy)]
pub struct Enrollment;

impl FromRequestParts<ApiState> for Enrollment {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        if state.credentials.is_enrollment(bearer(parts)?) {
            Ok(Enrollment)
        } else {
            Err(ApiError::Unauthorized("wrong enrollment secret".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_only_hashes_compare() {
        let a = new_token();
        assert_eq!(a.len(), 64);
        assert_ne!(a, new_token());
        let creds =
            Credentials { admin_hashes: vec![hash_token(&a)], enroll_hash: hash_token("enroll") };
        assert!(creds.is_admin(&a));
        assert!(!creds.is_admin("guess"));
        assert!(creds.is_enrollment("enroll"));
        assert!(!creds.is_enrollment(&a));
    }
}
