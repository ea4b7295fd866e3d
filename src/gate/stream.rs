//! The activity stream's contract, in one place: the fields of an order intent (appended by
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

/// The fields of an order intent: one stream entry per accepted order.
pub mod intent {
    /// The order id (a snowflake chosen before the script ran).
    pub const ORDER_ID: &str = "o";
    /// The buyer's user id.
    pub const USER_ID: &str = "u";
    /// Units bought.
    pub const QUANTITY: &str = "q";
    /// The purchase's idempotency key (kept on the order row, so a rebuild can restore it).
    pub const IDEMPOTENCY_KEY: &str = "k";
    /// Redis' clock at acceptance, ms since the Unix epoch.
    pub const CREATED_MS: &str = "t";

    /// Every field, with the name of the Lua local that holds it in the purchase script.
    pub const LUA_NAMES: [(&str, &str); 5] = [
        ("F_ORDER_ID", ORDER_ID),
        ("F_USER_ID", USER_ID),
        ("F_QUANTITY", QUANTITY),
        ("F_IDEMPOTENCY_KEY", IDEMPOTENCY_KEY),
        ("F_CREATED_MS", CREATED_MS),
    ];
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

/// A script's source with the intent's field names defined right after its `#!lua` line
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
