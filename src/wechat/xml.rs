//! A strict reader for WeChat's flat `<xml>...</xml>` documents.
//!
//! It keeps the text of every leaf element under its slash-joined path below the root
//! (`Content`, `ScanCodeInfo/ScanType`, `SendPicsInfo/PicList/item/PicMd5Sum`) and refuses
//! anything WeChat never sends: a DTD (so no entity can ever be expanded), unknown entities,
//! nesting deeper than [`MAX_DEPTH`], a root other than `<xml>`, text outside the root, or the
//! same top-level field twice (which would let two readers see two different messages).
//!
//! The document is cut into tokens here (`next_token`) rather than by quick-xml's reader:
//! that reader was about 5 KB of the code an isolate's first push compiles. It accepts the
//! syntax quick-xml 0.37 accepts, no more: quick-xml stays as the oracle that tests and the
//! `xml_tokens` fuzz target compare it with (`agrees_with_quick_xml`), and decodes entities.

use std::borrow::Cow;

use crate::error::Error;
use crate::text::find_byte;

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
    // A UTF-8 byte order mark is not content.
    let mut rest = xml.strip_prefix('\u{feff}').unwrap_or(xml);
    read_fields(|| next_token(&mut rest))
}

/// One piece of a document, as [`next_token`] cuts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    /// `<name ...>`: the name, up to the first whitespace.
    Start(&'a str),
    /// `<name .../>`.
    Empty(&'a str),
    /// `</name>`: everything up to `>`, trailing whitespace trimmed (if anything is left).
    End(&'a str),
    /// The raw text up to the next `<` or the end.
    Text(&'a str),
    /// The content of `<![CDATA[...]]>`.
    CData(&'a str),
    /// An XML declaration, a processing instruction or a comment.
    Skip,
}

const NOT_WELL_FORMED: Error = Error::MalformedXml("not well-formed XML");

/// The next token of `rest`, which moves past it; `None` at the end.
///
/// `<!...>` other than a comment or CDATA is an error (a DTD is never read), `>` inside a
/// quoted attribute value does not end a tag, and end tags are matched against their start by
/// [`read_fields`].
fn next_token<'a>(rest: &mut &'a str) -> Result<Option<Token<'a>>, Error> {
    if rest.is_empty() {
        return Ok(None);
    }
    let markup = match find_byte(rest, b'<') {
        None => return Ok(Some(Token::Text(std::mem::take(rest)))),
        Some(0) => rest.get(1..).ok_or(NOT_WELL_FORMED)?,
        Some(at) => {
            let (text, markup) = rest.split_at_checked(at).ok_or(NOT_WELL_FORMED)?;
            *rest = markup;
            return Ok(Some(Token::Text(text)));
        }
    };
    // `inner` is what lies between the delimiters; `after` is the document after the token.
    let (token, after) = if let Some(cdata) = markup.strip_prefix("![CDATA[") {
        let (inner, after) = cut(cdata, "]]>")?;
        (Token::CData(inner), after)
    } else if markup.starts_with(['!', '?']) {
        (Token::Skip, skipped(markup)?)
    } else {
        let (inner, after) = split_tag(markup).ok_or(NOT_WELL_FORMED)?;
        let token = if let Some(name) = inner.strip_prefix('/') {
            // As quick-xml: trailing whitespace is trimmed, unless the name is nothing else.
            let end = name.bytes().rposition(|b| !is_xml_space(b)).map_or(name.len(), |last| last + 1);
            Token::End(name.get(..end).unwrap_or(name))
        } else if let Some(inner) = inner.strip_suffix('/') {
            Token::Empty(tag_name(inner))
        } else {
            Token::Start(tag_name(inner))
        };
        (token, after)
    };
    *rest = after;
    Ok(Some(token))
}

/// The document after a comment or a processing instruction (or the XML declaration) that
/// `markup` starts with (after its `<`); any other `<!...>` is an error. Out of line: WeChat
/// sends none of these, and V8 compiles a wasm function only when it is first called.
#[inline(never)]
fn skipped(markup: &str) -> Result<&str, Error> {
    if let Some(comment) = markup.strip_prefix("!--") {
        Ok(cut(comment, "-->")?.1)
    } else if markup.starts_with('!') {
        let doctype = markup.get(..8).is_some_and(|m| m.eq_ignore_ascii_case("!DOCTYPE"));
        Err(if doctype { Error::MalformedXml("DOCTYPE is not allowed") } else { NOT_WELL_FORMED })
    } else {
        // `<?...?>`; the `?` that opens it cannot also close it (`<?>` is unclosed).
        match cut(markup, "?>")? {
            ("", _) => Err(NOT_WELL_FORMED),
            (_, after) => Ok(after),
        }
    }
}

/// `s` cut around the first `delimiter` (ASCII): (before, after); unclosed if there is none.
/// A byte loop: `str::split_once(&str)` would bring in the Two-Way searcher, 2 KB of code for
/// every isolate's first request to compile.
fn cut<'a>(s: &'a str, delimiter: &str) -> Result<(&'a str, &'a str), Error> {
    let bytes = s.as_bytes();
    let first = delimiter.as_bytes().first().ok_or(NOT_WELL_FORMED)?;
    let mut from = 0;
    while let Some(at) = bytes.get(from..).and_then(|rest| rest.iter().position(|b| b == first)) {
        let at = from + at;
        if bytes.get(at..).is_some_and(|rest| rest.starts_with(delimiter.as_bytes())) {
            return s.get(..at).zip(s.get(at + delimiter.len()..)).ok_or(NOT_WELL_FORMED);
        }
        from = at + 1;
    }
    Err(NOT_WELL_FORMED)
}

/// `markup` cut at the first `>` outside a quoted attribute value: (inside, after the `>`).
fn split_tag(markup: &str) -> Option<(&str, &str)> {
    let mut quote = None;
    for (at, b) in markup.bytes().enumerate() {
        match (quote, b) {
            (None, b'>') => return Some((markup.get(..at)?, markup.get(at + 1..)?)),
            (None, b'"' | b'\'') => quote = Some(b),
            (Some(q), _) if q == b => quote = None,
            _ => {}
        }
    }
    None
}

/// A tag's name: its content up to the first whitespace.
fn tag_name(inner: &str) -> &str {
    inner.bytes().position(is_xml_space).and_then(|end| inner.get(..end)).unwrap_or(inner)
}

/// XML's four whitespace characters.
fn is_xml_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// The leaf fields of the document `next` cuts into tokens.
fn read_fields<'a>(mut next: impl FnMut() -> Result<Option<Token<'a>>, Error>) -> Result<Fields<'a>, Error> {
    let bad = Error::MalformedXml;
    let mut stack: Vec<Open<'_>> = Vec::with_capacity(MAX_DEPTH);
    let mut fields = Fields { entries: Vec::with_capacity(16) };
    let mut root_seen = false;

    while let Some(token) = next()? {
        match token {
            Token::Start(name) => open(&mut stack, &mut root_seen, name)?,
            Token::Empty(name) => {
                open(&mut stack, &mut root_seen, name)?;
                close(&mut stack, &mut fields)?;
            }
            Token::End(name) => {
                if stack.last().map(|top| top.name) != Some(name) {
                    return Err(NOT_WELL_FORMED);
                }
                close(&mut stack, &mut fields)?;
            }
            Token::Text(raw) => {
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
            Token::CData(raw) => {
                let top = stack.last_mut().ok_or(bad("CDATA outside the root element"))?;
                if !top.saw_cdata && top.text.as_deref().is_some_and(is_layout) {
                    // Whitespace before the first CDATA section is layout, not content.
                    top.text = None;
                }
                top.saw_cdata = true;
                top.push(Cow::Borrowed(raw));
                top.cdata_end = top.text_len();
            }
            Token::Skip => {}
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

/// Whitespace only.
fn is_layout(s: &str) -> bool {
    s.bytes().all(is_xml_space)
}

/// The same reading with quick-xml's reader cutting the tokens: the oracle that the
/// differential tests and the `xml_tokens` fuzz target hold [`next_token`] to.
#[cfg(any(test, fuzzing))]
pub fn parse_fields_with_quick_xml(xml: &str) -> Result<Fields<'_>, Error> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    read_fields(|| {
        Ok(match reader.read_event().map_err(|_| NOT_WELL_FORMED)? {
            Event::Start(start) => Some(Token::Start(within(xml, start.name().as_ref())?)),
            Event::Empty(start) => Some(Token::Empty(within(xml, start.name().as_ref())?)),
            Event::End(end) => Some(Token::End(within(xml, end.name().as_ref())?)),
            Event::Text(text) => Some(Token::Text(within(xml, &text)?)),
            Event::CData(cdata) => Some(Token::CData(within(xml, &cdata)?)),
            Event::DocType(_) => return Err(Error::MalformedXml("DOCTYPE is not allowed")),
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => Some(Token::Skip),
            Event::Eof => None,
        })
    })
}

