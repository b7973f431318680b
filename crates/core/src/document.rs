//! JSON request bodies, read with serde_json: a key that appears twice in one object is refused
//! by its path (`text.content`, `keywords[2].words`), since two readers of such a document (our
//! validation, WeChat's parser) could see two different values; typed documents name the path
//! of their first bad field (serde_path_to_error) with a reason in the API's words.

use std::collections::HashSet;
use std::fmt;

use serde::de::{DeserializeOwned, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::error::Error;

/// Why a body is refused before its fields are read.
fn invalid(field: impl Into<String>, reason: &'static str) -> Error {
    Error::InvalidRequest { field: field.into(), reason }
}

/// Checks that `body` is JSON with no key twice in one object, in one pass (a set of keys per
/// object). Errors name the field: `body` when it is not JSON, the key's path when it repeats.
pub fn check_keys(body: &[u8]) -> Result<(), Error> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let mut path = String::new();
    let mut duplicate = None;
    let walked = Walk { path: &mut path, duplicate: &mut duplicate }.deserialize(&mut de).and_then(|()| de.end());
    match (walked, duplicate) {
        (_, Some(path)) => Err(invalid(path, "appears twice in the same object")),
        (Err(_), None) => Err(invalid("body", "is not valid JSON")),
        (Ok(()), None) => Ok(()),
    }
}

/// JSON text as a value: every document the worker reads is parsed here, once.
pub fn parse(bytes: &[u8]) -> Option<Value> {
    serde_json::from_slice(bytes).ok()
}

/// A request body, a JSON object, read as `T` after [`check_keys`], with the body as a value:
/// `body` names a body that is not JSON or not an object; a field's path and [`reason`] name
/// the first bad field.
pub fn read<T: DeserializeOwned>(body: &[u8]) -> Result<(T, Value), Error> {
    check_keys(body)?;
    let value = parse(body).ok_or_else(|| invalid("body", "is not valid JSON"))?;
    if !value.is_object() {
        return Err(invalid("body", "must be a JSON object"));
    }
    let typed = serde_path_to_error::deserialize(&value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        let (field, reason) = reason(&path, &message);
        invalid(field, reason)
    })?;
    Ok((typed, value))
}

/// A request body, a JSON object, after [`check_keys`] (its fields are read by the caller).
pub fn object(body: &[u8]) -> Result<Map<String, Value>, Error> {
    check_keys(body)?;
    match parse(body) {
        Some(Value::Object(object)) => Ok(object),
        Some(_) => Err(invalid("body", "must be a JSON object")),
        None => Err(invalid("body", "is not valid JSON")),
    }
}

/// serde's message for a bad field as the API says it, with the field's path: the types' own
/// checks write the API's words (`must be exact or contains`) and pass through; serde's generic
/// messages (a wrong JSON type, an unknown or missing field) are translated.
pub fn reason(path: &str, message: &str) -> (String, &'static str) {
    let join = |name: &str| if path.is_empty() || path == "." { name.to_string() } else { format!("{path}.{name}") };
    let quoted = |m: &str| m.split('`').nth(1).map(str::to_string).unwrap_or_default();
    let here = if path == "." { String::new() } else { path.to_string() };
    // A document type's own reason, or the reason a leaf gave as what it expected.
    let expected = message.rsplit("expected ").next().unwrap_or_default();
    if let Some(reason) = API_REASONS.iter().find(|r| message.starts_with(**r) || expected == **r) {
        return (here, reason);
    }
    if message.starts_with("unknown field") {
        // The path already ends with the unknown key.
        return (here, "is not a known field");
    }
    if message.starts_with("missing field") {
        return (join(&quoted(message)), "is required");
    }
    let reason = if expected.starts_with("struct") || expected.starts_with("a map") {
        "must be an object"
    } else if expected.starts_with("a sequence") {
        "must be an array"
    } else if expected.starts_with("a string") {
        "must be a string"
    } else if expected.starts_with("a boolean") {
        "must be true or false"
    } else {
        "is not valid"
    };
    (here, reason)
}

