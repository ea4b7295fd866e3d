//! The Redis contract as data, for the tools outside this binary (the load tests' checks,
//! written in Python): `seckill keys` prints it, so they never spell a key or a field.

use serde_json::{json, Value};

use super::stream::{dead_letter, intent, WRITER_GROUP};
use super::KeySpace;
use crate::domain::ActivityId;

/// The keys of one activity (the idempotency record's as a template with `{user}` and
/// `{key}`), the writer's group, and the fields of a stream entry and of a
/// dead letter.
pub fn describe(keys: &KeySpace, activity: ActivityId) -> Value {
    let k = keys.activity(activity);
    json!({
        "prefix": keys.prefix(),
        "activity": {
            "meta": k.meta,
            "stock": k.stock,
            "buyers": k.buyers,
            "stream": k.stream,
            "dead": k.dead,
            "returned": k.returned,
            "replicated": k.replicated,
            "idempotency": k.idempotency_of("{user}", "{key}"),
        },
        "writer_group": WRITER_GROUP,
        "intent_fields": {
            "order_id": intent::ORDER_ID,
            "user_id": intent::USER_ID,
            "quantity": intent::QUANTITY,
            "idempotency_key": intent::IDEMPOTENCY_KEY,
            "created_ms": intent::CREATED_MS,
        },
        "dead_letter_fields": {
            "entry": dead_letter::ENTRY,
            "reason": dead_letter::REASON,
            "original_prefix": dead_letter::ORIGINAL_PREFIX,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_description_is_the_key_space() {
        let keys = KeySpace::new("p");
        let d = describe(&keys, ActivityId::new(7));
        let k = keys.activity(ActivityId::new(7));
        assert_eq!(d["activity"]["stream"], k.stream);
        assert_eq!(d["activity"]["stock"], "p:{a:7}:stock");
        assert_eq!(d["writer_group"], WRITER_GROUP);
        assert_eq!(d["intent_fields"]["user_id"], intent::USER_ID);
    }
}
