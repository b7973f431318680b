//! A strict reader for WeChat's flat `<xml>...</xml>` documents, over quick-xml's reader.
//!
//! It keeps the text of every leaf element under its slash-joined path below the root
//! (`Content`, `ScanCodeInfo/ScanType`, `SendPicsInfo/PicList/item/PicMd5Sum`) and refuses
//! anything WeChat never sends: a DTD (so no entity can ever be expanded), unknown entities,
//! nesting deeper than [`MAX_DEPTH`], more than [`MAX_FIELDS`] fields, a root other than
//! `<xml>`, text outside the root, or the same top-level field twice (which would let two
//! readers see two different messages).

use std::borrow::Cow;

use quick_xml::events::Event;
use quick_xml::Reader;

use crate::Error;

/// Deepest element nesting accepted, root included (WeChat's deepest is 5:
/// `xml/SendPicsInfo/PicList/item/PicMd5Sum`).
pub const MAX_DEPTH: usize = 8;
/// Most leaf fields accepted in one document.
pub const MAX_FIELDS: usize = 256;

/// The leaf fields of one document, in document order. Values borrow from the document unless
/// they hold references (`&amp;`) or several pieces.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Fields<'a> {
    entries: Vec<(String, Cow<'a, str>)>,
}

impl Fields<'_> {
    /// The first value at `path` (e.g. `"Content"` or `"ScanCodeInfo/ScanType"`).
    pub fn get(&self, path: &str) -> Option<&str> {
        self.entries.iter().find(|(p, _)| p == path).map(|(_, v)| v.as_ref())
    }

    /// Every value at `path`, in document order (for repeated `item`s).
    pub fn get_all<'s>(&'s self, path: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.entries.iter().filter(move |(p, _)| p == path).map(|(_, v)| v.as_ref())
    }

    /// Number of leaf fields.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the document had no leaf field.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// An element being read.
struct Open<'a> {
    name: String,
    has_children: bool,
    text: Option<Cow<'a, str>>,
    saw_cdata: bool,
    /// Length of `text` right after its last CDATA section.
    cdata_end: usize,
}

impl<'a> Open<'a> {
    fn push(&mut self, piece: Cow<'a, str>) {
        match &mut self.text {
            None => self.text = Some(piece),
            Some(text) => text.to_mut().push_str(&piece),
        }
    }

    fn text_len(&self) -> usize {
        self.text.as_ref().map_or(0, |t| t.len())
    }
}

const NOT_WELL_FORMED: Error = Error::MalformedXml("not well-formed XML");

