//! A strict reader for WeChat's flat `<xml>...</xml>` documents.
//!
//! It keeps the text of every leaf element under its slash-joined path below the root
//! (`Content`, `ScanCodeInfo/ScanType`, `SendPicsInfo/PicList/item/PicMd5Sum`) and refuses
//! anything WeChat never sends: a DTD (so no entity can ever be expanded), unknown entities,
//! nesting deeper than [`MAX_DEPTH`], a root other than `<xml>`, text outside the root, or the
//! same top-level field twice (which would let two readers see two different messages).

use std::borrow::Cow;

use quick_xml::events::Event;
use quick_xml::Reader;

use crate::error::Error;

/// Deepest element nesting accepted, root included (WeChat's deepest is 5:
/// `xml/SendPicsInfo/PicList/item/PicMd5Sum`).
pub const MAX_DEPTH: usize = 8;
/// Most leaf fields accepted in one document.
pub const MAX_FIELDS: usize = 256;

/// The leaf fields of one document, in document order. Borrows from the document: only nested
/// paths and values with escapes or several pieces are allocated.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Fields<'a> {
    entries: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

impl<'a> Fields<'a> {
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

struct Open<'a> {
    name: &'a str,
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

/// Parses a WeChat XML document into its leaf fields.
pub fn parse_fields(xml: &str) -> Result<Fields<'_>, Error> {
    let bad = Error::MalformedXml;
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<Open<'_>> = Vec::with_capacity(MAX_DEPTH);
    let mut fields = Fields { entries: Vec::with_capacity(16) };
    let mut root_seen = false;

    loop {
        let event = reader.read_event().map_err(|_| bad("not well-formed XML"))?;
        match event {
            Event::Start(start) => open(&mut stack, &mut root_seen, within(xml, start.name().as_ref())?)?,
            Event::Empty(start) => {
                open(&mut stack, &mut root_seen, within(xml, start.name().as_ref())?)?;
                close(&mut stack, &mut fields)?;
            }
            Event::End(_) => close(&mut stack, &mut fields)?,
            Event::Text(text) => {
                let raw = within(xml, &text)?;
                match stack.last_mut() {
                    // Whitespace around child elements is layout.
                    Some(top) if top.has_children && is_layout(raw) => {}
                    // WeChat's plain text nodes are numbers; only text with a reference is unescaped
                    // (so V8 compiles the unescaper only for a document that has one).
                    Some(top) if !raw.contains('&') => top.push(Cow::Borrowed(raw)),
                    Some(top) => top.push(unescape(raw)?),
                    None if is_layout(raw) => {}
                    None => return Err(bad("text outside the root element")),
                }
            }
            Event::CData(cdata) => {
                let raw = within(xml, &cdata)?;
                let top = stack.last_mut().ok_or(bad("CDATA outside the root element"))?;
                if !top.saw_cdata && top.text.as_deref().is_some_and(is_layout) {
                    // Whitespace before the first CDATA section is layout, not content.
                    top.text = None;
                }
                top.saw_cdata = true;
                top.push(Cow::Borrowed(raw));
                top.cdata_end = top.text_len();
            }
            Event::DocType(_) => return Err(bad("DOCTYPE is not allowed")),
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if !root_seen {
        return Err(bad("no root element"));
    }
    if !stack.is_empty() {
        return Err(bad("unclosed element"));
    }
    Ok(fields)
}

/// `raw` with its entity and character references replaced (the five predefined entities and
/// numeric references; any other is an error). Out of line: see the call.
#[inline(never)]
fn unescape(raw: &str) -> Result<Cow<'_, str>, Error> {
    quick_xml::escape::unescape(raw).map_err(|_| Error::MalformedXml("invalid entity or character reference"))
}

/// Whitespace only (XML's four whitespace characters).
fn is_layout(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

/// `part` (a slice a `&str` reader handed out) as a `&str` borrowed from the document itself:
/// O(1), where `from_utf8` would validate the same bytes again.
fn within<'a>(xml: &'a str, part: &[u8]) -> Result<&'a str, Error> {
    let start = (part.as_ptr() as usize).checked_sub(xml.as_ptr() as usize);
    start
        .and_then(|start| xml.get(start..start.checked_add(part.len())?))
        .ok_or(Error::MalformedXml("reader slice outside the document"))
}

fn open<'a>(stack: &mut Vec<Open<'a>>, root_seen: &mut bool, name: &'a str) -> Result<(), Error> {
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
    stack.push(Open { name, has_children: false, text: None, saw_cdata: false, cdata_end: 0 });
    Ok(())
}

fn close<'a>(stack: &mut Vec<Open<'a>>, fields: &mut Fields<'a>) -> Result<(), Error> {
    let done = stack.pop().ok_or(Error::MalformedXml("unbalanced end tag"))?;
    if stack.is_empty() || done.has_children {
        // The root, or an element holding elements: its own text is layout.
        return Ok(());
    }
    let path: Cow<'a, str> = if stack.len() == 1 {
        Cow::Borrowed(done.name)
    } else {
        let mut path = String::new();
        for parent in stack.iter().skip(1) {
            path.push_str(parent.name);
            path.push('/');
        }
        path.push_str(done.name);
        Cow::Owned(path)
    };
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
    }

    #[test]
    fn parse_fields_rejects_what_wechat_never_sends() {
        let deep = format!("{}{}", "<a>".repeat(20_000), "</a>".repeat(20_000));
        let deep_in_root = format!("<xml>{}{}</xml>", "<a>".repeat(20_000), "</a>".repeat(20_000));
        let cases: &[&str] = &[
            "",
            "   ",
            "{\"MsgType\":\"text\"}",
            "<xml><A>1</A>",
            "<xml><A>1</B></xml>",
            "<root><A>1</A></root>",
            "<xml><A>1</A></xml><xml/>",
            "<xml><A>1</A></xml>trailing",
            "<xml><A>1</A><A>2</A></xml>",
            "<!DOCTYPE xml [<!ENTITY a \"b\">]><xml><A>&a;</A></xml>",
            "<xml><A>&unknown;</A></xml>",
            "<xml><A>&#xFFFFFFFF;</A></xml>",
            "<xml><A>&#xD800;</A></xml>",
            &deep,
            &deep_in_root,
        ];
        for case in cases {
            let shown: String = case.chars().take(60).collect();
            assert!(matches!(parse_fields(case), Err(Error::MalformedXml(_))), "{shown:?}");
        }
    }
}
