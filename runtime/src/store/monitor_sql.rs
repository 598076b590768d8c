//! The agents' monitor's SQL, written once for both stores (`$n`
//! placeholders, read by rusqlite and sqlx alike): an agent with no request
//! since the cutoff is down; one seen since it was marked down is up again.
//! Each backend runs both in one transaction with an event per agent.

/// Mark down the agents not seen since `$2` (at `$1`): their ids and names.
pub const MARK_DOWN: &str = "UPDATE agents SET down_since = $1 \
     WHERE down_since IS NULL AND last_seen < $2 RETURNING id, name";

/// Mark up the agents seen since they were marked down: ids and names.
pub const MARK_UP: &str = "UPDATE agents SET down_since = NULL \
     WHERE down_since IS NOT NULL AND last_seen > down_since RETURNING id, name";
