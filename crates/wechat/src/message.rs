//! Inbound WeChat messages and events as typed values.
//!
//! Every documented `MsgType` and `Event` has a variant; anything else parses into
//! [`MessageKind::Unknown`] or [`Event::Unknown`], so a new WeChat feature never fails a request.
//! Fields every message carries (`ToUserName`, `FromUserName`, `CreateTime`, `MsgType`) are
//! required; numbers that are present must parse (`CreateTime`, `MsgId`, coordinates).
//! Type-specific strings default to empty when absent: the message is still worth transferring.

use crate::xml::{parse_fields, Fields};
use crate::Error;

/// One message or event pushed to the callback URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The account's original ID (`gh_...`): the sender of any reply.
    pub to_user_name: String,
    /// The user's OpenID: the recipient of any reply.
    pub from_user_name: String,
    /// Seconds since the Unix epoch, as WeChat stamped it.
    pub create_time: u64,
    /// `MsgId` of a user message (`MsgID` on job-finish events), when present.
    pub msg_id: Option<u64>,
    /// What was sent.
    pub kind: MessageKind,
}

/// The payload of a [`Message`], by `MsgType`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageKind {
    Text {
        content: String,
    },
    Image {
        pic_url: String,
        media_id: String,
    },
    /// `recognition` is present when speech recognition is enabled for the account.
    Voice {
        media_id: String,
        format: String,
        recognition: Option<String>,
    },
    Video {
        media_id: String,
        thumb_media_id: String,
    },
    ShortVideo {
        media_id: String,
        thumb_media_id: String,
    },
    /// `Location_X` is the latitude, `Location_Y` the longitude.
    Location {
        latitude: Decimal,
        longitude: Decimal,
        scale: u32,
        label: String,
    },
    Link {
        title: String,
        description: String,
        url: String,
    },
    File {
        title: String,
        description: String,
        file_key: String,
        file_md5: String,
        file_total_len: Option<u64>,
    },
    MiniProgramPage {
        title: String,
        app_id: String,
        page_path: String,
        thumb_url: String,
        thumb_media_id: String,
    },
    /// `MsgType=event`.
    Event(Event),
    /// A user message of a type this version does not know yet.
    Unknown {
        msg_type: String,
    },
}

/// The pictures of a `pic_*` menu event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SendPicsInfo {
    pub count: u32,
    pub pic_md5_sums: Vec<String>,
}

/// The place chosen in a `location_select` menu event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SendLocationInfo {
    pub latitude: Decimal,
    pub longitude: Decimal,
    pub scale: u32,
    pub label: String,
    pub poiname: String,
}

/// `MsgType=event` payloads, by `Event` (matched case-insensitively, as WeChat mixes cases).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A follow; `event_key` is `qrscene_<scene>` when it came from a parametric QR code.
    Subscribe {
        event_key: Option<String>,
        ticket: Option<String>,
    },
    Unsubscribe,
    /// A follower scanned a parametric QR code.
    Scan {
        event_key: String,
        ticket: Option<String>,
    },
    /// Periodic location report.
    Location {
        latitude: Decimal,
        longitude: Decimal,
        precision: Decimal,
    },
    Click {
        event_key: String,
    },
    View {
        url: String,
        menu_id: Option<String>,
    },
    ScancodePush {
        event_key: String,
        scan_type: String,
        scan_result: String,
    },
    ScancodeWaitmsg {
        event_key: String,
        scan_type: String,
        scan_result: String,
    },
    PicSysphoto {
        event_key: String,
        pics: SendPicsInfo,
    },
    PicPhotoOrAlbum {
        event_key: String,
        pics: SendPicsInfo,
    },
    PicWeixin {
        event_key: String,
        pics: SendPicsInfo,
    },
    LocationSelect {
        event_key: String,
        location: SendLocationInfo,
    },
    ViewMiniprogram {
        page_path: String,
        menu_id: Option<String>,
    },
    TemplateSendJobFinish {
        status: String,
    },
    MassSendJobFinish {
        status: String,
        total_count: u64,
        filter_count: u64,
        sent_count: u64,
        error_count: u64,
    },
    /// A customer-service agent accepted the user.
    KfCreateSession {
        kf_account: String,
    },
    KfCloseSession {
        kf_account: String,
    },
    KfSwitchSession {
        from_kf_account: String,
        to_kf_account: String,
    },
    /// An event this version does not know yet.
    Unknown {
        event: String,
    },
}

