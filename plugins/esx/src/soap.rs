//! The vSphere web services (SOAP, namespace `urn:vim25`) as far as an inventory
//! needs them: envelopes for the few calls made, and the parsing of their
//! answers (faults, `returnval`, the property collector's object contents).
//!
//! Property values are turned into JSON as they come (`<a><b>1</b></a>` becomes
//! `{"b": "1"}`; leaves stay text), so the inventory picks fields by name and
//! converts numbers itself.

use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A managed object reference: its type (`HostSystem`) and id (`host-21`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MoRef {
    /// The managed object type.
    pub kind: String,
    /// The id.
    pub value: String,
}

impl MoRef {
    /// `<tag type="kind">value</tag>`.
    pub fn xml(&self, tag: &str) -> String {
        format!("<{tag} type=\"{}\">{}</{tag}>", escape(&self.kind), escape(&self.value))
    }
}

/// One object returned by `RetrievePropertiesEx`: its reference and the
/// requested properties that it has.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectContent {
    /// The object.
    pub obj: MoRef,
    /// Property path -> value.
    pub props: BTreeMap<String, Value>,
}

/// A page of `RetrievePropertiesEx` results.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrieveResult {
    /// The objects of this page.
    pub objects: Vec<ObjectContent>,
    /// Set when more pages follow (`ContinueRetrievePropertiesEx`).
    pub token: Option<String>,
}

/// Escape text for an XML element or attribute.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Wrap a call's body in a SOAP envelope.
pub fn envelope(body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
         <soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" \
         xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">\
         <soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"
    )
}

/// `RetrieveServiceContent` on the well-known `ServiceInstance`.
pub fn retrieve_service_content() -> String {
    envelope(
        "<RetrieveServiceContent xmlns=\"urn:vim25\">\
         <_this type=\"ServiceInstance\">ServiceInstance</_this></RetrieveServiceContent>",
    )
}

/// `Login` with a user name and password.
pub fn login(session_manager: &MoRef, user: &str, password: &str) -> String {
    envelope(&format!(
        "<Login xmlns=\"urn:vim25\">{}<userName>{}</userName><password>{}</password></Login>",
        session_manager.xml("_this"),
        escape(user),
        escape(password)
    ))
}

/// `Logout`.
pub fn logout(session_manager: &MoRef) -> String {
    envelope(&format!("<Logout xmlns=\"urn:vim25\">{}</Logout>", session_manager.xml("_this")))
}

/// `CreateContainerView` of every object of `kind` under `container`.
pub fn create_container_view(view_manager: &MoRef, container: &MoRef, kind: &str) -> String {
    envelope(&format!(
        "<CreateContainerView xmlns=\"urn:vim25\">{}{}<type>{}</type>\
         <recursive>true</recursive></CreateContainerView>",
        view_manager.xml("_this"),
        container.xml("container"),
        escape(kind)
    ))
}

/// `DestroyView`.
pub fn destroy_view(view: &MoRef) -> String {
    envelope(&format!("<DestroyView xmlns=\"urn:vim25\">{}</DestroyView>", view.xml("_this")))
}

/// `RetrievePropertiesEx` of `paths` of every `kind` object in a container view.
pub fn retrieve_properties(collector: &MoRef, view: &MoRef, kind: &str, paths: &[&str]) -> String {
    let path_set: String =
        paths.iter().map(|p| format!("<pathSet>{}</pathSet>", escape(p))).collect();
    envelope(&format!(
        "<RetrievePropertiesEx xmlns=\"urn:vim25\">{}<specSet>\
         <propSet><type>{}</type>{path_set}</propSet>\
         <objectSet>{}<skip>true</skip>\
         <selectSet xsi:type=\"TraversalSpec\"><name>traverseView</name>\
         <type>ContainerView</type><path>view</path><skip>false</skip></selectSet>\
         </objectSet></specSet><options><maxObjects>100</maxObjects></options>\
         </RetrievePropertiesEx>",
        collector.xml("_this"),
        escape(kind),
        view.xml("obj")
    ))
}

