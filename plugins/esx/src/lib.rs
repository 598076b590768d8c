//! jobstack plugin `esx`: inventory of VMware ESX hosts (or vCenters) through
//! the vSphere web services (SOAP vim25) over outgoing HTTP.
//!
//! Parameters: `{"hosts": ["esx01.example.com", "10.0.0.5:8443",
//! "https://vc.example.com/sdk"], "user": "root"}`; secrets: `{"password": "..."}`.
//! A host without a scheme is `https://HOST/sdk`.
//!
//! `split` makes one part per endpoint, whose target is its `host:port`, so the
//! agent grants HTTP to that endpoint only. `execute` calls
//! RetrieveServiceContent, Login, then lists every host system (hardware: vendor,
//! model, CPU, memory, BIOS; product version and build) and every virtual machine
//! (name, power state, CPUs, memory, guest OS, UUID, host) through a container
//! view and the property collector, and logs out, whatever happened in between.
//! It emits one record per host (`"kind": "host"`) and per VM (`"kind": "vm"`),
//! and returns the counts and the endpoint's `about` information.
//!
//! HTTPS certificates are verified by the host unless the task accepts
//! self-signed ones (as fresh ESX installs have).

pub mod soap;
pub mod stage;

use jobstack_plugin::http::{self, Url};
use jobstack_plugin::{Capability, Guest, Job, Manifest, Origin, Part};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

use soap::{MoRef, ObjectContent};

/// Properties read from each host system.
const HOST_PROPERTIES: [&str; 4] =
    ["name", "summary.hardware", "hardware.biosInfo", "summary.config.product"];

/// Properties read from each virtual machine.
const VM_PROPERTIES: [&str; 7] = [
    "name",
    "runtime.powerState",
    "runtime.host",
    "config.hardware.numCPU",
    "config.hardware.memoryMB",
    "config.guestFullName",
    "config.uuid",
];

/// The SOAPAction of every call: the vim25 release whose types we read
/// (understood by ESX 6.0 and later).
const SOAP_ACTION: &str = "urn:vim25/6.0";

/// Most pages of results followed per query (100 objects each): a bound
/// against a server that keeps returning a token.
const MAX_PAGES: usize = 1_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    hosts: Vec<String>,
    user: String,
}

#[derive(Debug, Deserialize)]
struct Secrets {
    password: Option<String>,
}

#[derive(Debug, serde::Serialize, Deserialize)]
struct Payload {
    url: String,
}

/// The SDK URL of a `hosts` entry.
fn endpoint(entry: &str) -> Result<Url, String> {
    let entry = entry.trim();
    if entry.starts_with("http://") || entry.starts_with("https://") {
        let mut url = Url::parse(entry)?;
        if url.path == "/" {
            url.path = "/sdk".to_string();
        }
        return Ok(url);
    }
    Url::parse(&format!("https://{entry}/sdk"))
        .map_err(|_| format!("{entry:?} is not a host, host:port or https:// URL"))
}

struct Esx;

