//! The stage: the accounts of the agent's mail server, each with its mailbox.
//! Never a password, a hash or a password scheme: an account is its address.
//! A removed account is not observed (nothing is there to see).

use serde_json::{Value, json};

/// The observations of a mail configuration's records, on `agent`'s server.
pub fn observations(records: &[String], agent: &str) -> Result<Vec<Value>, String> {
    let account = |address: &str, mailbox: Option<&Value>| {
        let mut seen = json!({
            "kind": "mail_account",
            "name": address,
            "keys": {"account": format!("{agent}/{address}")},
            "relations": [{"relation": "account_of", "to": {"kind": "host", "keys": {"agent": agent}}}],
        });
        if let Some(mailbox) = mailbox.filter(|m| !m.is_null()) {
            seen["attributes"] = json!({"mailbox": mailbox});
        }
        seen
    };
    let mut seen = Vec::new();
    for text in records {
        let record: Value = jobstack_plugin::from_json("record", text)?;
        match record["op"].as_str() {
            Some("list") => {
                for listed in record["accounts"].as_array().into_iter().flatten() {
                    if let Some(address) = listed["address"].as_str() {
                        seen.push(account(address, listed.get("mailbox")));
                    }
                }
            }
            Some("add") | Some("change_password") => {
                if let Some(address) = record["address"].as_str() {
                    seen.push(account(address, None));
                }
            }
            _ => {}
        }
    }
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_without_their_passwords() {
        let records = [
            json!({"op": "list", "accounts": [
                {"address": "a@example.com", "mailbox": "example.com/a/", "password_scheme": "SHA512-CRYPT"}]}),
            json!({"op": "add", "address": "b@example.com"}),
            json!({"op": "remove", "address": "c@example.com"}),
        ]
        .map(|r| r.to_string());
        let seen = observations(&records, "mx1").unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0]["keys"]["account"], "mx1/a@example.com");
        assert_eq!(seen[0]["attributes"], json!({"mailbox": "example.com/a/"}));
        let text = serde_json::to_string(&seen).unwrap();
        assert!(!text.contains("SHA512") && !text.contains("password"), "{text}");
    }
}