/// Parses a WeChat XML document into its leaf fields.
pub fn parse_fields(xml: &str) -> Result<Fields<'_>, Error> {
    // (The reader skips a UTF-8 byte order mark.)
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<Open<'_>> = Vec::with_capacity(MAX_DEPTH);
    let mut fields = Fields { entries: Vec::with_capacity(16) };
    let mut root_seen = false;
    loop {
        match reader.read_event().map_err(|_| NOT_WELL_FORMED)? {
            Event::Start(start) => open(&mut stack, &mut root_seen, utf8(start.name().as_ref())?)?,
            Event::Empty(start) => {
                open(&mut stack, &mut root_seen, utf8(start.name().as_ref())?)?;
                close(&mut stack, &mut fields)?;
            }
            Event::End(end) => {
                if stack.last().map(|top| top.name.as_bytes()) != Some(end.name().as_ref()) {
                    return Err(NOT_WELL_FORMED);
                }
                close(&mut stack, &mut fields)?;
            }
            Event::Text(text) => {
                let raw = borrowed(text.clone().into_inner())?;
                match stack.last_mut() {
                    // Whitespace around child elements is layout.
                    Some(top) if top.has_children && is_layout(&raw) => {}
                    Some(top) if !raw.contains('&') => top.push(raw),
                    Some(top) => top.push(
                        text.unescape().map_err(|_| Error::MalformedXml("invalid entity or character reference"))?,
                    ),
                    None if is_layout(&raw) => {}
                    None => return Err(Error::MalformedXml("text outside the root element")),
                }
            }
            Event::CData(cdata) => {
                let raw = borrowed(cdata.into_inner())?;
                let top = stack.last_mut().ok_or(Error::MalformedXml("CDATA outside the root element"))?;
                if !top.saw_cdata && top.text.as_deref().is_some_and(is_layout) {
                    // Whitespace before the first CDATA section is layout, not content.
                    top.text = None;
                }
                top.saw_cdata = true;
                top.push(raw);
                top.cdata_end = top.text_len();
            }
            Event::DocType(_) => return Err(Error::MalformedXml("DOCTYPE is not allowed")),
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if !root_seen {
        return Err(Error::MalformedXml("no root element"));
    }
    if !stack.is_empty() {
        return Err(Error::MalformedXml("unclosed element"));
    }
    Ok(fields)
}

/// A name as text (the document is a `&str`, so this only fails on a reader bug).
fn utf8(bytes: &[u8]) -> Result<&str, Error> {
    std::str::from_utf8(bytes).map_err(|_| NOT_WELL_FORMED)
}

/// A piece of the document as text: the reader cuts a `&str` at ASCII delimiters, so a piece
/// is valid UTF-8, borrowed from the document.
fn borrowed(piece: Cow<'_, [u8]>) -> Result<Cow<'_, str>, Error> {
    match piece {
        Cow::Borrowed(bytes) => utf8(bytes).map(Cow::Borrowed),
        Cow::Owned(bytes) => String::from_utf8(bytes).map(Cow::Owned).map_err(|_| NOT_WELL_FORMED),
    }
}

/// XML whitespace only.
fn is_layout(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

fn open(stack: &mut Vec<Open<'_>>, root_seen: &mut bool, name: &str) -> Result<(), Error> {
    if stack.is_empty() {
        if *root_seen {
            return Err(Error::MalformedXml("more than one root element"));
        }
        if name != "xml" {
            return Err(Error::MalformedXml("root element is not <xml>"));
        }
        *root_seen = true;
    }
    if stack.len() >= MAX_DEPTH {
        return Err(Error::MalformedXml("nesting too deep"));
    }
    if let Some(parent) = stack.last_mut() {
        parent.has_children = true;
        // Text seen before the first child was layout.
        parent.text = None;
    }
    stack.push(Open { name: name.to_string(), has_children: false, text: None, saw_cdata: false, cdata_end: 0 });
    Ok(())
}

fn close<'a>(stack: &mut Vec<Open<'a>>, fields: &mut Fields<'a>) -> Result<(), Error> {
    let done = stack.pop().ok_or(Error::MalformedXml("unbalanced end tag"))?;
    if stack.is_empty() || done.has_children {
        // The root, or an element holding elements: its own text is layout.
        return Ok(());
    }
    let mut path = String::new();
    for parent in stack.iter().skip(1) {
        path.push_str(&parent.name);
        path.push('/');
    }
    path.push_str(&done.name);
    let mut value = done.text.unwrap_or(Cow::Borrowed(""));
    if done.saw_cdata && value.get(done.cdata_end..).is_some_and(|tail| !tail.is_empty() && is_layout(tail)) {
        // `<A><![CDATA[x]]>\n</A>`: whitespace after the last CDATA section is layout.
        value.to_mut().truncate(done.cdata_end);
    }
    if stack.len() == 1 && fields.get(&path).is_some() {
        return Err(Error::MalformedXml("duplicate field"));
    }
    if fields.entries.len() >= MAX_FIELDS {
        return Err(Error::MalformedXml("too many fields"));
    }
    fields.entries.push((path, value));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_fields_reads_cdata_text_and_nested_paths() {
        let f = parse_fields(
            "<?xml version=\"1.0\"?><xml><A><![CDATA[x]]></A><B>1</B><C><D>d</D><E/></C>\
             <L><item><M>1</M></item><item><M>2</M></item></L></xml>",
        )
        .unwrap();
        assert_eq!(f.get("A"), Some("x"));
        assert_eq!(f.get("B"), Some("1"));
        assert_eq!(f.get("C/D"), Some("d"));
        assert_eq!(f.get("C/E"), Some(""));
        assert_eq!(f.get_all("L/item/M").collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(f.len(), 6);
    }

    #[test]
    fn parse_fields_keeps_split_cdata_and_escapes_intact() {
        let f = parse_fields("<xml><A><![CDATA[a]]]]><![CDATA[>b]]></A><B>&lt;&amp;&#x4e2d;</B></xml>").unwrap();
        assert_eq!(f.get("A"), Some("a]]>b"));
        assert_eq!(f.get("B"), Some("<&中"));
    }

    #[test]
    fn parse_fields_keeps_whitespace_inside_cdata_and_drops_layout_around_it() {
        let f = parse_fields("<xml>\n <A>\n  <![CDATA[ hi ]]>\n </A>\n</xml>").unwrap();
        assert_eq!(f.get("A"), Some(" hi "));
        let f = parse_fields("\u{feff}<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xml><A>1</A><!-- c --></xml>\n")
            .unwrap();
        assert_eq!(f.get("A"), Some("1"), "a byte order mark, a declaration and a comment are not content");
    }

    /// Every refusal with its exact reason (the reason reaches the log line, never the caller).
    #[test]
    fn parse_fields_refuses_what_wechat_never_sends_with_its_reason() {
        let deep = format!("{}{}", "<a>".repeat(20_000), "</a>".repeat(20_000));
        let deep_in_root = format!("<xml>{}{}</xml>", "<a>".repeat(20_000), "</a>".repeat(20_000));
        let many = format!("<xml>{}</xml>", "<item><A>1</A></item>".repeat(MAX_FIELDS + 1));
        let cases: &[(&str, &str)] = &[
            ("", "no root element"),
            ("   ", "no root element"),
            ("{\"MsgType\":\"text\"}", "text outside the root element"),
            ("<xml><A>1</A>", "unclosed element"),
            ("<xml><A>1</B></xml>", "not well-formed XML"),
            ("<root><A>1</A></root>", "root element is not <xml>"),
            ("<xml><A>1</A></xml><xml/>", "more than one root element"),
            ("<xml><A>1</A></xml>trailing", "text outside the root element"),
            ("<xml><A>1</A><A>2</A></xml>", "duplicate field"),
            ("<!DOCTYPE xml [<!ENTITY a \"b\">]><xml><A>&a;</A></xml>", "DOCTYPE is not allowed"),
            ("<xml><A>&unknown;</A></xml>", "invalid entity or character reference"),
            ("<xml><A>&#xFFFFFFFF;</A></xml>", "invalid entity or character reference"),
            ("<xml><A>&#xD800;</A></xml>", "invalid entity or character reference"),
            ("<xml><A><![CDATA[x]></A></xml>", "not well-formed XML"),
            ("<xml><A>1</A></xml></xml>", "not well-formed XML"),
            (&deep, "root element is not <xml>"),
            (&deep_in_root, "nesting too deep"),
            (&many, "too many fields"),
        ];
        for (doc, reason) in cases {
            let shown: String = doc.chars().take(60).collect();
            assert_eq!(parse_fields(doc), Err(Error::MalformedXml(reason)), "{shown:?}");
        }
    }

    #[test]
    fn parse_fields_reads_the_markup_wechat_may_send_around_its_fields() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("<xml><A b=\"x>y\" c='>'>v</A ></xml>", &[("A", "v")]),
            ("<xml><A/><B /><C x='1'/></xml>", &[("A", ""), ("B", ""), ("C", "")]),
            ("<xml><A>1</A\t\n></xml>", &[("A", "1")]),
            ("<xml><A><![CDATA[]]></A></xml>", &[("A", "")]),
            ("<xml><A>x<B>y</B>z</A></xml>", &[("A/B", "y")]),
            ("<xml>\n  <A>\n    <B>1</B>\n  </A>\n</xml>", &[("A/B", "1")]),
            ("<xml><?pi data?><A>1</A></xml>", &[("A", "1")]),
            ("<xml><A>\u{4e2d}\u{6587}</A></xml>", &[("A", "中文")]),
        ];
        for (doc, expected) in cases {
            let f = parse_fields(doc).unwrap_or_else(|e| panic!("{doc:?}: {e:?}"));
            assert_eq!(f.len(), expected.len(), "{doc:?}");
            for (path, value) in *expected {
                assert_eq!(f.get(path), Some(*value), "{doc:?} {path}");
            }
        }
    }
}
