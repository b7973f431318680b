//! Passive replies: the `transfer_customer_service` reply, the text reply, and the safe-mode
//! envelope.
//!
//! Rendered on one line with no whitespace between elements (WeChat is known to ignore a
//! transfer reply with stray spaces or newlines). Strings go in CDATA; a `]]>` inside a value is
//! split across two CDATA sections, so no value can close its section early.

use crate::message::Message;
use crate::xml::parse_fields;
use crate::Error;

/// The body that acknowledges a push with no reply message.
pub const SUCCESS: &str = "success";

/// Hands the user's message to customer service, optionally to one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferCustomerServiceReply {
    /// The user's OpenID (the incoming `FromUserName`).
    pub to_user_name: String,
    /// The account's ID (the incoming `ToUserName`).
    pub from_user_name: String,
    /// Seconds since the Unix epoch.
    pub create_time: u64,
    /// `TransInfo/KfAccount`: the customer-service account to hand the user to.
    pub kf_account: Option<String>,
}

impl TransferCustomerServiceReply {
    /// The reply to `message`: sender and recipient swapped.
    pub fn to(message: &Message, create_time: u64, kf_account: Option<&str>) -> Self {
        TransferCustomerServiceReply {
            to_user_name: message.from_user_name.clone(),
            from_user_name: message.to_user_name.clone(),
            create_time,
            kf_account: kf_account.map(str::to_string),
        }
    }

    /// The reply XML.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(256);
        out.push_str("<xml>");
        push_cdata(&mut out, "ToUserName", &self.to_user_name);
        push_cdata(&mut out, "FromUserName", &self.from_user_name);
        push_number(&mut out, "CreateTime", self.create_time);
        push_cdata(&mut out, "MsgType", "transfer_customer_service");
        if let Some(kf) = &self.kf_account {
            out.push_str("<TransInfo>");
            push_cdata(&mut out, "KfAccount", kf);
            out.push_str("</TransInfo>");
        }
        out.push_str("</xml>");
        out
    }

    /// Reads a rendered reply back (tests and fuzzing use it to check [`render`](Self::render)).
    pub fn parse(xml: &str) -> Result<Self, Error> {
        let f = parse_fields(xml)?;
        if f.get("MsgType") != Some("transfer_customer_service") {
            return Err(Error::InvalidField("MsgType"));
        }
        Ok(TransferCustomerServiceReply {
            to_user_name: f.get("ToUserName").ok_or(Error::MissingField("ToUserName"))?.to_string(),
            from_user_name: f.get("FromUserName").ok_or(Error::MissingField("FromUserName"))?.to_string(),
            create_time: f
                .get("CreateTime")
                .ok_or(Error::MissingField("CreateTime"))?
                .parse()
                .map_err(|_| Error::InvalidField("CreateTime"))?,
            kf_account: f.get("TransInfo/KfAccount").map(str::to_string),
        })
    }
}

/// A passive text reply (the front desk's welcome, keyword answers, prompts, closed notices).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextReply {
    /// The user's OpenID (the incoming `FromUserName`).
    pub to_user_name: String,
    /// The account's ID (the incoming `ToUserName`).
    pub from_user_name: String,
    pub create_time: u64,
    pub content: String,
}

impl TextReply {
    /// The reply to `message`: sender and recipient swapped.
    pub fn to(message: &Message, create_time: u64, content: &str) -> Self {
        TextReply {
            to_user_name: message.from_user_name.clone(),
            from_user_name: message.to_user_name.clone(),
            create_time,
            content: content.to_string(),
        }
    }

    /// The reply XML.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(200 + self.content.len());
        out.push_str("<xml>");
        push_cdata(&mut out, "ToUserName", &self.to_user_name);
        push_cdata(&mut out, "FromUserName", &self.from_user_name);
        push_number(&mut out, "CreateTime", self.create_time);
        push_cdata(&mut out, "MsgType", "text");
        push_cdata(&mut out, "Content", &self.content);
        out.push_str("</xml>");
        out
    }

    /// Reads a rendered reply back (tests and fuzzing use it to check [`render`](Self::render)).
    pub fn parse(xml: &str) -> Result<Self, Error> {
        let f = parse_fields(xml)?;
        if f.get("MsgType") != Some("text") {
            return Err(Error::InvalidField("MsgType"));
        }
        let field = |name: &'static str| f.get(name).map(str::to_string).ok_or(Error::MissingField(name));
        Ok(TextReply {
            to_user_name: field("ToUserName")?,
            from_user_name: field("FromUserName")?,
            create_time: field("CreateTime")?.parse().map_err(|_| Error::InvalidField("CreateTime"))?,
            content: field("Content")?,
        })
    }
}

