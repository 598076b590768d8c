//! An SNMP manager for one agent: requests with a timeout and retries, answers
//! matched by request-id (and community, or USM digest), GET and a table walk
//! with GETBULK (or GETNEXT). v2c with a community, or v3 authPriv ([`crate::usm`]).
//!
//! A v2c agent silently drops a request whose community it does not know, so a
//! wrong community looks exactly like a dead device: the client gives up after
//! `retries + 1` attempts of `timeout` each and says so, naming both causes.
//! A v3 agent answers wrong credentials with a Report, which ends the request
//! at once with what the Report means.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::message::{RequestKind, Response, decode_response, encode_request, error_status_name};
use crate::transport::{Transport, TransportError};
use crate::usm::{Answer, UsmSession};
use crate::value::Value;

/// How requests are secured.
pub enum Security {
    /// SNMP v2c with this community.
    Community(Vec<u8>),
    /// SNMP v3, USM authPriv.
    Usm(UsmSession),
}

/// Why silence is likely, per version: a v2c agent drops a wrong community
/// silently; a v3 agent answers discovery whatever the credentials.
const V2C_SILENCE: &str = "the community is probably wrong (an SNMP v2c agent silently drops requests with a community it does not know), or the device is down, unreachable or not an SNMP agent";
const V3_SILENCE: &str = "the device is down, unreachable, or not an SNMP v3 agent on this port";
/// After a successful discovery the agent is there: what it drops is what it
/// could not decrypt.
const V3_SILENCE_DISCOVERED: &str = "the privacy password is probably wrong (the agent answered discovery, but drops requests it cannot decrypt), or the agent stopped answering";

/// Most table rows one walk collects over all columns; a guard against an
/// agent that never ends a table.
pub const MAX_WALK_BINDINGS: usize = 200_000;

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnmpError {
    /// No answer after every attempt.
    NoAnswer {
        /// The agent.
        peer: String,
        /// Attempts made.
        attempts: u32,
        /// Wait for each.
        timeout: Duration,
        /// The likely causes.
        hint: &'static str,
    },
    /// A v3 agent refused the request's security (its Report, explained).
    Security {
        /// The agent.
        peer: String,
        /// What is wrong.
        message: String,
    },
    /// The agent answered with an error-status.
    Agent {
        /// The agent.
        peer: String,
        /// RFC 3416 error-status.
        status: u32,
        /// 1-based index of the binding concerned.
        index: u32,
    },
    /// The agent's answer does not make sense (e.g. a walk going backwards).
    Protocol(String),
    /// The datagram could not be exchanged.
    Transport(TransportError),
}

impl std::fmt::Display for SnmpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnmpError::NoAnswer { peer, attempts, timeout, hint } => write!(
                f,
                "no answer from {peer} after {attempts} attempts of {} ms each: {hint}",
                timeout.as_millis()
            ),
            SnmpError::Security { peer, message } => {
                write!(f, "{peer} refused the request: {message}")
            }
            SnmpError::Agent { peer, status, index } => write!(
                f,
                "{peer} answered {} (error-status {status}, binding {index})",
                error_status_name(*status)
            ),
            SnmpError::Protocol(e) => write!(f, "{e}"),
            SnmpError::Transport(e) => write!(f, "{e}"),
        }
    }
}

impl From<TransportError> for SnmpError {
    fn from(e: TransportError) -> Self {
        SnmpError::Transport(e)
    }
}

/// A manager talking to one agent.
pub struct Client<T: Transport> {
    transport: T,
    peer: String,
    security: Security,
    timeout: Duration,
    retries: u32,
    next_id: i32,
    /// Datagrams dropped because they answered nothing we asked (late answers
    /// to an earlier request, another community, garbage).
    pub ignored: u32,
}