impl Message {
    /// Whether this is a user message (to be transferred), as opposed to an event.
    pub fn is_user_message(&self) -> bool {
        !matches!(self.kind, MessageKind::Event(_))
    }

    /// A short label for logs: the message type or `event:<name>`; never content.
    pub fn label(&self) -> String {
        let name = match &self.kind {
            MessageKind::Text { .. } => "text",
            MessageKind::Image { .. } => "image",
            MessageKind::Voice { .. } => "voice",
            MessageKind::Video { .. } => "video",
            MessageKind::ShortVideo { .. } => "shortvideo",
            MessageKind::Location { .. } => "location",
            MessageKind::Link { .. } => "link",
            MessageKind::File { .. } => "file",
            MessageKind::MiniProgramPage { .. } => "miniprogrampage",
            MessageKind::Unknown { .. } => "unknown",
            MessageKind::Event(e) => {
                let mut label = String::from("event:");
                label.push_str(e.name());
                return label;
            }
        };
        name.to_string()
    }
}

impl Message {
    /// The key of this push for "exactly once": `FromUserName|CreateTime|MsgId` for a message,
    /// `FromUserName|CreateTime|Event|EventKey` for an event (a `MsgId` alone collides across
    /// users and event types). A retried push has the same key.
    pub fn dedup_key(&self) -> String {
        match &self.kind {
            MessageKind::Event(e) => {
                let key = match e {
                    Event::Subscribe { event_key, .. } => event_key.as_deref().unwrap_or_default(),
                    Event::Scan { event_key, .. }
                    | Event::Click { event_key }
                    | Event::ScancodePush { event_key, .. }
                    | Event::ScancodeWaitmsg { event_key, .. }
                    | Event::PicSysphoto { event_key, .. }
                    | Event::PicPhotoOrAlbum { event_key, .. }
                    | Event::PicWeixin { event_key, .. }
                    | Event::LocationSelect { event_key, .. } => event_key,
                    Event::View { url, .. } => url,
                    Event::ViewMiniprogram { page_path, .. } => page_path,
                    Event::KfCreateSession { kf_account } | Event::KfCloseSession { kf_account } => kf_account,
                    Event::KfSwitchSession { to_kf_account, .. } => to_kf_account,
                    _ => "",
                };
                format!("{}|{}|{}|{key}", self.from_user_name, self.create_time, e.name())
            }
            _ => format!("{}|{}|{}", self.from_user_name, self.create_time, self.msg_id.unwrap_or_default()),
        }
    }
}

impl Event {
    /// The event's canonical name, as WeChat spells it.
    pub fn name(&self) -> &str {
        match self {
            Event::Subscribe { .. } => "subscribe",
            Event::Unsubscribe => "unsubscribe",
            Event::Scan { .. } => "SCAN",
            Event::Location { .. } => "LOCATION",
            Event::Click { .. } => "CLICK",
            Event::View { .. } => "VIEW",
            Event::ScancodePush { .. } => "scancode_push",
            Event::ScancodeWaitmsg { .. } => "scancode_waitmsg",
            Event::PicSysphoto { .. } => "pic_sysphoto",
            Event::PicPhotoOrAlbum { .. } => "pic_photo_or_album",
            Event::PicWeixin { .. } => "pic_weixin",
            Event::LocationSelect { .. } => "location_select",
            Event::ViewMiniprogram { .. } => "view_miniprogram",
            Event::TemplateSendJobFinish { .. } => "TEMPLATESENDJOBFINISH",
            Event::MassSendJobFinish { .. } => "MASSSENDJOBFINISH",
            Event::KfCreateSession { .. } => "kf_create_session",
            Event::KfCloseSession { .. } => "kf_close_session",
            Event::KfSwitchSession { .. } => "kf_switch_session",
            // Unknown names are caller-chosen: keep logs to a fixed word.
            Event::Unknown { .. } => "unknown",
        }
    }
}

/// Parses a plaintext WeChat message or event.
pub fn parse_message(xml: &str) -> Result<Message, Error> {
    from_fields(&parse_fields(xml)?)
}

