//! The Redis contract as data, for the tools outside this binary (the load tests' checks,
//! written in Python): `seckill keys` prints it, so they never spell a key or a field.

use serde_json::{json, Value};

use super::stream::{dead_letter, intent, WRITER_GROUP};
use super::KeySpace;
use crate::domain::ActivityId;

/// The keys of one activity (the idempotency record's as a template with `{user}` and
/// `{key}`), the writer's group, the field of a stream entry and its format, and the
/// fields of a dead letter.
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
        "intent_field": intent::FIELD,
        "intent_format": "order_id:quantity:created_ms:user_id:idempotency_key",
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
        assert_eq!(d["intent_field"], intent::FIELD);
        let format = d["intent_format"].as_str().unwrap_or_default();
        let example = intent::encode(1, 2, 3, 4, "k");
        assert_eq!(format.split(':').count(), example.split(':').count());
    }
}