/// The reasons the documents' own types give (see `desk::rules`), passed through as they are.
static API_REASONS: &[&str] = &[
    "must be a string",
    "must not be empty",
    "is longer than 2048 bytes",
    "is longer than 256 bytes",
    "must be a UTC offset like +08:00",
    "must be exact or contains",
    "must be all or on_request",
    "must be transfer, reply or transfer_and_notify",
    "must be waiting, queue or credentials",
    "must be wecom or json",
    "must be true or false",
    "must be an integer from 60 to 604800",
    "must be an integer from 1 to 2592000",
    "must be an integer from 60 to 2592000",
    "must be an integer from 1 to 3650",
    "must be an integer from 60 to 86400",
    "must be HH:MM-HH:MM (24:00 only as an end)",
    "must end after it starts",
    "must be a date YYYY-MM-DD",
    "is not a weekday (mon to sun)",
    "lists more than 100 words",
    "must list at least one word",
    "holds more than 200 rules",
    "holds more than 48 ranges",
    "must be an object",
    "must be an array",
];

/// Walks a value, recording the path of the first key that repeats in its object.
struct Walk<'p> {
    path: &'p mut String,
    duplicate: &'p mut Option<String>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let len = self.path.len();
        let mut i = 0usize;
        loop {
            self.path.truncate(len);
            self.path.push('[');
            self.path.push_str(&i.to_string());
            self.path.push(']');
            let item = Walk { path: &mut *self.path, duplicate: &mut *self.duplicate };
            if seq.next_element_seed(item)?.is_none() {
                break;
            }
            if self.duplicate.is_some() {
                return Err(serde::de::Error::custom("duplicate"));
            }
            i += 1;
        }
        self.path.truncate(len);
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let len = self.path.len();
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            self.path.truncate(len);
            if len > 0 {
                self.path.push('.');
            }
            self.path.push_str(&key);
            if !seen.insert(key) {
                *self.duplicate = Some(self.path.clone());
                return Err(serde::de::Error::custom("duplicate"));
            }
            map.next_value_seed(Walk { path: &mut *self.path, duplicate: &mut *self.duplicate })?;
            if self.duplicate.is_some() {
                return Err(serde::de::Error::custom("duplicate"));
            }
        }
        self.path.truncate(len);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(body: &str) -> (String, &'static str) {
        match object(body.as_bytes()).unwrap_err() {
            Error::InvalidRequest { field, reason } => (field, reason),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_key_twice_in_one_object_is_named_by_its_path() {
        for (body, path) in [
            (r#"{"a":1,"a":2}"#, "a"),
            (r#"{"text":{"content":"x","content":"y"}}"#, "text.content"),
            (r#"{"keywords":[{"words":[]},{"words":[],"words":[]}]}"#, "keywords[1].words"),
            (r#"{"a":[[{"b":1,"b":1}]]}"#, "a[0][0].b"),
            (r#"{"a":{"b":1},"c":{"b":1},"a":0}"#, "a"),
        ] {
            assert_eq!(field_of(body), (path.to_string(), "appears twice in the same object"), "{body}");
        }
        assert!(
            check_keys(br#"{"a":{"b":1},"c":{"b":1},"d":[{"b":1},{"b":1}]}"#).is_ok(),
            "the same key in two objects"
        );
    }

    #[test]
    fn a_body_that_is_not_json_or_not_an_object_is_named_body() {
        for (body, reason) in [
            ("", "is not valid JSON"),
            ("{\"a\":", "is not valid JSON"),
            ("{} {}", "is not valid JSON"),
            ("{\"a\":1,}", "is not valid JSON"),
            ("{'a':1}", "is not valid JSON"),
            ("{\"a\":01}", "is not valid JSON"),
            ("{\"a\":1.}", "is not valid JSON"),
            ("{\"a\":\"\u{1}\"}", "is not valid JSON"),
            ("{\"a\":\"\\x\"}", "is not valid JSON"),
            ("{\"a\":tru}", "is not valid JSON"),
            ("[1]", "must be a JSON object"),
            ("\"text\"", "must be a JSON object"),
        ] {
            assert_eq!(field_of(body), ("body".to_string(), reason), "{body}");
        }
        assert_eq!(check_keys(b"\xff"), Err(invalid("body", "is not valid JSON")));
    }

    #[test]
    fn many_keys_are_checked_in_linear_time() {
        // ~9,000 keys in 64 KiB: a quadratic check took 80 ms; a set of keys takes well under 1.
        let body = format!("{{{}}}", (0..9_000).map(|i| format!("\"k{i}\":1")).collect::<Vec<_>>().join(","));
        assert!(body.len() < 100 * 1024);
        assert!(check_keys(body.as_bytes()).is_ok());
        let twice = format!("{},\"k8999\":2}}", body.trim_end_matches('}'));
        assert_eq!(check_keys(twice.as_bytes()), Err(invalid("k8999", "appears twice in the same object")));
    }
}