/// Builds a [`Message`] from already-parsed fields.
pub fn from_fields(f: &Fields) -> Result<Message, Error> {
    let to_user_name = required(f, "ToUserName")?;
    let from_user_name = required(f, "FromUserName")?;
    let create_time = number::<u64>(f, "CreateTime")?.ok_or(Error::MissingField("CreateTime"))?;
    let msg_type = required(f, "MsgType")?;
    let msg_id = match number::<u64>(f, "MsgId")? {
        Some(id) => Some(id),
        None => number::<u64>(f, "MsgID")?,
    };
    // WeChat writes "event" and "text"; "Event" or " EVENT " must not turn an event into a transfer.
    let kind = if msg_type.trim().eq_ignore_ascii_case("text") {
        MessageKind::Text { content: text(f, "Content") }
    } else {
        other_kind(f, msg_type)?
    };
    Ok(Message {
        to_user_name: to_user_name.to_string(),
        from_user_name: from_user_name.to_string(),
        create_time,
        msg_id,
        kind,
    })
}

/// Every message type but text.
#[inline(never)]
fn other_kind(f: &Fields, msg_type: &str) -> Result<MessageKind, Error> {
    Ok(match msg_type.trim().to_ascii_lowercase().as_str() {
        "event" => MessageKind::Event(parse_event(f)?),
        "image" => MessageKind::Image { pic_url: text(f, "PicUrl"), media_id: text(f, "MediaId") },
        "voice" => MessageKind::Voice {
            media_id: text(f, "MediaId"),
            format: text(f, "Format"),
            recognition: f.get("Recognition").map(str::to_string),
        },
        "video" => MessageKind::Video { media_id: text(f, "MediaId"), thumb_media_id: text(f, "ThumbMediaId") },
        "shortvideo" => {
            MessageKind::ShortVideo { media_id: text(f, "MediaId"), thumb_media_id: text(f, "ThumbMediaId") }
        }
        "location" => MessageKind::Location {
            latitude: decimal(f, "Location_X")?,
            longitude: decimal(f, "Location_Y")?,
            scale: number(f, "Scale")?.unwrap_or_default(),
            label: text(f, "Label"),
        },
        "link" => {
            MessageKind::Link { title: text(f, "Title"), description: text(f, "Description"), url: text(f, "Url") }
        }
        "file" => MessageKind::File {
            title: text(f, "Title"),
            description: text(f, "Description"),
            file_key: text(f, "FileKey"),
            file_md5: text(f, "FileMd5"),
            file_total_len: number(f, "FileTotalLen")?,
        },
        "miniprogrampage" => MessageKind::MiniProgramPage {
            title: text(f, "Title"),
            app_id: text(f, "AppId"),
            page_path: text(f, "PagePath"),
            thumb_url: text(f, "ThumbUrl"),
            thumb_media_id: text(f, "ThumbMediaId"),
        },
        _ => MessageKind::Unknown { msg_type: msg_type.to_string() },
    })
}