impl Guest for Esx {
    fn manifest() -> Manifest {
        let mut m = jobstack_plugin::manifest(
            "esx",
            "1.0.0",
            "VMware ESX/vCenter inventory: hosts (hardware, BIOS, product) and VMs, over the vSphere SOAP API",
        );
        m.capabilities = vec![Capability::Http];
        m.params_schema = json!({
            "type": "object",
            "required": ["hosts", "user"],
            "additionalProperties": false,
            "properties": {
                "hosts": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "string", "minLength": 1},
                    "description": "ESX hosts or vCenters: host, host:port or https://host[:port]/sdk; one part each"
                },
                "user": {"type": "string", "minLength": 1, "description": "user name; the password is the task secret `password`"}
            }
        })
        .to_string();
        m
    }

    fn split(params: String) -> Result<Vec<Part>, String> {
        let params: Params = jobstack_plugin::from_json("parameters", &params)?;
        if params.hosts.is_empty() {
            return Err("parameters: `hosts` is empty".to_string());
        }
        params
            .hosts
            .iter()
            .map(|h| {
                let url = endpoint(h)?;
                let scheme = if url.https { "https" } else { "http" };
                let payload = Payload { url: format!("{scheme}://{}{}", url.authority, url.path) };
                Ok(Part {
                    label: url.authority.clone(),
                    targets: vec![url.host_port()],
                    payload: jobstack_plugin::to_json(&payload),
                })
            })
            .collect()
    }

    fn init(params: String) -> Result<(), String> {
        let _: Params = jobstack_plugin::from_json("parameters", &params)?;
        Ok(())
    }

    fn execute(job: Job) -> Result<String, String> {
        let params: Params = jobstack_plugin::from_json("parameters", &job.params)?;
        let secrets: Secrets = jobstack_plugin::from_json("secrets", &job.secrets)?;
        let password =
            secrets.password.ok_or("the task has no `password` secret for the ESX user")?;
        let payload: Payload = jobstack_plugin::from_json("part payload", &job.part.payload)?;
        let url = Url::parse(&payload.url)?;
        let mut client = Client { url, cookie: None };

        jobstack_plugin::host::progress(0, 4);
        let (refs, about) =
            soap::parse_service_content(&client.call(&soap::retrieve_service_content())?)
                .map_err(|e| format!("RetrieveServiceContent: {e}"))?;
        let get = |name: &str| {
            refs.get(name).cloned().ok_or_else(|| format!("the service content has no {name}"))
        };
        let session_manager = get("sessionManager")?;
        client
            .call(&soap::login(&session_manager, &params.user, &password))
            .and_then(|xml| soap::parse_returnval(&xml))
            .map_err(|e| format!("login as {:?} failed: {e}", params.user))?;
        jobstack_plugin::host::progress(1, 4);

        let result = (|| {
            let root = get("rootFolder")?;
            let views = get("viewManager")?;
            let collector = get("propertyCollector")?;
            let hosts =
                client.inventory(&views, &root, &collector, "HostSystem", &HOST_PROPERTIES)?;
            jobstack_plugin::host::progress(2, 4);
            let vms =
                client.inventory(&views, &root, &collector, "VirtualMachine", &VM_PROPERTIES)?;
            jobstack_plugin::host::progress(3, 4);
            Ok::<_, String>((hosts, vms))
        })();
        // Log out whatever happened: sessions are a limited resource on ESX.
        if let Err(e) = client.call(&soap::logout(&session_manager)) {
            jobstack_plugin::warn(&format!("logout failed: {e}"));
        }
        let (hosts, vms) = result?;
        jobstack_plugin::host::progress(4, 4);

        let endpoint = client.url.authority.clone();
        let names: BTreeMap<String, String> =
            hosts.iter().map(|h| (h.obj.value.clone(), text(&h.props, "name", &[]))).collect();
        for h in &hosts {
            jobstack_plugin::emit(&host_record(&endpoint, h));
        }
        for v in &vms {
            jobstack_plugin::emit(&vm_record(&endpoint, v, &names));
        }
        Ok(json!({
            "endpoint": endpoint,
            "about": about,
            "hosts": hosts.len(),
            "vms": vms.len(),
        })
        .to_string())
    }

    fn stage(records: Vec<String>, _origin: Origin) -> Result<Vec<String>, String> {
        Ok(stage::observations(&records)?.iter().map(jobstack_plugin::to_json).collect())
    }
}

/// One SOAP endpoint and the session cookie once logged in.
struct Client {
    url: Url,
    cookie: Option<String>,
}

impl Client {
    /// POST an envelope; the answer's text (faults included: vSphere sends
    /// them with status 500, and the parser turns them into errors).
    fn call(&mut self, envelope: &str) -> Result<String, String> {
        let mut headers =
            vec![("content-type", "text/xml; charset=utf-8"), ("soapaction", SOAP_ACTION)];
        if let Some(c) = &self.cookie {
            headers.push(("cookie", c.as_str()));
        }
        let response = http::request("POST", &self.url, &headers, envelope.as_bytes())?;
        if let Some(set) = response.head.header("set-cookie") {
            // `vmware_soap_session="..."; Path=/; HttpOnly`: only the pair goes back.
            self.cookie = set.split(';').next().map(|c| c.trim().to_string());
        }
        let status = response.head.status;
        let body = String::from_utf8_lossy(&response.body).into_owned();
        if status != 200 && !(status == 500 && body.contains("Fault")) {
            return Err(format!(
                "{} answered HTTP {status} (is this a vSphere SDK endpoint?)",
                self.url.authority
            ));
        }
        Ok(body)
    }

