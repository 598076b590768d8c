//! SNMP v2c messages on the wire (BER, RFC 1901 / RFC 3416), encoded and decoded
//! with rasn-snmp.

use rasn::types::ObjectIdentifier;
use rasn_snmp::v2::{
    BulkPdu, GetBulkRequest, GetNextRequest, GetRequest, Pdu, Pdus, VarBind, VarBindValue,
};
use rasn_snmp::v2c::Message;

use crate::value::Value;

/// The requests the inventory sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// GetRequest: the named instances.
    Get,
    /// GetNextRequest: the instance after each name.
    GetNext,
    /// GetBulkRequest with no non-repeaters: up to this many successors of each name.
    GetBulk(u32),
}

/// A decoded Response PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The community the agent answered with.
    pub community: Vec<u8>,
    /// The request id it answers.
    pub request_id: i32,
    /// RFC 3416 error-status (0 is noError).
    pub error_status: u32,
    /// 1-based index of the binding the error is about.
    pub error_index: u32,
    /// The variable bindings, in order.
    pub bindings: Vec<(Vec<u32>, Value)>,
}

/// Encode a request for `oids`.
pub fn encode_request(
    kind: RequestKind, community: &[u8], request_id: i32, oids: &[Vec<u32>],
) -> Result<Vec<u8>, String> {
    let bindings = oids
        .iter()
        .map(|oid| {
            Ok(VarBind {
                name: ObjectIdentifier::new(oid.clone())
                    .ok_or_else(|| format!("invalid OID {}", crate::oids::dotted(oid)))?,
                value: VarBindValue::Unspecified,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let pdu = Pdu {
        request_id,
        error_status: Pdu::ERROR_STATUS_NO_ERROR,
        error_index: 0,
        variable_bindings: bindings.clone(),
    };
    let data = match kind {
        RequestKind::Get => Pdus::GetRequest(GetRequest(pdu)),
        RequestKind::GetNext => Pdus::GetNextRequest(GetNextRequest(pdu)),
        RequestKind::GetBulk(max_repetitions) => Pdus::GetBulkRequest(GetBulkRequest(BulkPdu {
            request_id,
            non_repeaters: 0,
            max_repetitions,
            variable_bindings: bindings,
        })),
    };
    let message = Message {
        version: Message::<Pdus>::VERSION.into(),
        community: community.to_vec().into(),
        data,
    };
    rasn::ber::encode(&message).map_err(|e| format!("cannot encode the request: {e}"))
}

/// Decode a datagram as a v2c Response; anything else is an error naming it.
pub fn decode_response(datagram: &[u8]) -> Result<Response, String> {
    let message: Message<Pdus> =
        rasn::ber::decode(datagram).map_err(|e| format!("not an SNMP v2c message: {e}"))?;
    if message.version != Message::<Pdus>::VERSION.into() {
        return Err(format!("SNMP version field {} is not v2c", message.version));
    }
    let pdu = match message.data {
        Pdus::Response(r) => r.0,
        Pdus::Report(_) => return Err("the agent sent a Report PDU, not a Response".into()),
        other => return Err(format!("expected a Response PDU, got {}", pdu_name(&other))),
    };
    Ok(Response {
        community: message.community.to_vec(),
        request_id: pdu.request_id,
        error_status: pdu.error_status,
        error_index: pdu.error_index,
        bindings: pdu
            .variable_bindings
            .iter()
            .map(|vb| (vb.name.to_vec(), Value::from_wire(&vb.value)))
            .collect(),
    })
}

fn pdu_name(p: &Pdus) -> &'static str {
    match p {
        Pdus::GetRequest(_) => "GetRequest",
        Pdus::GetNextRequest(_) => "GetNextRequest",
        Pdus::Response(_) => "Response",
        Pdus::SetRequest(_) => "SetRequest",
        Pdus::GetBulkRequest(_) => "GetBulkRequest",
        Pdus::InformRequest(_) => "InformRequest",
        Pdus::Trap(_) => "Trap",
        Pdus::Report(_) => "Report",
    }
}

/// The RFC 3416 name of an error-status.
pub fn error_status_name(status: u32) -> &'static str {
    const NAMES: [&str; 19] = [
        "noError",
        "tooBig",
        "noSuchName",
        "badValue",
        "readOnly",
        "genErr",
        "noAccess",
        "wrongType",
        "wrongLength",
        "wrongEncoding",
        "wrongValue",
        "noCreation",
        "inconsistentValue",
        "resourceUnavailable",
        "commitFailed",
        "undoFailed",
        "authorizationError",
        "notWritable",
        "inconsistentName",
    ];
    NAMES.get(status as usize).copied().unwrap_or("unknown error")
}

/// Build a Response datagram (what an agent sends); used by the tests' scripted
/// agent and kept here beside its decoder so the two cannot drift apart.
#[cfg(test)]
pub fn encode_response(
    community: &[u8], request_id: i32, error_status: u32, bindings: Vec<(Vec<u32>, VarBindValue)>,
) -> Vec<u8> {
    let pdu = Pdu {
        request_id,
        error_status,
        error_index: 0,
        variable_bindings: bindings
            .into_iter()
            .map(|(oid, value)| VarBind { name: ObjectIdentifier::new(oid).unwrap(), value })
            .collect(),
    };
    rasn::ber::encode(&Message {
        version: Message::<Pdus>::VERSION.into(),
        community: community.to_vec().into(),
        data: Pdus::Response(rasn_snmp::v2::Response(pdu)),
    })
    .unwrap()
}

/// Decode a request (what an agent receives): kind, community, id, names.
#[cfg(test)]
pub fn decode_request(datagram: &[u8]) -> (RequestKind, Vec<u8>, i32, Vec<Vec<u32>>) {
    let m: Message<Pdus> = rasn::ber::decode(datagram).unwrap();
    let names = |vbs: &[VarBind]| vbs.iter().map(|v| v.name.to_vec()).collect();
    let community = m.community.to_vec();
    match m.data {
        Pdus::GetRequest(r) => {
            (RequestKind::Get, community, r.0.request_id, names(&r.0.variable_bindings))
        }
        Pdus::GetNextRequest(r) => {
            (RequestKind::GetNext, community, r.0.request_id, names(&r.0.variable_bindings))
        }
        Pdus::GetBulkRequest(r) => (
            RequestKind::GetBulk(r.0.max_repetitions),
            community,
            r.0.request_id,
            names(&r.0.variable_bindings),
        ),
        _ => panic!("not a request"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rasn_smi::v1::Counter;
    use rasn_smi::v2::{ApplicationSyntax, SimpleSyntax};

    #[test]
    fn requests_round_trip() {
        let oids = vec![vec![1, 3, 6, 1, 2, 1, 1, 1, 0], vec![1, 3, 6, 1, 2, 1, 2, 2, 1, 2]];
        for kind in [RequestKind::Get, RequestKind::GetNext, RequestKind::GetBulk(7)] {
            let bytes = encode_request(kind, b"s3cret", 42, &oids).unwrap();
            assert_eq!(decode_request(&bytes), (kind, b"s3cret".to_vec(), 42, oids.clone()));
        }
    }

    #[test]
    fn a_get_request_is_the_bytes_net_snmp_sends() {
        // `snmpget -v2c -c public HOST 1.3.6.1.2.1.1.5.0` (net-snmp 5.9.3), as
        // captured on a UDP socket; its request-id was 0x7c176bd1.
        let captured: &[u8] = &[
            0x30, 0x29, 0x02, 0x01, 0x01, 0x04, 0x06, 0x70, 0x75, 0x62, 0x6c, 0x69, 0x63, 0xa0,
            0x1c, 0x02, 0x04, 0x7c, 0x17, 0x6b, 0xd1, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x30,
            0x0e, 0x30, 0x0c, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x02, 0x01, 0x01, 0x05, 0x00, 0x05,
            0x00,
        ];
        let bytes = encode_request(
            RequestKind::Get,
            b"public",
            0x7c17_6bd1,
            &[vec![1, 3, 6, 1, 2, 1, 1, 5, 0]],
        )
        .unwrap();
        assert_eq!(bytes, captured);
    }

    #[test]
    fn responses_decode_with_their_values() {
        let bytes = encode_response(
            b"public",
            9,
            0,
            vec![
                (
                    vec![1, 3, 6, 1, 2, 1, 1, 5, 0],
                    VarBindValue::Value(SimpleSyntax::String(b"box".to_vec().into()).into()),
                ),
                (
                    vec![1, 3, 6, 1, 2, 1, 2, 2, 1, 10, 1],
                    VarBindValue::Value(ApplicationSyntax::Counter(Counter(77)).into()),
                ),
                (vec![1, 3, 6, 1, 2, 1, 1, 9, 0], VarBindValue::NoSuchObject),
            ],
        );
        let r = decode_response(&bytes).unwrap();
        assert_eq!(r.request_id, 9);
        assert_eq!(r.community, b"public");
        assert_eq!(r.bindings[0].1, Value::Bytes(b"box".to_vec()));
        assert_eq!(r.bindings[1].1, Value::Counter32(77));
        assert_eq!(r.bindings[2].1, Value::NoSuchObject);
    }

    #[test]
    fn garbage_and_requests_are_not_responses() {
        assert!(
            decode_response(b"\x01\x02garbage").unwrap_err().contains("not an SNMP v2c message")
        );
        let req = encode_request(RequestKind::Get, b"p", 1, &[vec![1, 3, 6]]).unwrap();
        assert!(decode_response(&req).unwrap_err().contains("GetRequest"));
        assert_eq!(error_status_name(1), "tooBig");
        assert_eq!(error_status_name(99), "unknown error");
    }
}
