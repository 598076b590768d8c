//! Task parameters against the JSON Schema a plugin's manifest declares: the
//! one check that `task create`/`edit` (through the API) and `jobstack exec`
//! both make before anything runs. Remote `$ref`s are not resolved.

/// At most this many schema violations are listed in an error.
const MAX_REPORTED_ERRORS: usize = 10;

/// Why parameters were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    /// The plugin's own schema is not a usable JSON Schema.
    #[error("the plugin's parameter schema is unusable: {0}")]
    UnusableSchema(String),
    /// The parameters break the schema: each violation, with where it is.
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
}

/// Check `params` against `schema` (a manifest's `params_schema`); an empty
/// or absent schema accepts anything.
pub fn check_params(
    schema: &serde_json::Value, params: &serde_json::Value,
) -> Result<(), ParamsError> {
    if schema.is_null() || schema == &serde_json::json!({}) {
        return Ok(());
    }
    let validator = jsonschema::validator_for(schema)
        .map_err(|e| ParamsError::UnusableSchema(e.to_string()))?;
    let errors: Vec<String> = validator
        .iter_errors(params)
        .take(MAX_REPORTED_ERRORS)
        .map(|e| {
            let at = e.instance_path.to_string();
            if at.is_empty() { e.to_string() } else { format!("{at}: {e}") }
        })
        .collect();
    if errors.is_empty() { Ok(()) } else { Err(ParamsError::Invalid(errors)) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parameters_are_checked_against_the_schema_saying_where() {
        let schema = json!({"type": "object", "required": ["targets"],
            "properties": {"targets": {"type": "array", "minItems": 1}}});
        assert_eq!(check_params(&schema, &json!({"targets": ["10.0.0.1"]})), Ok(()));
        let err = check_params(&schema, &json!({"targets": []})).unwrap_err();
        assert!(err.to_string().starts_with("/targets: "), "{err}");
        assert!(check_params(&json!({}), &json!({"anything": 1})).is_ok());
        let unusable = check_params(&json!({"type": 12}), &json!({}));
        assert!(matches!(unusable, Err(ParamsError::UnusableSchema(_))), "{unusable:?}");
    }
}