impl<T: Transport> Client<T> {
    /// A client for `peer` (a name for messages) over `transport`; request ids
    /// start at `first_id` (random in the plugin, so two managers do not collide).
    pub fn new(
        transport: T, peer: &str, security: Security, timeout: Duration, retries: u32,
        first_id: i32,
    ) -> Self {
        Client {
            transport,
            peer: peer.to_string(),
            security,
            timeout,
            retries,
            next_id: first_id & 0x7fff_ffff,
            ignored: 0,
        }
    }

    fn next_id(&mut self) -> i32 {
        let id = self.next_id;
        self.next_id = (self.next_id % 0x7fff_ffff) + 1;
        id
    }

    fn silence(&self, attempts: u32) -> SnmpError {
        SnmpError::NoAnswer {
            peer: self.peer.clone(),
            attempts,
            timeout: self.timeout,
            hint: match self.security {
                Security::Community(_) => V2C_SILENCE,
                Security::Usm(ref s) if s.discovered() => V3_SILENCE_DISCOVERED,
                Security::Usm(_) => V3_SILENCE,
            },
        }
    }

    /// Wait out one attempt's timeout for a datagram `accept` takes,
    /// skipping the others.
    fn wait_for<R>(
        &mut self, mut accept: impl FnMut(&mut Self, &[u8]) -> Option<R>,
    ) -> Result<Option<R>, SnmpError> {
        let started = std::time::Instant::now();
        let mut left = self.timeout;
        while let Some(bytes) = self.transport.recv(left)? {
            if let Some(r) = accept(self, &bytes) {
                return Ok(Some(r));
            }
            self.ignored += 1;
            left = self.timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                break;
            }
        }
        Ok(None)
    }

    /// v3: learn the agent's engine (ID, boots, time) before the first request.
    fn discover(&mut self) -> Result<(), SnmpError> {
        let id = self.next_id();
        let attempts = self.retries + 1;
        for _ in 0..attempts {
            let Security::Usm(session) = &self.security else {
                return Ok(());
            };
            let datagram = session.discovery_request(id);
            self.transport.send(&datagram)?;
            let learnt = self.wait_for(|c, bytes| match &mut c.security {
                Security::Usm(s) => s.learn_engine(bytes, id).then_some(()),
                Security::Community(_) => None,
            })?;
            if learnt.is_some() {
                return Ok(());
            }
        }
        Err(self.silence(attempts))
    }

    /// Send one request and wait for its Response, retrying on silence. The
    /// same request-id is kept across retries, so a late answer to an earlier
    /// attempt is still the answer.
    pub fn request(&mut self, kind: RequestKind, oids: &[Vec<u32>]) -> Result<Response, SnmpError> {
        if let Security::Usm(s) = &self.security
            && !s.discovered()
        {
            self.discover()?;
        }
        let id = self.next_id();
        let attempts = self.retries + 1;
        let mut attempt = 0;
        let mut resynced = false;
        while attempt < attempts {
            attempt += 1;
            // Encoded for each attempt: a v3 message carries the agent's time.
            let datagram = match &mut self.security {
                Security::Community(c) => encode_request(kind, c, id, oids),
                Security::Usm(s) => s.request(kind, id, oids),
            }
            .map_err(SnmpError::Protocol)?;
            self.transport.send(&datagram)?;
            let answer = self.wait_for(|c, bytes| match &mut c.security {
                Security::Community(community) => match decode_response(bytes) {
                    Ok(r) if r.request_id == id && r.community == *community => Some(Ok(r)),
                    _ => None,
                },
                Security::Usm(s) => match s.answer(bytes, id) {
                    Answer::Response(r) => Some(Ok(r)),
                    Answer::Report(stat, message) => Some(Err((stat, message))),
                    Answer::Stray => None,
                },
            })?;
            match answer {
                Some(Ok(r)) => return Ok(r),
                // The agent's clock moved: the Report carried it; resend once,
                // without counting it as an attempt.
                Some(Err((2, _))) if !resynced => {
                    resynced = true;
                    attempt -= 1;
                }
                Some(Err((_, message))) => {
                    return Err(SnmpError::Security { peer: self.peer.clone(), message });
                }
                None => {}
            }
        }
        Err(self.silence(attempts))
    }

    /// GET: the value of each instance, in order (absent ones as
    /// `NoSuchObject`/`NoSuchInstance`).
    pub fn get(&mut self, oids: &[Vec<u32>]) -> Result<Vec<Value>, SnmpError> {
        let r = self.request(RequestKind::Get, oids)?;
        self.check(&r)?;
        if r.bindings.len() != oids.len() {
            return Err(SnmpError::Protocol(format!(
                "{} answered {} bindings to a GET of {}",
                self.peer,
                r.bindings.len(),
                oids.len()
            )));
        }
        Ok(r.bindings.into_iter().map(|(_, v)| v).collect())
    }

    /// Walk several columns of one table together: for each column, every
    /// instance under it as (index suffix, value), in order. GETBULK with up to
    /// `max_repetitions` rows per request when `bulk`, else GETNEXT.
    pub fn walk_columns(
        &mut self, columns: &[Vec<u32>], bulk: bool, mut max_repetitions: u32,
    ) -> Result<Vec<BTreeMap<Vec<u32>, Value>>, SnmpError> {
        let mut found: Vec<BTreeMap<Vec<u32>, Value>> = vec![BTreeMap::new(); columns.len()];
        let mut cursors: Vec<Option<Vec<u32>>> = columns.iter().cloned().map(Some).collect();
        let mut total = 0usize;
        loop {
            let active: Vec<usize> = (0..columns.len()).filter(|&j| cursors[j].is_some()).collect();
            if active.is_empty() {
                return Ok(found);
            }
            let oids: Vec<Vec<u32>> =
                active.iter().map(|&j| cursors[j].clone().expect("active")).collect();
            let kind =
                if bulk { RequestKind::GetBulk(max_repetitions) } else { RequestKind::GetNext };
            let r = self.request(kind, &oids)?;
            if bulk && r.error_status == 1 && max_repetitions > 1 {
                // tooBig: ask for fewer rows at once.
                max_repetitions /= 2;
                continue;
            }
            self.check(&r)?;
            if r.bindings.is_empty() {
                return Err(SnmpError::Protocol(format!(
                    "{} answered a walk request with no bindings",
                    self.peer
                )));
            }
            // Bindings come row by row: one per active column, repeated.
            let mut ended = vec![false; active.len()];
            for (k, (oid, value)) in r.bindings.into_iter().enumerate() {
                let slot = k % active.len();
                let j = active[slot];
                if ended[slot] {
                    continue;
                }
                let column = &columns[j];
                if value == Value::EndOfMibView
                    || !oid.starts_with(column)
                    || oid.len() == column.len()
                {
                    ended[slot] = true;
                    cursors[j] = None;
                    continue;
                }
                let cursor = cursors[j].as_ref().expect("active column");
                if oid <= *cursor {
                    return Err(SnmpError::Protocol(format!(
                        "{} returned {} after {}: OIDs must increase in a walk",
                        self.peer,
                        crate::oids::dotted(&oid),
                        crate::oids::dotted(cursor)
                    )));
                }
                found[j].insert(oid[column.len()..].to_vec(), value);
                cursors[j] = Some(oid);
                total += 1;
                if total > MAX_WALK_BINDINGS {
                    return Err(SnmpError::Protocol(format!(
                        "{} returned more than {MAX_WALK_BINDINGS} table entries",
                        self.peer
                    )));
                }
            }
        }
    }

    fn check(&self, r: &Response) -> Result<(), SnmpError> {
        if r.error_status == 0 {
            Ok(())
        } else {
            Err(SnmpError::Agent {
                peer: self.peer.clone(),
                status: r.error_status,
                index: r.error_index,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{decode_request, encode_response};
    use rasn_smi::v2::SimpleSyntax;
    use rasn_snmp::v2::VarBindValue;
    use std::collections::VecDeque;

    /// An agent holding a sorted MIB, answering like RFC 3416 says, with
    /// scripted misbehaviour: requests to drop, stray datagrams to send first.
    struct ScriptedAgent {
        mib: BTreeMap<Vec<u32>, i64>,
        community: Vec<u8>,
        drop_next: u32,
        stray_first: bool,
        max_bindings: usize,
        queue: VecDeque<Vec<u8>>,
        requests: Vec<RequestKind>,
    }

    impl ScriptedAgent {
        fn new(mib: &[(&[u32], i64)]) -> Self {
            ScriptedAgent {
                mib: mib.iter().map(|(o, v)| (o.to_vec(), *v)).collect(),
                community: b"public".to_vec(),
                drop_next: 0,
                stray_first: false,
                max_bindings: usize::MAX,
                queue: VecDeque::new(),
                requests: Vec::new(),
            }
        }

        fn value(v: i64) -> VarBindValue {
            VarBindValue::Value(SimpleSyntax::Integer(v.into()).into())
        }

        fn next_after(&self, oid: &[u32]) -> (Vec<u32>, VarBindValue) {
            match self
                .mib
                .range::<[u32], _>((std::ops::Bound::Excluded(oid), std::ops::Bound::Unbounded))
                .next()
            {
                Some((o, v)) => (o.clone(), Self::value(*v)),
                None => (oid.to_vec(), VarBindValue::EndOfMibView),
            }
        }
    }

    impl Transport for ScriptedAgent {
        fn send(&mut self, datagram: &[u8]) -> Result<(), TransportError> {
            let (kind, community, id, names) = decode_request(datagram);
            self.requests.push(kind);
            if community != self.community {
                return Ok(()); // v2c agents drop unknown communities silently
            }
            if self.drop_next > 0 {
                self.drop_next -= 1;
                return Ok(());
            }
            if self.stray_first {
                self.stray_first = false;
                self.queue.push_back(encode_response(&community, id.wrapping_add(1000), 0, vec![]));
                self.queue.push_back(b"garbage".to_vec());
            }
            let mut bindings = Vec::new();
            match kind {
                RequestKind::Get => {
                    for n in names {
                        let v = self
                            .mib
                            .get(&n)
                            .map_or(VarBindValue::NoSuchObject, |v| Self::value(*v));
                        bindings.push((n, v));
                    }
                }
                RequestKind::GetNext => {
                    for n in names {
                        bindings.push(self.next_after(&n));
                    }
                }
                RequestKind::GetBulk(reps) => {
                    let mut cursors = names;
                    for _ in 0..reps {
                        for c in cursors.iter_mut() {
                            let (o, v) = self.next_after(c);
                            *c = o.clone();
                            bindings.push((o, v));
                        }
                    }
                    if bindings.len() > self.max_bindings {
                        self.queue.push_back(encode_response(&community, id, 1, vec![]));
                        return Ok(());
                    }
                }
            }
            self.queue.push_back(encode_response(&community, id, 0, bindings));
            Ok(())
        }

        fn recv(&mut self, _timeout: Duration) -> Result<Option<Vec<u8>>, TransportError> {
            Ok(self.queue.pop_front())
        }
    }

    const T: &[u32] = &[1, 3, 6, 1, 2, 1, 2, 2, 1];

    fn table_agent() -> ScriptedAgent {
        let mut rows: Vec<(Vec<u32>, i64)> = Vec::new();
        for col in [1u32, 2, 3] {
            for idx in [1u32, 2, 10] {
                let mut o = T.to_vec();
                o.extend([col, idx]);
                rows.push((o, i64::from(col * 100 + idx)));
            }
        }
        // Something after the table, which a walk must not take.
        rows.push((vec![1, 3, 6, 1, 2, 1, 4, 1, 0], 5));
        let rows: Vec<(&[u32], i64)> = rows.iter().map(|(o, v)| (o.as_slice(), *v)).collect();
        ScriptedAgent::new(&rows)
    }

    fn col(c: u32) -> Vec<u32> {
        let mut o = T.to_vec();
        o.push(c);
        o
    }

    fn client(agent: ScriptedAgent, retries: u32) -> Client<ScriptedAgent> {
        Client::new(
            agent,
            "agent",
            Security::Community(b"public".to_vec()),
            Duration::from_millis(10),
            retries,
            7,
        )
    }

    fn expected_column(c: u32) -> BTreeMap<Vec<u32>, Value> {
        [1u32, 2, 10].iter().map(|i| (vec![*i], Value::Integer(i64::from(c * 100 + i)))).collect()
    }

    #[test]
    fn walks_columns_with_getbulk_and_getnext_alike() {
        for (bulk, reps) in [(true, 2), (true, 50), (false, 1)] {
            let mut c = client(table_agent(), 0);
            let got = c.walk_columns(&[col(1), col(3)], bulk, reps).unwrap();
            assert_eq!(
                got,
                vec![expected_column(1), expected_column(3)],
                "bulk {bulk} reps {reps}"
            );
            let kinds = &c.transport.requests;
            assert!(kinds.iter().all(|k| matches!(k, RequestKind::GetBulk(_)) == bulk));
        }
    }

    #[test]
    fn a_too_big_answer_halves_the_repetitions() {
        let mut agent = table_agent();
        agent.max_bindings = 4;
        let mut c = client(agent, 0);
        let got = c.walk_columns(&[col(2)], true, 16).unwrap();
        assert_eq!(got, vec![expected_column(2)]);
        assert!(c.transport.requests.contains(&RequestKind::GetBulk(4)));
    }

    #[test]
    fn get_reports_absent_objects() {
        let mut c = client(table_agent(), 0);
        let mut present = T.to_vec();
        present.extend([2, 10]);
        let got = c.get(&[present, vec![1, 3, 6, 1, 2, 1, 1, 1, 0]]).unwrap();
        assert_eq!(got, [Value::Integer(210), Value::NoSuchObject]);
    }

    #[test]
    fn retries_after_silence_and_skips_stray_datagrams() {
        let mut agent = table_agent();
        agent.drop_next = 2;
        agent.stray_first = true;
        let mut c = client(agent, 2);
        let mut oid = T.to_vec();
        oid.extend([1, 1]);
        assert_eq!(c.get(&[oid]).unwrap(), [Value::Integer(101)]);
        assert_eq!(c.transport.requests.len(), 3);
        assert_eq!(c.ignored, 2);
    }

    #[test]
    fn a_wrong_community_ends_after_the_retries_naming_the_cause() {
        let mut c = Client::new(
            table_agent(),
            "127.0.0.1:161",
            Security::Community(b"wrong".to_vec()),
            Duration::from_millis(5),
            2,
            1,
        );
        let err = c.get(&[vec![1, 3, 6, 1, 2, 1, 1, 1, 0]]).unwrap_err();
        assert_eq!(c.transport.requests.len(), 3);
        let text = err.to_string();
        assert!(text.contains("no answer from 127.0.0.1:161 after 3 attempts of 5 ms"), "{text}");
        assert!(text.contains("community is probably wrong"), "{text}");
    }

    #[test]
    fn request_ids_stay_positive_and_change() {
        let mut c = Client::new(
            table_agent(),
            "a",
            Security::Community(b"public".to_vec()),
            Duration::from_millis(5),
            0,
            i32::MAX,
        );
        let mut o = T.to_vec();
        o.extend([1, 1]);
        c.get(std::slice::from_ref(&o)).unwrap();
        c.get(&[o]).unwrap();
        assert_eq!(c.next_id, 2);
    }
}