    /// Every object of `kind` with `paths`, through a container view that is
    /// destroyed afterwards.
    fn inventory(
        &mut self, views: &MoRef, root: &MoRef, collector: &MoRef, kind: &str, paths: &[&str],
    ) -> Result<Vec<ObjectContent>, String> {
        let view = soap::parse_moref(&self.call(&soap::create_container_view(views, root, kind))?)
            .map_err(|e| format!("CreateContainerView of {kind}: {e}"))?;
        let mut page = soap::parse_retrieve(
            &self.call(&soap::retrieve_properties(collector, &view, kind, paths))?,
        )
        .map_err(|e| format!("RetrievePropertiesEx of {kind}: {e}"))?;
        let mut objects = std::mem::take(&mut page.objects);
        let mut pages = 1;
        while let Some(token) = page.token.take() {
            if pages >= MAX_PAGES {
                return Err(format!("more than {MAX_PAGES} pages of {kind}"));
            }
            page = soap::parse_retrieve(&self.call(&soap::continue_retrieve(collector, &token))?)
                .map_err(|e| format!("ContinueRetrievePropertiesEx of {kind}: {e}"))?;
            objects.append(&mut page.objects);
            pages += 1;
        }
        if let Err(e) =
            self.call(&soap::destroy_view(&view)).and_then(|x| soap::parse_returnval(&x))
        {
            jobstack_plugin::warn(&format!("DestroyView failed: {e}"));
        }
        objects.sort_by(|a, b| a.obj.cmp(&b.obj));
        Ok(objects)
    }
}

/// The text at `path` (a property, then keys inside it); empty when absent.
fn text(props: &BTreeMap<String, Value>, prop: &str, keys: &[&str]) -> String {
    let mut v = props.get(prop);
    for k in keys {
        v = v.and_then(|x| x.get(k));
    }
    v.and_then(Value::as_str).unwrap_or_default().to_string()
}

/// The number at `path`, or null when absent or not a number.
fn number(props: &BTreeMap<String, Value>, prop: &str, keys: &[&str]) -> Value {
    text(props, prop, keys).parse::<i64>().map_or(Value::Null, Value::from)
}

/// The host's serial number: its `SerialNumberTag`, else its `ServiceTag`
/// (where vSphere puts the system serial of most vendors), among the
/// hardware's other identifying information; empty when it has neither.
fn serial(props: &BTreeMap<String, Value>) -> String {
    let infos = props.get("summary.hardware").map(|hw| &hw["otherIdentifyingInfo"]);
    let infos: Vec<&Value> = match infos {
        Some(Value::Array(all)) => all.iter().collect(),
        Some(one @ Value::Object(_)) => vec![one],
        _ => Vec::new(),
    };
    let tagged = |key: &str| {
        infos
            .iter()
            .find(|i| i["identifierType"]["key"] == key)
            .and_then(|i| i["identifierValue"].as_str().map(|v| v.trim().to_string()))
    };
    tagged("SerialNumberTag").or_else(|| tagged("ServiceTag")).unwrap_or_default()
}

fn host_record(endpoint: &str, h: &ObjectContent) -> Value {
    let p = &h.props;
    let hw = "summary.hardware";
    let product = "summary.config.product";
    json!({
        "kind": "host",
        "endpoint": endpoint,
        "moref": h.obj.value,
        "name": text(p, "name", &[]),
        "vendor": text(p, hw, &["vendor"]),
        "model": text(p, hw, &["model"]),
        "uuid": text(p, hw, &["uuid"]),
        "cpu_model": text(p, hw, &["cpuModel"]),
        "cpu_packages": number(p, hw, &["numCpuPkgs"]),
        "cpu_cores": number(p, hw, &["numCpuCores"]),
        "cpu_threads": number(p, hw, &["numCpuThreads"]),
        "cpu_mhz": number(p, hw, &["cpuMhz"]),
        "memory_bytes": number(p, hw, &["memorySize"]),
        "bios_vendor": text(p, "hardware.biosInfo", &["vendor"]),
        "bios_version": text(p, "hardware.biosInfo", &["biosVersion"]),
        "bios_release_date": text(p, "hardware.biosInfo", &["releaseDate"]),
        "serial": serial(p),
        "product_name": text(p, product, &["fullName"]),
        "product_version": text(p, product, &["version"]),
        "product_build": text(p, product, &["build"]),
    })
}

