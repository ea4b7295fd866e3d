//! The activity stream's contract, in one place: the field of an order intent (appended by
//! `lua/purchase.lua`, read by the writer and by recovery), the writer's consumer group, and
//! the fields of a dead letter.
//!
//! The purchase script does not spell the field names: [`script_source`] puts a prelude
//! defining them (from the constants below) after the script's `#!lua` line, so the script,
//! the writer, recovery, the tests and the load-test checks (through `seckill keys`) all
//! read the same names. A renamed field cannot leave the writer reading entries the gate no
//! longer writes.

/// Name of the writer's consumer group on every activity stream (created by the seed).
pub const WRITER_GROUP: &str = "writers";

/// An order intent: one stream entry per accepted order, of one field.
///
/// One field, not one per value: every field costs Redis an element to append, to walk past
/// when it deletes the entry and to send when the writer reads it, and costs the writer a
/// reply value to parse — a measurable part of what a purchase costs (issue 11).
pub mod intent {
    /// The entry's one field: `order_id:quantity:created_ms:user_id:idempotency_key`
    /// ([`encode`]). The first three are the buyer's record as the purchase script keeps it;
    /// the idempotency key comes last because it may itself contain `:`.
    pub const FIELD: &str = "i";

    /// Every field, with the name of the Lua local that holds it in the purchase script.
    pub const LUA_NAMES: [(&str, &str); 1] = [("F_INTENT", FIELD)];

    /// The value of [`FIELD`], as `lua/purchase.lua` writes it.
    pub fn encode(
        order_id: u64,
        quantity: i32,
        created_ms: i64,
        user_id: u64,
        idempotency_key: &str,
    ) -> String {
        format!("{order_id}:{quantity}:{created_ms}:{user_id}:{idempotency_key}")
    }

    /// The five fields of an intent as versions before the one-field format wrote it. Still
    /// read (by the writer, recovery and dead letters), so that entries left in a stream
    /// across an upgrade are stored like the others.
    pub mod legacy {
        /// The order id (a snowflake chosen before the script ran).
        pub const ORDER_ID: &str = "o";
        /// The buyer's user id.
        pub const USER_ID: &str = "u";
        /// Units bought.
        pub const QUANTITY: &str = "q";
        /// The purchase's idempotency key.
        pub const IDEMPOTENCY_KEY: &str = "k";
        /// Redis' clock at acceptance, ms since the Unix epoch.
        pub const CREATED_MS: &str = "t";
    }
}

/// The fields of a dead letter: an entry the writer could never store, moved to the
/// activity's dead-letter stream with why, and with every original field kept as
/// `orig_<field>` so recovery can still count and restore the order.
pub mod dead_letter {
    /// The id the entry had in the activity stream.
    pub const ENTRY: &str = "entry";
    /// Why it could not be stored.
    pub const REASON: &str = "reason";
    /// Prefix of a kept original field.
    pub const ORIGINAL_PREFIX: &str = "orig_";

    /// The dead letter's name for the original field `field`.
    pub fn original(field: &str) -> String {
        format!("{ORIGINAL_PREFIX}{field}")
    }
}

/// The writer's ack (`lua/ack.lua`): acks the entries of committed orders and trims from
/// the stream every entry the writers' group is done with — so the stream holds the orders
/// not yet in MySQL, plus, while an older batch is still committing, the newer batches
/// already acked (see the script).
pub struct StreamAck(redis::Script);

impl Default for StreamAck {
    fn default() -> Self {
        Self(super::script("ack"))
    }
}

impl StreamAck {
    /// Acks `ids` (stored, dead-lettered or dropped) on `stream`, then trims it; with no ids,
    /// only trims (after entries left the stream some other way: a dead letter's `XDEL`).
    /// Returns how many were acked.
    pub async fn run<C: redis::aio::ConnectionLike>(
        &self,
        conn: &mut C,
        stream: &str,
        ids: &[&str],
    ) -> redis::RedisResult<u64> {
        let mut call = self.0.key(stream);
        call.arg(WRITER_GROUP);
        for id in ids {
            call.arg(*id);
        }
        call.invoke_async(conn).await
    }
}

/// A script's source with the intent's field name defined right after its `#!lua` line
/// (Redis reads the shebang only on the first line).
pub(super) fn script_source(script: &str) -> String {
    let (shebang, body) = script.split_once('\n').unwrap_or((script, ""));
    let names: Vec<&str> = intent::LUA_NAMES.iter().map(|(lua, _)| *lua).collect();
    let values: Vec<String> = intent::LUA_NAMES
        .iter()
        .map(|(_, field)| format!("'{field}'"))
        .collect();
    format!(
        "{shebang}\nlocal {} = {} -- stream fields, from src/gate/stream.rs\n{body}",
        names.join(", "),
        values.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prelude_follows_the_shebang_and_defines_every_field() {
        let src = script_source("#!lua\nreturn 1\n");
        let mut lines = src.lines();
        assert_eq!(lines.next(), Some("#!lua"));
        let prelude = lines.next().unwrap_or_default();
        for (lua, field) in intent::LUA_NAMES {
            assert!(prelude.contains(lua), "{prelude}");
            assert!(prelude.contains(&format!("'{field}'")), "{prelude}");
        }
        assert_eq!(lines.next(), Some("return 1"));
    }

    #[test]
    fn the_purchase_script_names_every_field_and_spells_none() {
        let script = include_str!("../../lua/purchase.lua");
        let start = script
            .find("'XADD'")
            .expect("the purchase script appends to the stream");
        let xadd = &script[start..start + script[start..].find(')').unwrap_or(0)];
        for (lua, field) in intent::LUA_NAMES {
            assert!(xadd.contains(lua), "{lua} missing from {xadd}");
            assert!(
                !xadd.contains(&format!("'{field}'")),
                "{xadd} spells {field:?}"
            );
        }
    }
}
