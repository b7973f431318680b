//! A strict reader for WeChat's flat `<xml>...</xml>` documents.
//!
//! It keeps the text of every leaf element under its slash-joined path below the root
//! (`Content`, `ScanCodeInfo/ScanType`, `SendPicsInfo/PicList/item/PicMd5Sum`) and refuses
//! anything WeChat never sends: a DTD (so no entity can ever be expanded), unknown entities,
//! nesting deeper than [`MAX_DEPTH`], a root other than `<xml>`, text outside the root, or the
//! same top-level field twice (which would let two readers see two different messages).

use quick_xml::events::Event;
use quick_xml::Reader;

use crate::error::Error;

/// Deepest element nesting accepted, root included (WeChat's deepest is 5:
/// `xml/SendPicsInfo/PicList/item/PicMd5Sum`).
pub const MAX_DEPTH: usize = 8;
/// Most leaf fields accepted in one document.
pub const MAX_FIELDS: usize = 256;

/// The leaf fields of one document, in document order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Fields {
    entries: Vec<(String, String)>,
}

impl Fields {
    /// The first value at `path` (e.g. `"Content"` or `"ScanCodeInfo/ScanType"`).
    pub fn get(&self, path: &str) -> Option<&str> {
        self.entries.iter().find(|(p, _)| p == path).map(|(_, v)| v.as_str())
    }

    /// Every value at `path`, in document order (for repeated `item`s).
    pub fn get_all<'a>(&'a self, path: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.entries.iter().filter(move |(p, _)| p == path).map(|(_, v)| v.as_str())
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

struct Open {
    name: String,
    has_children: bool,
    text: String,
    saw_cdata: bool,
    /// Length of `text` right after its last CDATA section.
    cdata_end: usize,
}

/// Parses a WeChat XML document into its leaf fields.
pub fn parse_fields(xml: &str) -> Result<Fields, Error> {
    let bad = Error::MalformedXml;
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<Open> = Vec::new();
    let mut fields = Fields::default();
    let mut root_seen = false;

    loop {
        let event = reader.read_event().map_err(|_| bad("not well-formed XML"))?;
        match event {
            Event::Start(start) => {
                let name = element_name(start.name().as_ref())?;
                open(&mut stack, &mut root_seen, name)?;
            }
            Event::Empty(start) => {
                let name = element_name(start.name().as_ref())?;
                open(&mut stack, &mut root_seen, name)?;
                close(&mut stack, &mut fields)?;
            }
            Event::End(_) => close(&mut stack, &mut fields)?,
            Event::Text(text) => {
                let raw = text.unescape().map_err(|_| bad("invalid entity or character reference"))?;
                match stack.last_mut() {
                    Some(top) => top.text.push_str(&raw),
                    None if raw.trim().is_empty() => {}
                    None => return Err(bad("text outside the root element")),
                }
            }
            Event::CData(cdata) => {
                let raw = std::str::from_utf8(cdata.as_ref()).map_err(|_| bad("CDATA is not UTF-8"))?;
                let top = stack.last_mut().ok_or(bad("CDATA outside the root element"))?;
                if !top.saw_cdata && top.text.trim().is_empty() {
                    // Whitespace before the first CDATA section is layout, not content.
                    top.text.clear();
                }
                top.saw_cdata = true;
                top.text.push_str(raw);
                top.cdata_end = top.text.len();
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

fn element_name(raw: &[u8]) -> Result<String, Error> {
    std::str::from_utf8(raw).map(str::to_string).map_err(|_| Error::MalformedXml("element name is not UTF-8"))
}

fn open(stack: &mut Vec<Open>, root_seen: &mut bool, name: String) -> Result<(), Error> {
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
    }
    stack.push(Open { name, has_children: false, text: String::new(), saw_cdata: false, cdata_end: 0 });
    Ok(())
}

fn close(stack: &mut Vec<Open>, fields: &mut Fields) -> Result<(), Error> {
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
    let mut value = done.text;
    if done.saw_cdata && value[done.cdata_end..].trim().is_empty() {
        // `<A><![CDATA[x]]>\n</A>`: whitespace after the last CDATA section is layout.
        value.truncate(done.cdata_end);
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
