//! hello: the smallest complete jobstack plugin.
//!
//! Parameters `{"name": "world", "count": 3}`: `split` makes `count` parts, and
//! each part's `execute` greets `name`, reporting progress, logging and emitting
//! one record. Copy this crate (and the `wit/` folder) to start a plugin.

use serde::Deserialize;

// Generate the bindings of the `task` world from the contract. When you copy this
// crate out of the jobstack repository, copy `wit/` too and point `path` at it.
wit_bindgen::generate!({
    path: "../../wit",
    world: "task",
});

use jobstack::plugin::host::{self, Level};
use jobstack::plugin::types::Capability;

/// The task parameters; their JSON Schema is in the manifest below.
#[derive(Deserialize)]
struct Params {
    name: String,
    #[serde(default = "one")]
    count: u32,
}

fn one() -> u32 {
    1
}

/// What each part carries.
#[derive(Deserialize, serde::Serialize)]
struct Payload {
    index: u32,
}

fn parse_params(text: &str) -> Result<Params, String> {
    serde_json::from_str(text).map_err(|e| format!("invalid params: {e}"))
}

struct Hello;

impl Guest for Hello {
    fn manifest() -> Manifest {
        Manifest {
            name: "hello".into(),
            version: "0.1.0".into(),
            description: "Greets someone, once per part".into(),
            params_schema: serde_json::json!({
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "count": {"type": "integer", "minimum": 1, "maximum": 1000}
                },
                "additionalProperties": false
            })
            .to_string(),
            // hello touches nothing outside its sandbox.
            capabilities: Vec::<Capability>::new(),
        }
    }

    fn split(params: String) -> Result<Vec<Part>, String> {
        let params = parse_params(&params)?;
        Ok((0..params.count)
            .map(|index| Part {
                label: format!("greeting {index}"),
                targets: Vec::new(),
                payload: serde_json::to_string(&Payload { index }).expect("payload serializes"),
            })
            .collect())
    }

    fn init(params: String) -> Result<(), String> {
        parse_params(&params).map(|_| ())
    }

    fn execute(job: Job) -> Result<String, String> {
        let params = parse_params(&job.params)?;
        let payload: Payload =
            serde_json::from_str(&job.part.payload).map_err(|e| format!("invalid part: {e}"))?;
        host::log(Level::Info, &format!("greeting {} (attempt {})", params.name, job.attempt));
        let greeting = format!("hello, {} #{}", params.name, payload.index);
        host::emit(&serde_json::json!({ "greeting": greeting }).to_string());
        host::progress(1, 1);
        Ok(serde_json::json!({ "greeting": greeting }).to_string())
    }

    fn stage(_records: Vec<String>, _origin: Origin) -> Result<Vec<String>, String> {
        // A greeting is no inventory. A plugin that finds things maps its
        // records here to observations (see `stage` in wit/task.wit).
        Ok(Vec::new())
    }
}

export!(Hello);
