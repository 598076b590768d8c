//! SNMP v3 with the User-based Security Model at the authPriv level: every
//! request authenticated (HMAC-SHA-96, RFC 3414, or HMAC-192-SHA-256, RFC 7860)
//! and encrypted (AES-128 in CFB mode, RFC 3826).
//!
//! The session first discovers the agent's engine (an unauthenticated request
//! answered by a Report carrying its engine ID, boots and time), localizes the
//! user's keys to that engine, then sends each request as an authenticated,
//! encrypted message and accepts only answers whose digest checks out. The
//! agent's Reports (unknown user, wrong digest, decryption error, ...) become
//! errors that say which password or setting is wrong.

use rasn::types::{Integer, ObjectIdentifier};
use rasn_snmp::v2::{
    BulkPdu, GetBulkRequest, GetNextRequest, GetRequest, Pdu, Pdus, VarBind, VarBindValue,
};
use rasn_snmp::v3::{HeaderData, Message, ScopedPdu, ScopedPduData, USMSecurityParameters};
use std::time::Instant;

pub use crate::crypto::AuthProtocol;
use crate::crypto::aes_cfb;
use crate::message::{RequestKind, Response};
use crate::value::Value;

/// The user's credentials, from the task's secrets.
#[derive(Clone)]
pub struct Credentials {
    /// usmUserName.
    pub user: String,
    /// Authentication protocol.
    pub auth: AuthProtocol,
    /// Authentication passphrase.
    pub auth_password: String,
    /// Privacy (AES) passphrase.
    pub priv_password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Credentials {{ user: {:?}, auth: {:?}, passwords: <hidden> }}",
            self.user, self.auth
        )
    }
}

/// msgFlags: authentication, privacy, reportable.
const FLAG_AUTH: u8 = 0x01;
const FLAG_PRIV: u8 = 0x02;
const FLAG_REPORTABLE: u8 = 0x04;
/// The largest message we accept (msgMaxSize), the UDP payload limit.
const MAX_SIZE: u32 = 65_507;
/// usmStats objects (1.3.6.1.6.3.15.1.1.N.0) an agent reports problems with.
const USM_STATS: [u32; 9] = [1, 3, 6, 1, 6, 3, 15, 1, 1];

/// The engine a session talks to, once discovered.
#[derive(Debug, Clone)]
struct Engine {
    id: Vec<u8>,
    boots: u32,
    time: u32,
    /// When `time` was learnt, to estimate the agent's clock later.
    learnt: Instant,
    auth_key: Vec<u8>,
    priv_key: [u8; 16],
}

/// What an answer to a v3 request turned out to be.
#[derive(Debug)]
pub enum Answer {
    /// The authenticated, decrypted Response.
    Response(Response),
    /// A Report from the agent (usmStats object number and what it means).
    Report(u32, String),
    /// Not an answer to this request (another msgID, a bad digest, garbage).
    Stray,
}

/// A USM session with one agent.
pub struct UsmSession {
    credentials: Credentials,
    auth_ku: Vec<u8>,
    priv_ku: Vec<u8>,
    engine: Option<Engine>,
    salt: u64,
}

impl UsmSession {
    /// A session for `credentials`; `salt` starts the AES salt counter (random
    /// in the plugin: an IV must never repeat under one key).
    pub fn new(credentials: Credentials, salt: u64) -> Self {
        let auth_ku = credentials.auth.password_to_key(credentials.auth_password.as_bytes());
        let priv_ku = credentials.auth.password_to_key(credentials.priv_password.as_bytes());
        UsmSession { credentials, auth_ku, priv_ku, engine: None, salt }
    }

    /// Whether the agent's engine is known yet.
    pub fn discovered(&self) -> bool {
        self.engine.is_some()
    }

    /// The discovery request: no user, no engine, reportable, an empty GET.
    pub fn discovery_request(&self, msg_id: i32) -> Vec<u8> {
        let usm = USMSecurityParameters {
            authoritative_engine_id: Vec::new().into(),
            authoritative_engine_boots: Integer::from(0),
            authoritative_engine_time: Integer::from(0),
            user_name: Vec::new().into(),
            authentication_parameters: Vec::new().into(),
            privacy_parameters: Vec::new().into(),
        };
        let scoped = ScopedPdu {
            engine_id: Vec::new().into(),
            name: Vec::new().into(),
            data: Pdus::GetRequest(GetRequest(Pdu {
                request_id: msg_id,
                error_status: 0,
                error_index: 0,
                variable_bindings: Vec::new(),
            })),
        };
        encode_message(msg_id, FLAG_REPORTABLE, &usm, ScopedPduData::CleartextPdu(scoped))
    }

