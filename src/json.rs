//! JSON in and out without a tree where a tree is not needed.
//!
//! - [`parse_object`] reads request bodies strictly: a key that appears twice in one object is
//!   refused with its path, because two readers of the same document (our validation, WeChat's
//!   parser) could otherwise see two different values.
//! - [`ObjectWriter`] writes small objects (the log line, `/healthz`) straight into a string.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::error::Error;

/// `body` as a JSON object. Errors name the field: `body` when it is not JSON or not an object,
/// the key's path (`text.content`, `keywords[2].words`) when a key appears twice.
pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>, Error> {
    let duplicate = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = Strict { path: String::new(), duplicate: &duplicate }.deserialize(&mut de).and_then(|v| {
        de.end()?;
        Ok(v)
    });
    match parsed {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(invalid("body".into(), "must be a JSON object")),
        Err(_) => match duplicate.into_inner() {
            Some(path) => Err(invalid(path, "appears twice in the same object")),
            None => Err(invalid("body".into(), "is not valid JSON")),
        },
    }
}

fn invalid(field: String, reason: &'static str) -> Error {
    Error::InvalidRequest { field, reason }
}

/// `parent.key`, or `key` at the top.
fn child(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

struct Strict<'a> {
    path: String,
    duplicate: &'a RefCell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) =
            seq.next_element_seed(Strict { path: format!("{}[{}]", self.path, out.len()), duplicate: self.duplicate })?
        {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = child(&self.path, &key);
            if out.contains_key(&key) {
                *self.duplicate.borrow_mut() = Some(path);
                return Err(de::Error::custom("duplicate key"));
            }
            let value = map.next_value_seed(Strict { path, duplicate: self.duplicate })?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

/// A JSON object written field by field.
pub struct ObjectWriter {
    out: String,
}

impl Default for ObjectWriter {
    fn default() -> Self {
        ObjectWriter::new()
    }
}

impl ObjectWriter {
    pub fn new() -> Self {
        let mut out = String::with_capacity(160);
        out.push('{');
        ObjectWriter { out }
    }

    fn key(&mut self, key: &str) {
        if self.out.len() > 1 {
            self.out.push(',');
        }
        push_string(&mut self.out, key);
        self.out.push(':');
    }

    pub fn str(&mut self, key: &str, value: &str) -> &mut Self {
        self.key(key);
        push_string(&mut self.out, value);
        self
    }

    pub fn num(&mut self, key: &str, value: u64) -> &mut Self {
        self.key(key);
        self.out.push_str(itoa::Buffer::new().format(value));
        self
    }

    pub fn int(&mut self, key: &str, value: i64) -> &mut Self {
        self.key(key);
        self.out.push_str(itoa::Buffer::new().format(value));
        self
    }

    pub fn bool(&mut self, key: &str, value: bool) -> &mut Self {
        self.key(key);
        self.out.push_str(if value { "true" } else { "false" });
        self
    }

    /// An array of strings.
    pub fn strs<'a>(&mut self, key: &str, values: impl IntoIterator<Item = &'a str>) -> &mut Self {
        self.key(key);
        self.out.push('[');
        for (i, v) in values.into_iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            push_string(&mut self.out, v);
        }
        self.out.push(']');
        self
    }

    /// A value that is already JSON (a nested object from another writer).
    pub fn raw(&mut self, key: &str, json: &str) -> &mut Self {
        self.key(key);
        self.out.push_str(json);
        self
    }

    pub fn finish(mut self) -> String {
        self.out.push('}');
        self.out
    }
}

/// `s` as a JSON string literal.
pub fn push_string(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(s.get(start..i).unwrap_or_default());
        if escape.is_empty() {
            out.push_str("\\u00");
            out.push_str(&hex::encode([b]));
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(s.get(start..).unwrap_or_default());
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(body: &str) -> (String, &'static str) {
        match parse_object(body.as_bytes()).unwrap_err() {
            Error::InvalidRequest { field, reason } => (field, reason),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parse_object_refuses_duplicate_keys_by_path() {
        let cases = [
            (r#"{"msgtype":"image","image":{"media_id":"M"},"msgtype":"text"}"#, "msgtype"),
            (r#"{"text":{"content":"a","content":"b"}}"#, "text.content"),
            (r#"{"keywords":[{"words":[]},{"words":[],"words":[]}]}"#, "keywords[1].words"),
            (r#"{"a":[[{"b":1,"b":2}]]}"#, "a[0][0].b"),
        ];
        for (body, path) in cases {
            assert_eq!(field_of(body), (path.to_string(), "appears twice in the same object"), "{body}");
        }
    }

    #[test]
    fn parse_object_names_the_body_when_it_is_not_an_object() {
        for (body, reason) in [
            ("", "is not valid JSON"),
            ("{\"a\":", "is not valid JSON"),
            ("{} {}", "is not valid JSON"),
            ("[1]", "must be a JSON object"),
            ("\"text\"", "must be a JSON object"),
        ] {
            assert_eq!(field_of(body), ("body".to_string(), reason), "{body}");
        }
        let o = parse_object(r#"{"a":[1,-2,1.5,null,true,{"b":"中"}]}"#.as_bytes()).unwrap();
        assert_eq!(Value::Object(o), serde_json::json!({"a":[1,-2,1.5,null,true,{"b":"中"}]}));
    }

    #[test]
    fn object_writer_escapes_what_json_requires_and_parses_back() {
        let mut w = ObjectWriter::new();
        let nasty = "q\"b\\n\nr\rt\t\u{0}\u{1f}中😀</script>";
        w.str("s", nasty).num("n", u64::MAX).int("i", i64::MIN).bool("b", false).strs("l", ["a", "\""]).raw("o", "{}");
        let json = w.finish();
        let back: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            back,
            serde_json::json!({"s": nasty, "n": u64::MAX, "i": i64::MIN, "b": false, "l": ["a", "\""], "o": {}})
        );
        assert_eq!(ObjectWriter::new().finish(), "{}");
    }
}