/// The safe-mode reply envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedReply {
    pub encrypt: String,
    pub msg_signature: String,
    pub timestamp: u64,
    pub nonce: String,
}

impl EncryptedReply {
    /// The envelope XML.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(self.encrypt.len() + 200);
        out.push_str("<xml>");
        push_cdata(&mut out, "Encrypt", &self.encrypt);
        push_cdata(&mut out, "MsgSignature", &self.msg_signature);
        push_number(&mut out, "TimeStamp", self.timestamp);
        push_cdata(&mut out, "Nonce", &self.nonce);
        out.push_str("</xml>");
        out
    }
}

fn push_number(out: &mut String, name: &str, value: u64) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    out.push_str(&value.to_string());
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

/// Whether XML 1.0 allows `c` in a document (`Char` production; Rust strings hold no surrogates).
pub fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{FFFD}' | '\u{10000}'..)
}

/// `<name><![CDATA[value]]></name>`. A `]]>` in the value is split across two sections, and a
/// character XML 1.0 forbids (a NUL, most control characters) is written as U+FFFD.
fn push_cdata(out: &mut String, name: &str, value: &str) {
    out.push('<');
    out.push_str(name);
    out.push_str("><![CDATA[");
    // Nearly every value holds neither a `]]>` nor a character XML forbids.
    if !value.as_bytes().windows(3).any(|w| w == b"]]>") && value.chars().all(is_xml_char) {
        out.push_str(value);
    } else {
        for (i, piece) in value.split("]]>").enumerate() {
            if i > 0 {
                // End the section after "]]" and open a new one before ">".
                out.push_str("]]]]><![CDATA[>");
            }
            out.extend(piece.chars().map(|c| if is_xml_char(c) { c } else { char::REPLACEMENT_CHARACTER }));
        }
    }
    out.push_str("]]></");
    out.push_str(name);
    out.push('>');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_reply_matches_spec_example() {
        let r = TransferCustomerServiceReply {
            to_user_name: "touser".into(),
            from_user_name: "fromuser".into(),
            create_time: 1399197672,
            kf_account: None,
        };
        assert_eq!(
            r.render(),
            "<xml><ToUserName><![CDATA[touser]]></ToUserName><FromUserName><![CDATA[fromuser]]></FromUserName>\
             <CreateTime>1399197672</CreateTime><MsgType><![CDATA[transfer_customer_service]]></MsgType></xml>"
        );
        let with_kf = TransferCustomerServiceReply { kf_account: Some("test1@test".into()), ..r };
        assert!(with_kf
            .render()
            .ends_with("<TransInfo><KfAccount><![CDATA[test1@test]]></KfAccount></TransInfo></xml>"));
    }

    #[test]
    fn transfer_reply_roundtrip_with_cdata_terminators_in_values() {
        let r = TransferCustomerServiceReply {
            to_user_name: "a]]>b".into(),
            from_user_name: "]]>]]>".into(),
            create_time: u64::MAX,
            kf_account: Some("k]]><x/>@y".into()),
        };
        assert_eq!(TransferCustomerServiceReply::parse(&r.render()).unwrap(), r);
    }

    #[test]
    fn text_reply_matches_spec_example_and_survives_any_content() {
        let r = TextReply {
            to_user_name: "toUser".into(),
            from_user_name: "fromUser".into(),
            create_time: 12345678,
            content: "你好".into(),
        };
        assert_eq!(
            r.render(),
            "<xml><ToUserName><![CDATA[toUser]]></ToUserName><FromUserName><![CDATA[fromUser]]></FromUserName>\
             <CreateTime>12345678</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[你好]]></Content></xml>"
        );
        let nasty = TextReply { content: "a]]><xml>\n<Content>b</Content>]]>😀".into(), ..r };
        assert_eq!(TextReply::parse(&nasty.render()).unwrap(), nasty);
    }

    #[test]
    fn reply_never_writes_a_character_xml_forbids() {
        let r = TransferCustomerServiceReply {
            to_user_name: "o\u{0}1\u{1}\u{8}\u{b}\u{c}\u{1f}\u{fffe}\u{ffff}".into(),
            from_user_name: "gh\t\n\r]]>\u{0}".into(),
            create_time: 1,
            kf_account: Some("中文😀@x".into()),
        };
        let xml = r.render();
        assert!(xml.chars().all(is_xml_char), "{xml:?}");
        let back = TransferCustomerServiceReply::parse(&xml).unwrap();
        assert_eq!(back.to_user_name, "o\u{fffd}1\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}");
        assert_eq!(back.from_user_name, "gh\t\n\r]]>\u{fffd}");
        assert_eq!(back.kf_account.as_deref(), Some("中文😀@x"));
    }
}
