//! Priorities of tasks and the order in which waiting parts are leased.
//!
//! Order: forced runs first, then High, then custom numbers (lower first), then
//! Normal, then Low; within a class the oldest run first, and within a run its
//! parts in the order `split` made them. The class is folded into one integer,
//! the *rank*, stored with every part so that the store can pick the next part
//! from an index instead of sorting.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A task's priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Priority {
    /// Before everything but forced runs.
    High,
    /// Between High and Normal; lower numbers first.
    Custom(u32),
    /// The default.
    #[default]
    Normal,
    /// After everything else.
    Low,
}

/// The rank of forced runs: below every priority's rank.
pub const FORCED_RANK: i64 = -1;

impl Priority {
    /// Lower rank is leased first. High = 0, Custom(n) = 1 + n, Normal and Low
    /// after every custom number.
    pub fn rank(self) -> i64 {
        match self {
            Priority::High => 0,
            Priority::Custom(n) => 1 + i64::from(n),
            Priority::Normal => 2 + i64::from(u32::MAX),
            Priority::Low => 3 + i64::from(u32::MAX),
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Priority::High => f.write_str("high"),
            Priority::Custom(n) => write!(f, "{n}"),
            Priority::Normal => f.write_str("normal"),
            Priority::Low => f.write_str("low"),
        }
    }
}

/// A priority that is neither `high`, `normal`, `low` nor a number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid priority {0:?}: use high, normal, low or a number (lower runs first, between high and normal)"
)]
pub struct InvalidPriority(pub String);

impl FromStr for Priority {
    type Err = InvalidPriority;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "high" => Ok(Priority::High),
            "normal" => Ok(Priority::Normal),
            "low" => Ok(Priority::Low),
            n => n.parse::<u32>().map(Priority::Custom).map_err(|_| InvalidPriority(s.to_string())),
        }
    }
}

/// The schema of the written form: a named class or a number.
impl utoipa::PartialSchema for Priority {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        let named = ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(["high", "normal", "low"]));
        let number = ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0));
        OneOfBuilder::new()
            .item(named)
            .item(number)
            .description(Some(
                "`high`, `normal`, `low`, or a number (lower first, between high and normal)",
            ))
            .into()
    }
}

impl utoipa::ToSchema for Priority {}

/// Priorities are written as `"high"`, `"normal"`, `"low"` or a number.
impl Serialize for Priority {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Priority::Custom(n) => s.serialize_u32(*n),
            other => s.serialize_str(&other.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Priority {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u32),
            Name(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(Priority::Custom(n)),
            Raw::Name(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_forced_high_custom_normal_low() {
        let ranks = [
            FORCED_RANK,
            Priority::High.rank(),
            Priority::Custom(0).rank(),
            Priority::Custom(7).rank(),
            Priority::Custom(u32::MAX).rank(),
            Priority::Normal.rank(),
            Priority::Low.rank(),
        ];
        assert!(ranks.windows(2).all(|w| w[0] < w[1]), "{ranks:?}");
    }

    #[test]
    fn parse_and_serialize() {
        assert_eq!("high".parse::<Priority>().unwrap(), Priority::High);
        assert_eq!("12".parse::<Priority>().unwrap(), Priority::Custom(12));
        assert!("urgent".parse::<Priority>().is_err());
        let p: Priority = serde_json::from_str("5").unwrap();
        assert_eq!(p, Priority::Custom(5));
        let p: Priority = serde_json::from_str("\"low\"").unwrap();
        assert_eq!(p, Priority::Low);
        assert_eq!(serde_json::to_string(&Priority::Custom(3)).unwrap(), "3");
        assert_eq!(serde_json::to_string(&Priority::Normal).unwrap(), "\"normal\"");
        assert!(serde_json::from_str::<Priority>("\"urgent\"").is_err());
    }
}
