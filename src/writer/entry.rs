//! Stream entries as Redis sends them, read straight from the reply.
//!
//! Why not redis-rs' `StreamReadReply`: it clones the whole reply (to try two layouts) and
//! builds a `HashMap` per entry, which made converting a read cost the writer more than
//! storing it. Here each entry keeps its fields in the order Redis sent them, values moved
//! out of the reply, nothing copied.

use redis::{FromRedisValue, ParsingError, Value};

/// One stream entry: its id and its fields, as sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub id: String,
    pub fields: Vec<(String, Value)>,
}

impl Entry {
    /// The value of the field `name`, if the entry has it.
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }
}

/// The entries of one or more streams, as `XREADGROUP` answers (nothing when it timed out).
#[derive(Debug, Default)]
pub struct StreamsRead(pub Vec<(String, Vec<Entry>)>);

/// The entries an `XCLAIM` claimed. Redis before 7.0 answers an entry deleted while pending
/// as nil among them: skipped.
#[derive(Debug, Default)]
pub struct Claimed(pub Vec<Entry>);

/// What `XAUTOCLAIM` claimed (the cursor and the ids of deleted entries are not used).
#[derive(Debug, Default)]
pub struct AutoClaimed(pub Vec<Entry>);

fn malformed(what: &str, v: &Value) -> ParsingError {
    format!("malformed {what}: {v:?}").into()
}

/// The two items of a two-item array (checked by the caller's pattern).
fn two(items: Vec<Value>) -> (Value, Value) {
    let mut items = items.into_iter();
    (
        items.next().unwrap_or(Value::Nil),
        items.next().unwrap_or(Value::Nil),
    )
}

fn text(v: Value) -> Result<String, ParsingError> {
    match v {
        Value::BulkString(b) => String::from_utf8(b).map_err(Into::into),
        Value::SimpleString(s) => Ok(s),
        other => Err(malformed("name", &other)),
    }
}

/// A flat array (RESP2) or a map (RESP3) of field/value pairs, in order.
fn pairs(v: Value) -> Result<Vec<(String, Value)>, ParsingError> {
    match v {
        // An entry deleted while pending has no fields.
        Value::Nil => Ok(Vec::new()),
        Value::Array(items) if items.len() % 2 == 0 => {
            let mut out = Vec::with_capacity(items.len() / 2);
            let mut items = items.into_iter();
            while let (Some(k), Some(v)) = (items.next(), items.next()) {
                out.push((text(k)?, v));
            }
            Ok(out)
        }
        Value::Map(items) => items.into_iter().map(|(k, v)| Ok((text(k)?, v))).collect(),
        other => Err(malformed("fields", &other)),
    }
}

impl FromRedisValue for Entry {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        match v {
            Value::Array(items) if items.len() == 2 => {
                let (id, fields) = two(items);
                Ok(Self {
                    id: text(id)?,
                    fields: pairs(fields)?,
                })
            }
            other => Err(malformed("stream entry", &other)),
        }
    }
}

impl FromRedisValue for StreamsRead {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        let streams = match v {
            Value::Nil => return Ok(Self::default()),
            // RESP2: [[key, [entry…]]…]
            Value::Array(streams) => streams
                .into_iter()
                .map(|s| match s {
                    Value::Array(kv) if kv.len() == 2 => Ok(two(kv)),
                    other => Err(malformed("stream of a read", &other)),
                })
                .collect::<Result<Vec<_>, _>>()?,
            // RESP3: {key: [entry…]…}
            Value::Map(streams) => streams,
            other => return Err(malformed("read", &other)),
        };
        streams
            .into_iter()
            .map(|(k, e)| Ok((text(k)?, Vec::<Entry>::from_redis_value(e)?)))
            .collect::<Result<_, ParsingError>>()
            .map(Self)
    }
}

impl FromRedisValue for Claimed {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        let entries = Vec::<Option<Entry>>::from_redis_value(v)?;
        Ok(Self(entries.into_iter().flatten().collect()))
    }
}

impl FromRedisValue for AutoClaimed {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        match v {
            // [cursor, [entry…]] (Redis 6.2) or [cursor, [entry…], [deleted id…]] (7.0+)
            Value::Array(items) if (2..=3).contains(&items.len()) => {
                let entries = items.into_iter().nth(1).unwrap_or(Value::Nil);
                Ok(Self(Claimed::from_redis_value(entries)?.0))
            }
            other => Err(malformed("XAUTOCLAIM reply", &other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn entry(id: &str, fields: &[(&str, &str)]) -> Value {
        Value::Array(vec![
            bulk(id),
            Value::Array(
                fields
                    .iter()
                    .flat_map(|(k, v)| [bulk(k), bulk(v)])
                    .collect(),
            ),
        ])
    }

    #[test]
    fn a_read_keeps_every_stream_entry_and_field_in_order() {
        let reply = Value::Array(vec![
            Value::Array(vec![
                bulk("s1"),
                Value::Array(vec![
                    entry("1-0", &[("i", "a"), ("x", "b")]),
                    entry("2-0", &[("i", "c")]),
                ]),
            ]),
            Value::Array(vec![bulk("s2"), Value::Array(vec![entry("3-0", &[])])]),
        ]);
        let StreamsRead(streams) = StreamsRead::from_redis_value(reply).unwrap();
        assert_eq!(streams.len(), 2);
        assert_eq!(streams[0].0, "s1");
        let ids: Vec<&str> = streams[0].1.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["1-0", "2-0"]);
        assert_eq!(streams[0].1[0].field("x"), Some(&bulk("b")));
        assert_eq!(streams[0].1[0].field("i"), Some(&bulk("a")));
        assert_eq!(streams[0].1[1].field("x"), None);
        assert_eq!(streams[1].1[0].fields, vec![]);
    }

    #[test]
    fn a_read_that_timed_out_is_empty_and_a_stranger_reply_an_error() {
        assert!(StreamsRead::from_redis_value(Value::Nil)
            .unwrap()
            .0
            .is_empty());
        assert!(StreamsRead::from_redis_value(Value::Int(3)).is_err());
        assert!(Entry::from_redis_value(Value::Array(vec![bulk("1-0")])).is_err());
        // An odd number of field items cannot be pairs.
        let odd = Value::Array(vec![bulk("1-0"), Value::Array(vec![bulk("i")])]);
        assert!(Entry::from_redis_value(odd).is_err());
    }

    #[test]
    fn resp3_maps_and_deleted_entries_are_read_too() {
        let reply = Value::Map(vec![(
            bulk("s"),
            Value::Array(vec![
                Value::Array(vec![bulk("1-0"), Value::Map(vec![(bulk("i"), bulk("v"))])]),
                Value::Array(vec![bulk("2-0"), Value::Nil]),
            ]),
        )]);
        let StreamsRead(streams) = StreamsRead::from_redis_value(reply).unwrap();
        assert_eq!(streams[0].1[0].field("i"), Some(&bulk("v")));
        assert!(streams[0].1[1].fields.is_empty());
    }

    #[test]
    fn autoclaim_replies_of_both_versions() {
        let entries = Value::Array(vec![entry("5-0", &[("i", "v")]), Value::Nil]);
        for reply in [
            Value::Array(vec![bulk("0-0"), entries.clone()]),
            Value::Array(vec![bulk("0-0"), entries.clone(), Value::Array(vec![])]),
        ] {
            let AutoClaimed(claimed) = AutoClaimed::from_redis_value(reply).unwrap();
            assert_eq!(claimed.len(), 1);
            assert_eq!(claimed[0].id, "5-0");
        }
    }
}
