//! Calls between services a span store may pair itself (`SpanReader::aggregate_calls`): the
//! client/server pairing the trace graph rests on, grouped by what the analysis asks to read
//! from each side.
//!
//! Why: the graph from traces pairs every SERVER span with its caller's span, which means
//! reading every span of the window; a store that can join spans where a trace lies
//! (ClickHouse, on the trace's shard) answers with one row per group of calls instead. As
//! with [`crate::aggregate`], the analysis keeps the semantics (which tags name a cluster, a
//! version, a status, how nodes are keyed and merged); the store only pairs spans by the
//! structural rule below and evaluates [`SpanDimension`]s and [`SpanFilter`]s on them.
//!
//! The rule, over the spans with a timestamp in `[start_us, end_us]` and a (non-empty) local
//! service; a *client* is a CLIENT or PRODUCER span, a *server* a SERVER or CONSUMER one, an
//! *other* a span without kind (a client and an other with one id: the client):
//! - A server's caller is the client with its own id when it is shared, else the client
//!   with its parent's id ([`CallRole::Answered`]); else the other with its parent's id
//!   ([`CallRole::UnderOther`]; the analysis drops it when both ends are one node); else,
//!   without a parent, nobody ([`CallRole::Root`]); else (a parent not seen) it is no call.
//! - A client that no server took as caller is a call of its own ([`CallRole::Unanswered`]).
//!
//! Each call is counted once per span key (trace id, span id, kind, shared), so a span
//! stored twice counts once.

use crate::aggregate::{SpanDimension, SpanFilter};

/// One pairing of the spans in `[start_us, end_us]`, and what to read from each side.
#[derive(Clone, Debug, PartialEq)]
pub struct CallAggregation {
    pub start_us: u64,
    pub end_us: u64,
    /// Read from the caller's span (a client, or an other); of an unanswered client, from
    /// the client itself.
    pub caller: Vec<SpanDimension>,
    /// Read from the span whose figures the call takes: the server, or of an unanswered
    /// client the client itself.
    pub callee: Vec<SpanDimension>,
    /// Conditions evaluated on that same span.
    pub callee_flags: Vec<SpanFilter>,
}

/// How a call was paired (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CallRole {
    /// A server and the client that called it.
    Answered,
    /// A server under a span without kind (an uninstrumented client library).
    UnderOther,
    /// A server without parent: a call from outside.
    Root,
    /// A client no server answered.
    Unanswered,
}

impl CallRole {
    pub const ALL: [CallRole; 4] = [
        CallRole::Answered,
        CallRole::UnderOther,
        CallRole::Root,
        CallRole::Unanswered,
    ];

    /// A stable number for stores to encode the role with.
    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(c: u8) -> Option<CallRole> {
        CallRole::ALL.get(usize::from(c)).copied()
    }
}

/// One group of calls: equal role, caller values, callee values and flags.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct CallGroup {
    pub role: CallRole,
    /// One per `caller` dimension; all `None` for [`CallRole::Root`].
    pub caller: Vec<Option<String>>,
    pub callee: Vec<Option<String>>,
    pub flags: Vec<bool>,
    /// The callee spans' durations (µs, 0 when absent), one per call, ascending: exact
    /// per-request figures, so nearest-rank percentiles over merged groups stay exact.
    pub durations_us: Vec<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_codes_round_trip_and_unknown_codes_are_none() {
        for r in CallRole::ALL {
            assert_eq!(CallRole::from_code(r.code()), Some(r));
        }
        assert_eq!(CallRole::from_code(CallRole::ALL.len() as u8), None);
        assert_eq!(CallRole::from_code(255), None);
    }
}
