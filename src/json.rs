//! JSON, as much as the worker needs and no more: a strict reader and a small writer.
//!
//! - [`parse`] reads a document into a [`Json`] tree that keeps object members in document order
//!   and numbers as written (the worker never computes with a fraction, so no float parsing or
//!   formatting code is compiled in). It refuses a key that appears twice in one object and
//!   names its path (`text.content`, `keywords[2].words`): two readers of such a document (our
//!   validation, WeChat's parser) could otherwise see two different values.
//! - [`ObjectWriter`] writes small objects (the log line, `/healthz`, bodies sent to WeChat)
//!   straight into a string; [`Json::write`] writes a tree back.

use crate::error::Error;

/// Deepest nesting [`parse`] accepts (WeChat's answers and our documents nest a few levels).
pub const MAX_DEPTH: usize = 64;

/// A JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Json {
    Null,
    Bool(bool),
    /// A number exactly as written (valid JSON number syntax).
    Number(String),
    String(String),
    Array(Vec<Json>),
    Object(Object),
}

/// An object's members in document order; keys are unique.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Object(Vec<(String, Json)>);

impl Object {
    pub fn get(&self, key: &str) -> Option<&Json> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Json)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }
}

impl Json {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// An integer number (no fraction, no exponent) that fits an `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Json::Number(n) => n.parse().ok(),
            _ => None,
        }
    }

    /// A non-negative integer number that fits a `u64`.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Json::Number(n) => n.parse().ok(),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Json]> {
        match self {
            Json::Array(a) => Some(a),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Object> {
        match self {
            Json::Object(o) => Some(o),
            _ => None,
        }
    }

    /// The value as compact JSON.
    pub fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Number(n) => out.push_str(n),
            Json::String(s) => push_string(out, s),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Json::Object(o) => {
                out.push('{');
                for (i, (k, v)) in o.0.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    push_string(out, k);
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }

    pub fn to_json(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }
}

/// Why [`parse`] refused a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Not JSON (or not UTF-8, or nested deeper than [`MAX_DEPTH`]).
    Syntax,
    /// A key appears twice in one object; its path.
    Duplicate(String),
}

/// Reads one JSON document (surrounding whitespace allowed, nothing else).
pub fn parse(bytes: &[u8]) -> Result<Json, ParseError> {
    let text = std::str::from_utf8(bytes).map_err(|_| ParseError::Syntax)?;
    let mut p = Parser { text, pos: 0 };
    let value = p.value(&mut String::new(), 0)?;
    p.skip_ws();
    if p.pos != text.len() {
        return Err(ParseError::Syntax);
    }
    Ok(value)
}

/// A request body as a JSON object. Errors name the field: `body` when it is not JSON or not an
/// object, the key's path when a key appears twice.
pub fn parse_object(body: &[u8]) -> Result<Object, Error> {
    match parse(body) {
        Ok(Json::Object(o)) => Ok(o),
        Ok(_) => Err(invalid("body".into(), "must be a JSON object")),
        Err(ParseError::Syntax) => Err(invalid("body".into(), "is not valid JSON")),
        Err(ParseError::Duplicate(path)) => Err(invalid(path, "appears twice in the same object")),
    }
}