#[inline(never)]
fn parse_event(f: &Fields) -> Result<Event, Error> {
    let event = required(f, "Event")?;
    let key = || text(f, "EventKey");
    let scan = |k: String| -> (String, String, String) {
        (k, text(f, "ScanCodeInfo/ScanType"), text(f, "ScanCodeInfo/ScanResult"))
    };
    let pics = || -> Result<SendPicsInfo, Error> {
        Ok(SendPicsInfo {
            count: number(f, "SendPicsInfo/Count")?.unwrap_or_default(),
            pic_md5_sums: f.get_all("SendPicsInfo/PicList/item/PicMd5Sum").map(str::to_string).collect(),
        })
    };
    Ok(match event.trim().to_ascii_lowercase().as_str() {
        "subscribe" => Event::Subscribe { event_key: non_empty(f, "EventKey"), ticket: non_empty(f, "Ticket") },
        "unsubscribe" => Event::Unsubscribe,
        "scan" => Event::Scan { event_key: key(), ticket: non_empty(f, "Ticket") },
        "location" => Event::Location {
            latitude: decimal(f, "Latitude")?,
            longitude: decimal(f, "Longitude")?,
            precision: decimal(f, "Precision")?,
        },
        "click" => Event::Click { event_key: key() },
        "view" => Event::View { url: key(), menu_id: non_empty(f, "MenuId") },
        "scancode_push" => {
            let (event_key, scan_type, scan_result) = scan(key());
            Event::ScancodePush { event_key, scan_type, scan_result }
        }
        "scancode_waitmsg" => {
            let (event_key, scan_type, scan_result) = scan(key());
            Event::ScancodeWaitmsg { event_key, scan_type, scan_result }
        }
        "pic_sysphoto" => Event::PicSysphoto { event_key: key(), pics: pics()? },
        "pic_photo_or_album" => Event::PicPhotoOrAlbum { event_key: key(), pics: pics()? },
        "pic_weixin" => Event::PicWeixin { event_key: key(), pics: pics()? },
        "location_select" => Event::LocationSelect {
            event_key: key(),
            location: SendLocationInfo {
                latitude: decimal(f, "SendLocationInfo/Location_X")?,
                longitude: decimal(f, "SendLocationInfo/Location_Y")?,
                scale: number(f, "SendLocationInfo/Scale")?.unwrap_or_default(),
                label: text(f, "SendLocationInfo/Label"),
                poiname: text(f, "SendLocationInfo/Poiname"),
            },
        },
        "view_miniprogram" => Event::ViewMiniprogram { page_path: key(), menu_id: non_empty(f, "MenuId") },
        "templatesendjobfinish" => Event::TemplateSendJobFinish { status: text(f, "Status") },
        "masssendjobfinish" => Event::MassSendJobFinish {
            status: text(f, "Status"),
            total_count: number(f, "TotalCount")?.unwrap_or_default(),
            filter_count: number(f, "FilterCount")?.unwrap_or_default(),
            sent_count: number(f, "SentCount")?.unwrap_or_default(),
            error_count: number(f, "ErrorCount")?.unwrap_or_default(),
        },
        "kf_create_session" => Event::KfCreateSession { kf_account: text(f, "KfAccount") },
        "kf_close_session" => Event::KfCloseSession { kf_account: text(f, "KfAccount") },
        "kf_switch_session" => {
            Event::KfSwitchSession { from_kf_account: text(f, "FromKfAccount"), to_kf_account: text(f, "ToKfAccount") }
        }
        _ => Event::Unknown { event: event.to_string() },
    })
}