    /// Learn the engine from a discovery answer (a Report naming the engine).
    /// Returns false when `datagram` is not that answer.
    pub fn learn_engine(&mut self, datagram: &[u8], msg_id: i32) -> bool {
        let Some((msg, usm)) = decode_message(datagram) else {
            return false;
        };
        if msg.global_data.message_id != Integer::from(msg_id)
            || usm.authoritative_engine_id.is_empty()
        {
            return false;
        }
        let id = usm.authoritative_engine_id.to_vec();
        let auth = self.credentials.auth;
        let priv_full = auth.localize(&self.priv_ku, &id);
        let mut priv_key = [0u8; 16];
        priv_key.copy_from_slice(&priv_full[..16]);
        self.engine = Some(Engine {
            auth_key: auth.localize(&self.auth_ku, &id),
            priv_key,
            boots: to_u32(&usm.authoritative_engine_boots),
            time: to_u32(&usm.authoritative_engine_time),
            learnt: Instant::now(),
            id,
        });
        true
    }

    /// An authenticated, encrypted request.
    pub fn request(
        &mut self, kind: RequestKind, msg_id: i32, oids: &[Vec<u32>],
    ) -> Result<Vec<u8>, String> {
        let engine = self.engine.as_ref().ok_or("the agent's engine is not discovered yet")?;
        let time = engine.time.saturating_add(engine.learnt.elapsed().as_secs() as u32);
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
            request_id: msg_id,
            error_status: 0,
            error_index: 0,
            variable_bindings: bindings.clone(),
        };
        let data = match kind {
            RequestKind::Get => Pdus::GetRequest(GetRequest(pdu)),
            RequestKind::GetNext => Pdus::GetNextRequest(GetNextRequest(pdu)),
            RequestKind::GetBulk(max_repetitions) => {
                Pdus::GetBulkRequest(GetBulkRequest(BulkPdu {
                    request_id: msg_id,
                    non_repeaters: 0,
                    max_repetitions,
                    variable_bindings: bindings,
                }))
            }
        };
        let scoped =
            ScopedPdu { engine_id: engine.id.clone().into(), name: Vec::new().into(), data };
        let plaintext =
            rasn::ber::encode(&scoped).map_err(|e| format!("cannot encode the request: {e}"))?;
        self.salt = self.salt.wrapping_add(1);
        let salt = self.salt.to_be_bytes();
        let ciphertext = aes_cfb(&engine.priv_key, engine.boots, time, &salt, plaintext, true);
        let mut usm = USMSecurityParameters {
            authoritative_engine_id: engine.id.clone().into(),
            authoritative_engine_boots: Integer::from(engine.boots),
            authoritative_engine_time: Integer::from(time),
            user_name: self.credentials.user.as_bytes().to_vec().into(),
            authentication_parameters: vec![0u8; self.credentials.auth.mac_len()].into(),
            privacy_parameters: salt.to_vec().into(),
        };
        let flags = FLAG_AUTH | FLAG_PRIV | FLAG_REPORTABLE;
        let unsigned = encode_message(
            msg_id,
            flags,
            &usm,
            ScopedPduData::EncryptedPdu(ciphertext.clone().into()),
        );
        usm.authentication_parameters =
            self.credentials.auth.mac(&engine.auth_key, &unsigned).into();
        Ok(encode_message(msg_id, flags, &usm, ScopedPduData::EncryptedPdu(ciphertext.into())))
    }

    /// Check, decrypt and read an answer to the request `msg_id`.
    pub fn answer(&mut self, datagram: &[u8], msg_id: i32) -> Answer {
        let Some((msg, usm)) = decode_message(datagram) else {
            return Answer::Stray;
        };
        if msg.global_data.message_id != Integer::from(msg_id) {
            return Answer::Stray;
        }
        let flags = msg.global_data.flags.first().copied().unwrap_or(0);
        let scoped = match (&msg.scoped_data, flags & (FLAG_AUTH | FLAG_PRIV)) {
            // An unauthenticated Report is how an agent says our credentials are wrong.
            (ScopedPduData::CleartextPdu(s), 0) => s.clone(),
            // Authenticated but not encrypted: how net-snmp reports a decryption
            // error (it cannot encrypt to a key it could not use).
            (ScopedPduData::CleartextPdu(s), FLAG_AUTH) => {
                let Some(engine) = self.engine.clone() else {
                    return Answer::Stray;
                };
                if !self.digest_ok(datagram, &usm, &engine) {
                    return Answer::Stray;
                }
                s.clone()
            }
            (ScopedPduData::EncryptedPdu(ct), f) if f == FLAG_AUTH | FLAG_PRIV => {
                let Some(engine) = self.engine.clone() else {
                    return Answer::Stray;
                };
                if !self.digest_ok(datagram, &usm, &engine) {
                    return Answer::Stray;
                }
                // Keep our estimate of the agent's clock current.
                if let Some(e) = self.engine.as_mut() {
                    e.boots = to_u32(&usm.authoritative_engine_boots);
                    e.time = to_u32(&usm.authoritative_engine_time);
                    e.learnt = Instant::now();
                }
                let plaintext = aes_cfb(
                    &engine.priv_key,
                    to_u32(&usm.authoritative_engine_boots),
                    to_u32(&usm.authoritative_engine_time),
                    &usm.privacy_parameters,
                    ct.to_vec(),
                    false,
                );
                match rasn::ber::decode::<ScopedPdu>(&plaintext) {
                    Ok(s) => s,
                    Err(_) => return Answer::Stray,
                }
            }
            _ => return Answer::Stray,
        };
        match scoped.data {
            Pdus::Response(r) if flags & FLAG_AUTH != 0 => Answer::Response(to_response(r.0)),
            Pdus::Report(r) => {
                let stat =
                    r.0.variable_bindings
                        .first()
                        .and_then(|vb| {
                            let oid = vb.name.to_vec();
                            (oid.len() == USM_STATS.len() + 2 && oid.starts_with(&USM_STATS))
                                .then(|| oid[USM_STATS.len()])
                        })
                        .unwrap_or(0);
                if stat == 2 {
                    // notInTimeWindows: the Report carries the agent's clock.
                    if let Some(e) = self.engine.as_mut() {
                        e.boots = to_u32(&usm.authoritative_engine_boots);
                        e.time = to_u32(&usm.authoritative_engine_time);
                        e.learnt = Instant::now();
                    }
                }
                Answer::Report(stat, report_meaning(stat, &self.credentials.user))
            }
            _ => Answer::Stray,
        }
    }

    fn digest_ok(&self, datagram: &[u8], usm: &USMSecurityParameters, engine: &Engine) -> bool {
        let mac = usm.authentication_parameters.to_vec();
        if mac.len() != self.credentials.auth.mac_len()
            || usm.authoritative_engine_id.to_vec() != engine.id
        {
            return false;
        }
        // The digest is computed over the message with its own field zeroed:
        // zero it in the bytes as received (re-encoding might differ).
        let Some(at) = datagram.windows(mac.len()).position(|w| w == mac.as_slice()) else {
            return false;
        };
        let mut zeroed = datagram.to_vec();
        zeroed[at..at + mac.len()].fill(0);
        let expected = self.credentials.auth.mac(&engine.auth_key, &zeroed);
        // Constant time: a timing difference must not reveal the digest.
        expected.len() == mac.len()
            && expected.iter().zip(&mac).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

/// What a usmStats Report means, in the words an admin needs.
fn report_meaning(stat: u32, user: &str) -> String {
    match stat {
        1 => "the agent refuses authPriv for this user (usmStatsUnsupportedSecLevels): configure the user with authentication and privacy".into(),
        2 => "the agent's clock moved (usmStatsNotInTimeWindows)".into(),
        3 => format!("the agent does not know the user {user:?} (usmStatsUnknownUserNames)"),
        4 => "the agent did not recognize its own engine ID (usmStatsUnknownEngineIDs)".into(),
        5 => "wrong authentication password or protocol (usmStatsWrongDigests)".into(),
        6 => "wrong privacy password (usmStatsDecryptionErrors)".into(),
        _ => "the agent sent a Report the plugin does not know".into(),
    }
}

fn to_response(pdu: Pdu) -> Response {
    Response {
        community: Vec::new(),
        request_id: pdu.request_id,
        error_status: pdu.error_status,
        error_index: pdu.error_index,
        bindings: pdu
            .variable_bindings
            .iter()
            .map(|vb| (vb.name.to_vec(), Value::from_wire(&vb.value)))
            .collect(),
    }
}

fn to_u32(i: &Integer) -> u32 {
    u32::try_from(i).unwrap_or(0)
}

fn encode_message(
    msg_id: i32, flags: u8, usm: &USMSecurityParameters, data: ScopedPduData,
) -> Vec<u8> {
    let message = Message {
        version: Integer::from(3),
        global_data: HeaderData {
            message_id: Integer::from(msg_id),
            max_size: Integer::from(MAX_SIZE),
            flags: vec![flags].into(),
            security_model: Integer::from(3),
        },
        security_parameters: rasn::ber::encode(usm).expect("USM parameters encode").into(),
        scoped_data: data,
    };
    rasn::ber::encode(&message).expect("v3 messages encode")
}

fn decode_message(datagram: &[u8]) -> Option<(Message, USMSecurityParameters)> {
    let msg: Message = rasn::ber::decode(datagram).ok()?;
    if msg.version != Integer::from(3) || msg.global_data.security_model != Integer::from(3) {
        return None;
    }
    let usm: USMSecurityParameters = rasn::ber::decode(&msg.security_parameters).ok()?;
    Some((msg, usm))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    fn credentials(auth: AuthProtocol) -> Credentials {
        Credentials {
            user: "jobstack".into(),
            auth,
            auth_password: "auth-pass-1".into(),
            priv_password: "priv-pass-2".into(),
        }
    }

    /// The agent's side of a discovery, built with the same types.
    fn report(msg_id: i32, engine: &[u8], stat: u32) -> Vec<u8> {
        let usm = USMSecurityParameters {
            authoritative_engine_id: engine.to_vec().into(),
            authoritative_engine_boots: Integer::from(3),
            authoritative_engine_time: Integer::from(1200),
            user_name: Vec::new().into(),
            authentication_parameters: Vec::new().into(),
            privacy_parameters: Vec::new().into(),
        };
        let mut oid = USM_STATS.to_vec();
        oid.extend([stat, 0]);
        let scoped = ScopedPdu {
            engine_id: engine.to_vec().into(),
            name: Vec::new().into(),
            data: Pdus::Report(rasn_snmp::v2::Report(Pdu {
                request_id: msg_id,
                error_status: 0,
                error_index: 0,
                variable_bindings: vec![VarBind {
                    name: ObjectIdentifier::new(oid).unwrap(),
                    value: VarBindValue::Value(rasn_smi::v1::Counter(1).into()),
                }],
            })),
        };
        encode_message(msg_id, 0, &usm, ScopedPduData::CleartextPdu(scoped))
    }

    #[test]
    fn requests_authenticate_and_decrypt_on_the_other_side() {
        for auth in [AuthProtocol::Sha1, AuthProtocol::Sha256] {
            let engine = hex("80001f8880aabbccdd");
            let mut session = UsmSession::new(credentials(auth), 41);
            assert!(!session.learn_engine(&report(8, &engine, 4), 7), "another msgID");
            assert!(session.learn_engine(&report(7, &engine, 4), 7));
            let bytes =
                session.request(RequestKind::Get, 9, &[vec![1, 3, 6, 1, 2, 1, 1, 5, 0]]).unwrap();
            // The agent's check: the digest over the zeroed message, then AES.
            let (msg, usm) = decode_message(&bytes).unwrap();
            assert_eq!(msg.global_data.flags.to_vec(), vec![0x07]);
            let e = session.engine.clone().unwrap();
            assert!(session.digest_ok(&bytes, &usm, &e));
            let mut tampered = bytes.clone();
            let last = tampered.len() - 1;
            tampered[last] ^= 1;
            assert!(!session.digest_ok(&tampered, &usm, &e));
            let ScopedPduData::EncryptedPdu(ct) = msg.scoped_data else { panic!("not encrypted") };
            let plain = aes_cfb(
                &e.priv_key,
                3,
                to_u32(&usm.authoritative_engine_time),
                &usm.privacy_parameters,
                ct.to_vec(),
                false,
            );
            let scoped: ScopedPdu = rasn::ber::decode(&plain).unwrap();
            assert!(matches!(scoped.data, Pdus::GetRequest(_)));
            assert_eq!(usm.user_name.to_vec(), b"jobstack");
            assert_eq!(usm.authentication_parameters.len(), auth.mac_len());
        }
    }

    #[test]
    fn reports_name_the_wrong_setting() {
        let engine = hex("80001f8880aabbccdd");
        let mut session = UsmSession::new(credentials(AuthProtocol::Sha1), 1);
        session.learn_engine(&report(1, &engine, 4), 1);
        for (stat, needle) in [
            (3, "does not know the user \"jobstack\""),
            (5, "wrong authentication password"),
            (6, "wrong privacy password"),
        ] {
            match session.answer(&report(2, &engine, stat), 2) {
                Answer::Report(s, text) => {
                    assert_eq!(s, stat);
                    assert!(text.contains(needle), "{text}");
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(session.answer(&report(3, &engine, 5), 2), Answer::Stray));
        assert!(matches!(session.answer(b"junk", 2), Answer::Stray));
    }

    #[test]
    fn credentials_never_print_passwords() {
        let text = format!("{:?}", credentials(AuthProtocol::Sha1));
        assert!(!text.contains("auth-pass-1") && !text.contains("priv-pass-2"), "{text}");
    }
}