/// `ContinueRetrievePropertiesEx` for the next page.
pub fn continue_retrieve(collector: &MoRef, token: &str) -> String {
    envelope(&format!(
        "<ContinueRetrievePropertiesEx xmlns=\"urn:vim25\">{}<token>{}</token>\
         </ContinueRetrievePropertiesEx>",
        collector.xml("_this"),
        escape(token)
    ))
}

/// Parse a response; a SOAP fault becomes its `faultstring` (with the fault
/// type from `detail` when there is one).
fn parse(xml: &str) -> Result<roxmltree::Document<'_>, String> {
    let doc = roxmltree::Document::parse(xml)
        .map_err(|e| format!("the server's answer is not XML ({e})"))?;
    if let Some(fault) =
        doc.descendants().find(|n| n.is_element() && n.tag_name().name() == "Fault")
    {
        let text = child(fault, "faultstring")
            .and_then(|n| n.text())
            .unwrap_or("no fault string")
            .trim()
            .to_string();
        let kind =
            child(fault, "detail").and_then(|d| d.children().find(|n| n.is_element())).map(|n| {
                n.attribute(("http://www.w3.org/2001/XMLSchema-instance", "type"))
                    .unwrap_or(n.tag_name().name())
                    .to_string()
            });
        return Err(match kind {
            Some(k) => format!("{text} ({k})"),
            None => text,
        });
    }
    Ok(doc)
}

fn child<'a, 'i>(node: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    node.children().find(|n| n.is_element() && n.tag_name().name() == name)
}

fn returnval<'a, 'i>(doc: &'a roxmltree::Document<'i>) -> Option<roxmltree::Node<'a, 'i>> {
    doc.descendants().find(|n| n.is_element() && n.tag_name().name() == "returnval")
}

fn moref(node: roxmltree::Node) -> MoRef {
    MoRef {
        kind: node.attribute("type").unwrap_or_default().to_string(),
        value: node.text().unwrap_or_default().trim().to_string(),
    }
}

/// The `returnval` of a call as JSON (`{}` when there is none).
pub fn parse_returnval(xml: &str) -> Result<Value, String> {
    let doc = parse(xml)?;
    Ok(returnval(&doc).map_or(Value::Object(Map::new()), to_json))
}

/// The managed object reference a call returned (`CreateContainerView`).
pub fn parse_moref(xml: &str) -> Result<MoRef, String> {
    let doc = parse(xml)?;
    returnval(&doc).map(moref).ok_or_else(|| "the answer holds no object reference".to_string())
}

/// The references named in the service content (`rootFolder`, ...).
pub fn parse_service_content(xml: &str) -> Result<(BTreeMap<String, MoRef>, Value), String> {
    let doc = parse(xml)?;
    let rv = returnval(&doc).ok_or("RetrieveServiceContent returned nothing")?;
    let refs = rv
        .children()
        .filter(|n| n.is_element() && n.attribute("type").is_some())
        .map(|n| (n.tag_name().name().to_string(), moref(n)))
        .collect();
    let about = child(rv, "about").map_or(Value::Null, to_json);
    Ok((refs, about))
}