fn required<'f>(f: &'f Fields, name: &'static str) -> Result<&'f str, Error> {
    match f.get(name) {
        Some(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(Error::MissingField(name)),
    }
}

fn text(f: &Fields, name: &str) -> String {
    f.get(name).unwrap_or_default().to_string()
}

fn non_empty(f: &Fields, name: &str) -> Option<String> {
    f.get(name).filter(|v| !v.is_empty()).map(str::to_string)
}

/// A decimal number as WeChat wrote it (coordinates, precision): `-?digits[.digits]`, kept as
/// text so nothing is lost to rounding; [`Decimal::value`] reads it as an `f64`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decimal(String);

impl Decimal {
    /// `s` when it is a decimal number.
    pub fn parse(s: &str) -> Option<Decimal> {
        let digits = s.strip_prefix('-').unwrap_or(s);
        let (int, frac) = digits.split_once('.').unwrap_or((digits, "0"));
        let all_digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        (all_digits(int) && all_digits(frac)).then(|| Decimal(s.to_string()))
    }

    /// The number as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The number as an `f64` (0 when absent).
    pub fn value(&self) -> f64 {
        self.0.parse().unwrap_or_default()
    }
}

/// A decimal field: empty when absent, an error when present but not a decimal number.
fn decimal(f: &Fields, name: &'static str) -> Result<Decimal, Error> {
    match f.get(name).map(str::trim) {
        None | Some("") => Ok(Decimal::default()),
        Some(v) => Decimal::parse(v).ok_or(Error::InvalidField(name)),
    }
}

/// A number field: `Ok(None)` when absent or empty, an error when present but not a number.
fn number<T: std::str::FromStr>(f: &Fields, name: &'static str) -> Result<Option<T>, Error> {
    match f.get(name).map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| Error::InvalidField(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(body: &str) -> String {
        format!(
            "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[o1]]></FromUserName>\
             <CreateTime>1700000000</CreateTime>{body}</xml>"
        )
    }

    #[test]
    fn parse_message_rejects_missing_required_fields() {
        let no_type = msg("<Content>x</Content>");
        assert_eq!(parse_message(&no_type), Err(Error::MissingField("MsgType")));
        let no_from = "<xml><ToUserName>a</ToUserName><CreateTime>1</CreateTime><MsgType>text</MsgType></xml>";
        assert_eq!(parse_message(no_from), Err(Error::MissingField("FromUserName")));
        let no_event = msg("<MsgType>event</MsgType>");
        assert_eq!(parse_message(&no_event), Err(Error::MissingField("Event")));
    }

    #[test]
    fn parse_message_rejects_non_numeric_and_overflowing_numbers() {
        let cases = [
            ("<CreateTime>soon</CreateTime>", "CreateTime"),
            ("<CreateTime>99999999999999999999999</CreateTime>", "CreateTime"),
            ("<CreateTime>-1</CreateTime>", "CreateTime"),
        ];
        for (ct, field) in cases {
            let xml = format!(
                "<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName>{ct}<MsgType>text</MsgType></xml>"
            );
            assert_eq!(parse_message(&xml), Err(Error::InvalidField(field)), "{ct}");
        }
        for id in ["abc", "18446744073709551616", "1.5"] {
            let xml = msg(&format!("<MsgType>text</MsgType><MsgId>{id}</MsgId>"));
            assert_eq!(parse_message(&xml), Err(Error::InvalidField("MsgId")), "{id}");
        }
        for bad in ["north", "1.", ".5", "1e5", "--1", "1.2.3", "NaN", "inf"] {
            let bad_lat = msg(&format!("<MsgType>location</MsgType><Location_X>{bad}</Location_X>"));
            assert_eq!(parse_message(&bad_lat), Err(Error::InvalidField("Location_X")), "{bad}");
        }
        let ok = parse_message(&msg("<MsgType>location</MsgType><Location_X>-23.134521</Location_X>")).unwrap();
        let MessageKind::Location { latitude, longitude, .. } = ok.kind else { panic!() };
        assert_eq!((latitude.as_str(), latitude.value(), longitude.as_str()), ("-23.134521", -23.134521, ""));
    }

    #[test]
    fn unknown_types_parse_and_events_are_not_user_messages() {
        let m = parse_message(&msg("<MsgType>hologram</MsgType>")).unwrap();
        assert_eq!(m.kind, MessageKind::Unknown { msg_type: "hologram".into() });
        assert!(m.is_user_message());
        let e = parse_message(&msg("<MsgType>event</MsgType><Event>teleport</Event>")).unwrap();
        assert_eq!(e.kind, MessageKind::Event(Event::Unknown { event: "teleport".into() }));
        assert!(!e.is_user_message());
        assert_eq!(e.label(), "event:unknown");
    }

    #[test]
    fn dedup_keys_tell_pushes_apart_and_match_retries() {
        let text = parse_message(&msg("<MsgType>text</MsgType><Content>x</Content><MsgId>7</MsgId>")).unwrap();
        assert_eq!(text.dedup_key(), "o1|1700000000|7");
        let click = parse_message(&msg("<MsgType>event</MsgType><Event>CLICK</Event><EventKey>K</EventKey>")).unwrap();
        assert_eq!(click.dedup_key(), "o1|1700000000|CLICK|K");
        let create =
            parse_message(&msg("<MsgType>event</MsgType><Event>kf_create_session</Event><KfAccount>a@b</KfAccount>"))
                .unwrap();
        let close =
            parse_message(&msg("<MsgType>event</MsgType><Event>kf_close_session</Event><KfAccount>a@b</KfAccount>"))
                .unwrap();
        assert_eq!(create.dedup_key(), "o1|1700000000|kf_create_session|a@b");
        assert_ne!(create.dedup_key(), close.dedup_key(), "two events of one second");
        assert_eq!(
            parse_message(&msg("<MsgType>event</MsgType><Event>subscribe</Event>")).unwrap().dedup_key(),
            "o1|1700000000|subscribe|"
        );
    }

    #[test]
    fn msg_type_and_event_match_whatever_their_case_and_surrounding_spaces() {
        for msg_type in ["Event", "EVENT", " event ", "\tevent\n"] {
            let e =
                parse_message(&msg(&format!("<MsgType><![CDATA[{msg_type}]]></MsgType><Event> SUBSCRIBE </Event>")))
                    .unwrap();
            assert_eq!(e.kind, MessageKind::Event(Event::Subscribe { event_key: None, ticket: None }), "{msg_type:?}");
            assert!(!e.is_user_message(), "{msg_type:?} must be acknowledged, never transferred");
        }
        let t = parse_message(&msg("<MsgType>TEXT</MsgType><Content>hi</Content>")).unwrap();
        assert_eq!(t.kind, MessageKind::Text { content: "hi".into() });
    }
}