fn vm_record(endpoint: &str, v: &ObjectContent, host_names: &BTreeMap<String, String>) -> Value {
    let p = &v.props;
    let host_id = text(p, "runtime.host", &["value"]);
    json!({
        "kind": "vm",
        "endpoint": endpoint,
        "moref": v.obj.value,
        "name": text(p, "name", &[]),
        "host": host_names.get(&host_id).cloned().unwrap_or_else(|| host_id.clone()),
        "host_moref": host_id,
        "power_state": text(p, "runtime.powerState", &[]),
        "cpus": number(p, "config.hardware.numCPU", &[]),
        "memory_mb": number(p, "config.hardware.memoryMB", &[]),
        "guest_os": text(p, "config.guestFullName", &[]),
        "uuid": text(p, "config.uuid", &[]),
    })
}

jobstack_plugin::export!(Esx);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_become_sdk_urls() {
        let u = endpoint("esx01.example.com").unwrap();
        assert_eq!(
            (u.https, u.authority.as_str(), u.path.as_str()),
            (true, "esx01.example.com", "/sdk")
        );
        assert_eq!(endpoint("10.0.0.5:8443").unwrap().host_port(), "10.0.0.5:8443");
        let u = endpoint("http://127.0.0.1:8989").unwrap();
        assert_eq!((u.https, u.path.as_str()), (false, "/sdk"));
        assert!(endpoint("a b").is_err());
    }

    #[test]
    fn split_makes_one_part_per_host_targeting_its_host_and_port() {
        let parts =
            Esx::split(r#"{"hosts":["esx01","https://127.0.0.1:9443/sdk"],"user":"root"}"#.into())
                .unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].targets, vec!["esx01:443".to_string()]);
        assert_eq!(parts[1].targets, vec!["127.0.0.1:9443".to_string()]);
        let payload: Payload = serde_json::from_str(&parts[1].payload).unwrap();
        assert_eq!(payload.url, "https://127.0.0.1:9443/sdk");
        assert!(Esx::split(r#"{"hosts":[],"user":"root"}"#.into()).is_err());
    }

    #[test]
    fn records_read_the_properties_and_name_the_vm_host() {
        let host = ObjectContent {
            obj: MoRef { kind: "HostSystem".into(), value: "host-9".into() },
            props: BTreeMap::from([
                ("name".to_string(), json!("esx9")),
                (
                    "summary.hardware".to_string(),
                    json!({"vendor": "Dell", "numCpuCores": "16", "memorySize": "68719476736",
                           "otherIdentifyingInfo": [
                               {"identifierValue": " No Asset Tag", "identifierType": {"key": "AssetTag"}},
                               {"identifierValue": " 7XK2Q33 ", "identifierType": {"key": "ServiceTag"}}]}),
                ),
            ]),
        };
        let r = host_record("e", &host);
        assert_eq!(r["serial"], "7XK2Q33");
        assert_eq!((r["name"].as_str(), r["vendor"].as_str()), (Some("esx9"), Some("Dell")));
        assert_eq!(r["cpu_cores"], 16);
        assert_eq!(r["memory_bytes"], 68719476736_i64);
        assert_eq!(r["cpu_threads"], Value::Null);
        let vm = ObjectContent {
            obj: MoRef { kind: "VirtualMachine".into(), value: "vm-1".into() },
            props: BTreeMap::from([(
                "runtime.host".to_string(),
                json!({"type": "HostSystem", "value": "host-9"}),
            )]),
        };
        let names = BTreeMap::from([("host-9".to_string(), "esx9".to_string())]);
        assert_eq!(vm_record("e", &vm, &names)["host"], "esx9");
    }
}