/// A page of `RetrievePropertiesEx`/`ContinueRetrievePropertiesEx` results.
pub fn parse_retrieve(xml: &str) -> Result<RetrieveResult, String> {
    let doc = parse(xml)?;
    let Some(rv) = returnval(&doc) else {
        // No matching object at all: an empty answer.
        return Ok(RetrieveResult { objects: Vec::new(), token: None });
    };
    let token = child(rv, "token").and_then(|n| n.text()).map(|t| t.trim().to_string());
    let objects = rv
        .children()
        .filter(|n| n.is_element() && n.tag_name().name() == "objects")
        .map(|o| ObjectContent {
            obj: child(o, "obj")
                .map(moref)
                .unwrap_or(MoRef { kind: String::new(), value: String::new() }),
            props: o
                .children()
                .filter(|n| n.is_element() && n.tag_name().name() == "propSet")
                .filter_map(|p| {
                    let name = child(p, "name")?.text()?.trim().to_string();
                    let val = child(p, "val")?;
                    // A reference keeps its type: `{"type": ..., "value": ...}`.
                    let value = match val
                        .attribute(("http://www.w3.org/2001/XMLSchema-instance", "type"))
                    {
                        Some("ManagedObjectReference") => {
                            let r = moref(val);
                            serde_json::json!({"type": r.kind, "value": r.value})
                        }
                        _ => to_json(val),
                    };
                    Some((name, value))
                })
                .collect(),
        })
        .collect();
    Ok(RetrieveResult { objects, token })
}

/// An element as JSON: text for a leaf, an object of its children otherwise
/// (a repeated child becomes an array).
fn to_json(node: roxmltree::Node) -> Value {
    let elements: Vec<_> = node.children().filter(|n| n.is_element()).collect();
    if elements.is_empty() {
        return Value::String(node.text().unwrap_or_default().trim().to_string());
    }
    let mut map = Map::new();
    for e in elements {
        let name = e.tag_name().name().to_string();
        let value = to_json(e);
        match map.get_mut(&name) {
            Some(Value::Array(items)) => items.push(value),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, value]);
            }
            None => {
                map.insert(name, value);
            }
        }
    }
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_in_requests() {
        let sm = MoRef { kind: "SessionManager".into(), value: "ha-sessionmgr".into() };
        let body = login(&sm, "root", "p<&>\"'");
        assert!(body.contains("<password>p&lt;&amp;&gt;&quot;&apos;</password>"));
        assert!(body.contains("<_this type=\"SessionManager\">ha-sessionmgr</_this>"));
    }

    #[test]
    fn a_fault_becomes_its_fault_string_and_type() {
        let xml = r#"<?xml version="1.0"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>Login failure</faultstring><detail><InvalidLoginFault xmlns="urn:vim25" xsi:type="InvalidLogin"></InvalidLoginFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"#;
        assert_eq!(parse_returnval(xml).unwrap_err(), "Login failure (InvalidLogin)");
    }

    #[test]
    fn retrieve_results_keep_objects_properties_and_token() {
        let xml = r#"<Envelope xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><Body><RetrievePropertiesExResponse><returnval><token>t1</token>
            <objects><obj type="HostSystem">host-1</obj>
              <propSet><name>name</name><val xsi:type="xsd:string">esx1</val></propSet>
              <propSet><name>summary.hardware</name><val xsi:type="HostHardwareSummary"><vendor>V</vendor><numCpuCores>8</numCpuCores></val></propSet>
            </objects>
            <objects><obj type="VirtualMachine">vm-2</obj>
              <propSet><name>runtime.host</name><val type="HostSystem" xsi:type="ManagedObjectReference">host-1</val></propSet>
            </objects></returnval></RetrievePropertiesExResponse></Body></Envelope>"#;
        let r = parse_retrieve(xml).unwrap();
        assert_eq!(r.token.as_deref(), Some("t1"));
        assert_eq!(r.objects.len(), 2);
        assert_eq!(r.objects[0].obj.value, "host-1");
        assert_eq!(r.objects[0].props["name"], "esx1");
        assert_eq!(r.objects[0].props["summary.hardware"]["numCpuCores"], "8");
        assert_eq!(r.objects[1].props["runtime.host"]["value"], "host-1");
    }

    #[test]
    fn repeated_children_become_arrays() {
        let doc = roxmltree::Document::parse("<v><a>1</a><a>2</a><b>x</b></v>").unwrap();
        let v = to_json(doc.root_element());
        assert_eq!(v, serde_json::json!({"a": ["1", "2"], "b": "x"}));
    }
}