/// Whether [`parse_fields`] and [`parse_fields_with_quick_xml`] agree on `doc`: `Ok(true)` if
/// both accept it with the same fields, `Ok(false)` if both refuse it for the same reason (or
/// ours names a `<!DOCTYPE` that quick-xml finds malformed as a DOCTYPE), else what differs.
#[cfg(any(test, fuzzing))]
pub fn agrees_with_quick_xml(doc: &str) -> Result<bool, String> {
    match (parse_fields(doc), parse_fields_with_quick_xml(doc)) {
        (Ok(ours), Ok(theirs)) if ours == theirs => Ok(true),
        (Err(ours), Err(theirs)) if ours == theirs || ours == Error::MalformedXml("DOCTYPE is not allowed") => {
            Ok(false)
        }
        (ours, theirs) => Err(format!("{doc:?}: ours {ours:?}, quick-xml {theirs:?}")),
    }
}

/// `part` (a slice quick-xml's `&str` reader handed out) as the `&str` of the document it is.
#[cfg(any(test, fuzzing))]
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

    /// Documents that reach every branch of the tokenizer, accepted and refused.
    const EDGES: &[&str] = &[
        "<xml><A>1</A></xml>",
        "\u{feff}<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xml><A><![CDATA[x]]></A></xml>\n",
        "<xml><!-- a -- b --><A>1</A><!----></xml><!-- after -->",
        "<xml><!---></xml>",
        "<xml><!-x--></xml>",
        "<xml><?pi data?><??><A>1</A></xml>",
        "<?><xml/>",
        "<?>x?><xml/>",
        "<xml><A b=\"x>y\" c='>'>v</A ></xml>",
        "<xml><A b=\"x>y'>v</A></xml>",
        "<xml><A/><B /><C x='1'/></xml>",
        "<xml><A/ ></A/></xml>",
        "<xml><></></xml>",
        "<xml>< a></ ></xml>",
        "<xml>< a></\n></xml>",
        "<xml><A>1</A\t\n></xml>",
        "<xml><A>1</ A></xml>",
        "<xml><A b>1</A b></xml>",
        "<xml><A><![CDATA[]]></A><B><![CDATA[a]]]]><![CDATA[>b]]></B></xml>",
        "<xml><A><![CDATA[x]></A></xml>",
        "<xml><A><![cdata[x]]></A></xml>",
        "<xml><A><!DOCTYPE></A></xml>",
        "<!doctype xml><xml/>",
        "<!DOCTYPE xml [<!ENTITY a \"b\">]><xml/>",
        "<!ELEMENT x><xml/>",
        "<xml><A>&amp;&#20013;&#x4e2d;</A></xml>",
        "<xml><A>1</A></xml><",
        "<xml><A>1</A></xml></xml>",
        "<xml>",
        "</xml>",
        "<xml><A>x<B>y</B>z</A></xml>",
        "<xml>\n  <A>\n    <B>1</B>\n  </A>\n</xml>",
        "<xml><A>\u{4e2d}\u{6587}</A></xml>",
    ];

    /// Pieces of markup the mutations splice in.
    const PIECES: &[&str] = &[
        "<",
        ">",
        "/",
        "!",
        "?",
        "[",
        "]",
        "-",
        "\"",
        "'",
        " ",
        "\n",
        "&",
        ";",
        "=",
        "<!--",
        "-->",
        "<![CDATA[",
        "]]>",
        "<?",
        "?>",
        "<?xml version=\"1.0\"?>",
        "<!DOCTYPE x>",
        "<!d",
        "<A>",
        "</A>",
        "<A/>",
        "<xml>",
        "</xml>",
        "<B c=\">\">",
        "</B>",
        "&amp;",
        "&#x4e2d;",
        "&bogus;",
        "\u{feff}",
        "\u{4e2d}",
        "\t",
    ];

    /// The tokenizer against quick-xml's reader on every fixture and every edge above, each
    /// also mutated at random (a fixed seed): see [`agrees_with_quick_xml`].
    #[test]
    fn next_token_reads_documents_as_quick_xml_does() {
        let mut docs: Vec<String> = EDGES.iter().map(|d| d.to_string()).collect();
        let mut dirs = vec![std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"))];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if let Ok(text) = std::fs::read_to_string(&path) {
                    if path.extension().is_some_and(|e| e == "xml") {
                        docs.push(text);
                    }
                }
            }
        }
        assert!(docs.len() > 60, "fixtures not found: {}", docs.len());

        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |below: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % below.max(1) as u64) as usize
        };
        let (mut accepted, mut refused) = (0, 0);
        for round in 0..40_000 {
            let mut doc = docs[round % docs.len()].clone();
            for _ in 0..round % 4 {
                let cuts: Vec<usize> = (0..=doc.len()).filter(|&i| doc.is_char_boundary(i)).collect();
                let at = cuts[next(cuts.len())];
                match next(3) {
                    0 => doc.insert_str(at, PIECES[next(PIECES.len())]),
                    1 => {
                        let end = cuts.iter().copied().filter(|&e| e >= at).nth(next(4)).unwrap_or(at);
                        doc.replace_range(at..end, "");
                    }
                    _ => {
                        let end = cuts.iter().copied().filter(|&e| e >= at).nth(next(12)).unwrap_or(at);
                        let copy = doc[at..end].to_string();
                        doc.insert_str(end, &copy);
                    }
                }
            }
            match agrees_with_quick_xml(&doc) {
                Ok(true) => accepted += 1,
                Ok(false) => refused += 1,
                Err(disagreement) => panic!("{disagreement}"),
            }
        }
        // Both outcomes are exercised in earnest.
        assert!(accepted > 10_000 && refused > 10_000, "accepted {accepted}, refused {refused}");
    }
}