fn invalid(field: String, reason: &'static str) -> Error {
    Error::InvalidRequest { field, reason }
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Result<(), ParseError> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(ParseError::Syntax)
        }
    }

    fn literal(&mut self, word: &str, value: Json) -> Result<Json, ParseError> {
        if self.text.get(self.pos..).is_some_and(|rest| rest.starts_with(word)) {
            self.pos += word.len();
            Ok(value)
        } else {
            Err(ParseError::Syntax)
        }
    }

    /// A value; `path` is its path (restored on return), `depth` its nesting.
    fn value(&mut self, path: &mut String, depth: usize) -> Result<Json, ParseError> {
        if depth > MAX_DEPTH {
            return Err(ParseError::Syntax);
        }
        self.skip_ws();
        match self.peek().ok_or(ParseError::Syntax)? {
            b'{' => self.object(path, depth),
            b'[' => self.array(path, depth),
            b'"' => self.string().map(Json::String),
            b't' => self.literal("true", Json::Bool(true)),
            b'f' => self.literal("false", Json::Bool(false)),
            b'n' => self.literal("null", Json::Null),
            _ => self.number(),
        }
    }

    fn object(&mut self, path: &mut String, depth: usize) -> Result<Json, ParseError> {
        self.eat(b'{')?;
        let mut members: Vec<(String, Json)> = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Json::Object(Object(members)));
        }
        loop {
            self.skip_ws();
            let key = self.string()?;
            let len = path.len();
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(&key);
            if members.iter().any(|(k, _)| *k == key) {
                return Err(ParseError::Duplicate(std::mem::take(path)));
            }
            self.skip_ws();
            self.eat(b':')?;
            let value = self.value(path, depth + 1)?;
            path.truncate(len);
            members.push((key, value));
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Json::Object(Object(members)));
                }
                _ => return Err(ParseError::Syntax),
            }
        }
    }

    fn array(&mut self, path: &mut String, depth: usize) -> Result<Json, ParseError> {
        self.eat(b'[')?;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Json::Array(items));
        }
        loop {
            let len = path.len();
            path.push('[');
            path.push_str(itoa::Buffer::new().format(items.len()));
            path.push(']');
            let item = self.value(path, depth + 1)?;
            path.truncate(len);
            items.push(item);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Json::Array(items));
                }
                _ => return Err(ParseError::Syntax),
            }
        }
    }

    fn number(&mut self) -> Result<Json, ParseError> {
        let start = self.pos;
        let digits = |p: &mut Self| {
            let from = p.pos;
            while p.peek().is_some_and(|b| b.is_ascii_digit()) {
                p.pos += 1;
            }
            p.pos > from
        };
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return Err(ParseError::Syntax),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !digits(self) {
                return Err(ParseError::Syntax);
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !digits(self) {
                return Err(ParseError::Syntax);
            }
        }
        self.text.get(start..self.pos).map(|n| Json::Number(n.to_string())).ok_or(ParseError::Syntax)
    }

    fn string(&mut self) -> Result<String, ParseError> {
        self.eat(b'"')?;
        let mut out = String::new();
        loop {
            // The run up to the next quote, backslash or control character, copied as is.
            let rest = self.text.get(self.pos..).ok_or(ParseError::Syntax)?;
            let run = rest.find(|c: char| c == '"' || c == '\\' || c < ' ').ok_or(ParseError::Syntax)?;
            out.push_str(rest.get(..run).ok_or(ParseError::Syntax)?);
            self.pos += run;
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let escaped = self.peek().ok_or(ParseError::Syntax)?;
                    self.pos += 1;
                    match escaped {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => out.push(self.unicode_escape()?),
                        _ => return Err(ParseError::Syntax),
                    }
                }
                // A raw control character.
                _ => return Err(ParseError::Syntax),
            }
        }
    }

    /// After `\u`: one BMP character, or a surrogate pair written as two escapes.
    fn unicode_escape(&mut self) -> Result<char, ParseError> {
        let first = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&first) {
            if self.text.get(self.pos..self.pos + 2) != Some("\\u") {
                return Err(ParseError::Syntax);
            }
            self.pos += 2;
            let second = self.hex4()?;
            if !(0xDC00..0xE000).contains(&second) {
                return Err(ParseError::Syntax);
            }
            0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
        } else {
            first
        };
        char::from_u32(code).ok_or(ParseError::Syntax)
    }

    fn hex4(&mut self) -> Result<u32, ParseError> {
        let hex = self.text.get(self.pos..self.pos + 4).ok_or(ParseError::Syntax)?;
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ParseError::Syntax);
        }
        self.pos += 4;
        u32::from_str_radix(hex, 16).map_err(|_| ParseError::Syntax)
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

    /// A number, or `null` for `None`.
    pub fn opt_num(&mut self, key: &str, value: Option<u64>) -> &mut Self {
        match value {
            Some(n) => self.num(key, n),
            None => self.raw(key, "null"),
        }
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

    /// A value that is already JSON (a nested object from another writer, a stored document).
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
    // Nearly every string needs no escape: one scan and one copy, not a copy per escape-free run.
    let mut rest = s;
    while let Some(i) = rest.bytes().position(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.push_str(rest.get(..i).unwrap_or_default());
        match rest.as_bytes().get(i).copied().unwrap_or_default() {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            b => {
                out.push_str("\\u00");
                out.push_str(&hex::encode([b]));
            }
        }
        rest = rest.get(i + 1..).unwrap_or_default();
    }
    out.push_str(rest);
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
            (r#"{"a\u0062":1,"ab":2}"#, "ab"),
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
            ("{\"a\":1,}", "is not valid JSON"),
            ("{'a':1}", "is not valid JSON"),
            ("{\"a\":01}", "is not valid JSON"),
            ("{\"a\":1.}", "is not valid JSON"),
            ("{\"a\":\"\u{1}\"}", "is not valid JSON"),
            ("{\"a\":\"\\x\"}", "is not valid JSON"),
            ("{\"a\":\"\\ud800\"}", "is not valid JSON"),
            ("{\"a\":tru}", "is not valid JSON"),
            ("[1]", "must be a JSON object"),
            ("\"text\"", "must be a JSON object"),
        ] {
            assert_eq!(field_of(body), ("body".to_string(), reason), "{body}");
        }
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 2), "]".repeat(MAX_DEPTH + 2));
        assert_eq!(parse(deep.as_bytes()), Err(ParseError::Syntax));
        assert_eq!(parse(b"\xff"), Err(ParseError::Syntax));
    }

    #[test]
    fn parse_reads_what_serde_json_reads_and_writes_it_back() {
        let docs = [
            r#"{"a":[1,-2,1.5,-0.5e-3,1E+2,null,true,false,{"b":"中\"\\/\b\f\n\r\t\u0041\ud83d\ude00"}],"":{}}"#,
            r#"  [ ]  "#,
            r#""x""#,
            r#"12345678901234567890123"#,
        ];
        for doc in docs {
            let ours = parse(doc.as_bytes()).unwrap();
            let theirs: serde_json::Value = serde_json::from_str(doc).unwrap();
            let back: serde_json::Value = serde_json::from_str(&ours.to_json()).unwrap();
            assert_eq!(back, theirs, "{doc}");
        }
        let o = parse(br#"{"z":1,"a":2,"n":-7,"big":18446744073709551615,"f":1.5}"#).unwrap();
        assert_eq!(o.to_json(), r#"{"z":1,"a":2,"n":-7,"big":18446744073709551615,"f":1.5}"#, "order and text kept");
        let o = o.as_object().unwrap();
        assert_eq!(o.get("n").and_then(Json::as_i64), Some(-7));
        assert_eq!(o.get("n").and_then(Json::as_u64), None);
        assert_eq!(o.get("big").and_then(Json::as_u64), Some(u64::MAX));
        assert_eq!(o.get("f").and_then(Json::as_i64), None, "a fraction is not an integer");
    }

    #[test]
    fn object_writer_escapes_what_json_requires_and_parses_back() {
        let mut w = ObjectWriter::new();
        let nasty = "q\"b\\n\nr\rt\t\u{0}\u{1f}中😀</script>";
        w.str("s", nasty).num("n", u64::MAX).int("i", i64::MIN).bool("b", false).strs("l", ["a", "\""]).raw("o", "{}");
        let json = w.finish();
        let back: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            back,
            serde_json::json!({"s": nasty, "n": u64::MAX, "i": i64::MIN, "b": false, "l": ["a", "\""], "o": {}})
        );
        assert_eq!(parse(json.as_bytes()).unwrap().as_object().unwrap().get("s").and_then(Json::as_str), Some(nasty));
        assert_eq!(ObjectWriter::new().finish(), "{}");
    }
}
