//! The inventory of one device: the system group by GET, the interfaces table
//! by a walk of its columns, each value in its JSON form.

use serde_json::{Map, Value as Json};
use std::collections::BTreeMap;

use crate::client::{Client, SnmpError};
use crate::oids::{IF_COLUMNS, SYSTEM, if_column};
use crate::transport::Transport;
use crate::value::Value;

/// How a value is shown in the inventory.
#[derive(Debug, Clone, Copy)]
enum Form {
    Text,
    Number,
    Oid,
    Hex,
}

fn form_of(name: &str) -> Form {
    match name {
        "sysDescr" | "sysContact" | "sysName" | "sysLocation" | "ifDescr" => Form::Text,
        "sysObjectID" => Form::Oid,
        "ifPhysAddress" => Form::Hex,
        _ => Form::Number,
    }
}

/// The JSON form of `value` for the object `name`: `null` when the agent has no
/// such object or answered with a type the object does not have.
fn render(name: &str, value: &Value) -> Json {
    if value.is_absent() {
        return Json::Null;
    }
    let shown = match form_of(name) {
        Form::Text => value.as_text(),
        Form::Number => value.as_number(),
        Form::Oid => value.as_oid(),
        Form::Hex => value.as_hex(),
    };
    shown.unwrap_or_else(|| {
        jobstack_plugin_log(&format!("{name}: unexpected value {value:?}, shown as null"));
        Json::Null
    })
}

#[cfg(target_arch = "wasm32")]
fn jobstack_plugin_log(message: &str) {
    jobstack_plugin::warn(message);
}

#[cfg(not(target_arch = "wasm32"))]
fn jobstack_plugin_log(_message: &str) {}

/// `{"sysDescr": ..., "sysObjectID": ..., "sysUpTime": ..., ...}` by one GET.
pub fn system<T: Transport>(client: &mut Client<T>) -> Result<Map<String, Json>, SnmpError> {
    let oids: Vec<Vec<u32>> = SYSTEM.iter().map(|(_, oid)| oid.to_vec()).collect();
    let values = client.get(&oids)?;
    Ok(SYSTEM
        .iter()
        .zip(values)
        .map(|((name, _), v)| (name.to_string(), render(name, &v)))
        .collect())
}

/// One object per row of `ifTable`, ordered by index, each with every column
/// read (`null` where the agent has no value for that row).
pub fn interfaces<T: Transport>(
    client: &mut Client<T>, bulk: bool, max_repetitions: u32,
) -> Result<Vec<Map<String, Json>>, SnmpError> {
    let columns: Vec<Vec<u32>> = IF_COLUMNS.iter().map(|(_, c)| if_column(*c)).collect();
    let found = client.walk_columns(&columns, bulk, max_repetitions)?;
    let mut rows: BTreeMap<Vec<u32>, Map<String, Json>> = BTreeMap::new();
    for column in &found {
        for index in column.keys() {
            rows.entry(index.clone()).or_default();
        }
    }
    for (row_index, row) in rows.iter_mut() {
        for ((name, _), column) in IF_COLUMNS.iter().zip(&found) {
            let value = column.get(row_index).map_or(Json::Null, |v| render(name, v));
            row.insert(name.to_string(), value);
        }
    }
    Ok(rows.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_by_object() {
        assert_eq!(render("sysDescr", &Value::Bytes(b"Linux".to_vec())), Json::from("Linux"));
        assert_eq!(render("sysObjectID", &Value::Oid(vec![1, 3, 6])), Json::from("1.3.6"));
        assert_eq!(render("sysUpTime", &Value::TimeTicks(149)), Json::from(149));
        assert_eq!(render("ifSpeed", &Value::Gauge32(10)), Json::from(10));
        assert_eq!(
            render("ifPhysAddress", &Value::Bytes(vec![0x0e, 0x5a, 0, 1, 2, 3])),
            Json::from("0e:5a:00:01:02:03")
        );
        assert_eq!(render("sysContact", &Value::NoSuchObject), Json::Null);
        // A type the object cannot have is not passed off as a value.
        assert_eq!(render("ifMtu", &Value::Bytes(b"x".to_vec())), Json::Null);
    }
}
