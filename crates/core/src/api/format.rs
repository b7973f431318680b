//! File formats an upload may be, told from the file's own bytes (a declared type is only
//! checked against them). Magic numbers alone are not enough where they are short: text that
//! starts with `BM` is not a bitmap, nor is text after the two bytes `FF FB` an MP3. So a
//! bitmap's header fields and an MP3's frame headers (or its ID3 tag) are read and checked.

/// A file format WeChat accepts for some upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jpeg,
    Png,
    Gif,
    Bmp,
    Amr,
    Mp3,
    Mp4,
}

impl Format {
    /// The MIME type WeChat receives for the file part.
    pub fn mime(self) -> &'static str {
        match self {
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
            Format::Gif => "image/gif",
            Format::Bmp => "image/bmp",
            Format::Amr => "audio/amr",
            Format::Mp3 => "audio/mpeg",
            Format::Mp4 => "video/mp4",
        }
    }

    /// The file name's extension (WeChat reads the format from it).
    pub fn extension(self) -> &'static str {
        match self {
            Format::Jpeg => "jpg",
            Format::Png => "png",
            Format::Gif => "gif",
            Format::Bmp => "bmp",
            Format::Amr => "amr",
            Format::Mp3 => "mp3",
            Format::Mp4 => "mp4",
        }
    }

    /// The format `bytes` are, if one of these.
    pub fn sniff(bytes: &[u8]) -> Option<Format> {
        let starts = |magic: &[u8]| bytes.starts_with(magic);
        if starts(&[0xFF, 0xD8, 0xFF]) {
            Some(Format::Jpeg)
        } else if starts(b"\x89PNG\r\n\x1a\n") {
            Some(Format::Png)
        } else if starts(b"GIF87a") || starts(b"GIF89a") {
            Some(Format::Gif)
        } else if is_bmp(bytes) {
            Some(Format::Bmp)
        } else if starts(b"#!AMR\n") {
            Some(Format::Amr)
        } else if is_mp3(bytes) {
            Some(Format::Mp3)
        } else if bytes.get(4..8) == Some(b"ftyp") {
            Some(Format::Mp4)
        } else {
            None
        }
    }

    /// Whether a declared `Content-Type` (parameters ignored) names this format.
    pub(crate) fn is_named_by(self, declared: &str) -> bool {
        let essence = declared.split(';').next().unwrap_or_default().trim();
        let aliases: &[&str] = match self {
            Format::Jpeg => &["image/jpeg", "image/jpg", "image/pjpeg"],
            Format::Png => &["image/png"],
            Format::Gif => &["image/gif"],
            Format::Bmp => &["image/bmp", "image/x-bmp", "image/x-ms-bmp"],
            Format::Amr => &["audio/amr", "audio/amr-nb"],
            Format::Mp3 => &["audio/mpeg", "audio/mp3"],
            Format::Mp4 => &["video/mp4"],
        };
        aliases.iter().any(|a| essence.eq_ignore_ascii_case(a))
    }
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// A Windows bitmap: the 14-byte file header (`BM`, file size, two reserved words, where the
/// pixels start) and the DIB header after it: its size one of the known versions (12 for OS/2's
/// BITMAPCOREHEADER, 40 for BITMAPINFOHEADER ... 124 for BITMAPV5HEADER), one colour plane,
/// a bit depth a bitmap can have, and the pixels starting after both headers.
fn is_bmp(bytes: &[u8]) -> bool {
    const FILE_HEADER: u32 = 14;
    let check = || -> Option<bool> {
        if bytes.get(..2)? != b"BM" {
            return Some(false);
        }
        let pixels_at = u32_at(bytes, 10)?;
        let dib_size = u32_at(bytes, 14)?;
        // Where the planes and the bit depth are: 16-bit fields in the core header, after
        // 32-bit width and height in the others.
        let planes_at = match dib_size {
            12 => 22,
            40 | 52 | 56 | 64 | 108 | 124 => 26,
            _ => return Some(false),
        };
        let planes = u16_at(bytes, planes_at)?;
        let depth = u16_at(bytes, planes_at + 2)?;
        Some(planes == 1 && matches!(depth, 1 | 2 | 4 | 8 | 16 | 24 | 32) && pixels_at >= FILE_HEADER + dib_size)
    };
    check().unwrap_or(false)
}

/// An MPEG audio Layer III stream: an ID3v2 tag (its header: version 2 to 4, a size in 7-bit
/// bytes) or none, then a whole frame, and where it ends the next frame header or the end of the
/// file. Encoders may leave padding after the tag: the first frame is looked for in the next
/// [`MP3_SEARCH_BYTES`]. Text after two lucky bytes fails the frame header's reserved values or,
/// at the latest, has no second frame where the first one ends.
fn is_mp3(bytes: &[u8]) -> bool {
    let (audio, search) = match bytes.get(..3) {
        Some(b"ID3") => match id3_length(bytes).and_then(|tag| bytes.get(tag..)) {
            Some(audio) => (audio, MP3_SEARCH_BYTES),
            None => return false,
        },
        _ => (bytes, 0),
    };
    (0..=search.min(audio.len())).any(|at| audio.get(at..).is_some_and(starts_with_frames))
}

/// How far after an ID3 tag the first frame may start.
const MP3_SEARCH_BYTES: usize = 4096;

/// A whole frame at the start of `audio`, followed by another frame or by the end.
fn starts_with_frames(audio: &[u8]) -> bool {
    let Some(first) = frame_length(audio) else { return false };
    match audio.get(first..) {
        // Not even one whole frame: not audio.
        None => false,
        Some([]) => true,
        Some(next) => frame_length(next).is_some(),
    }
}

/// The length of an ID3v2 tag from its 10-byte header: `ID3`, the major version (2, 3 or 4)
/// and revision (never 0xFF), flags, then the size in four bytes of 7 bits; a footer (flag 0x10
/// in version 4) adds 10 bytes.
fn id3_length(bytes: &[u8]) -> Option<usize> {
    let header = bytes.get(..10)?;
    let (version, flags, size) = match header {
        [b'I', b'D', b'3', major @ 2..=4, revision, flags, size @ ..] if *revision != 0xFF => (*major, *flags, size),
        _ => return None,
    };
    if size.iter().any(|b| b & 0x80 != 0) {
        return None;
    }
    let size = size.iter().fold(0usize, |n, b| (n << 7) | usize::from(*b));
    let footer = if version == 4 && flags & 0x10 != 0 { 10 } else { 0 };
    Some(10 + size + footer)
}

/// The length in bytes of the Layer III frame whose 4-byte header starts `bytes`: 11 sync bits,
/// a version (MPEG 1, 2 or 2.5; not the reserved one), layer III, a bitrate index that names a
/// bitrate (not "free", not the forbidden 15), a sample rate index that is not reserved, and an
/// emphasis that is not reserved.
fn frame_length(bytes: &[u8]) -> Option<usize> {
    let &[0xFF, b1, b2, b3, ..] = bytes else { return None };
    if b1 & 0xE0 != 0xE0 || b3 & 0x03 == 0x02 {
        return None;
    }
    // Version bits: 00 MPEG 2.5, 01 reserved, 10 MPEG 2, 11 MPEG 1. Layer bits 01: layer III.
    let version = (b1 >> 3) & 0x03;
    if version == 0b01 || (b1 >> 1) & 0x03 != 0b01 {
        return None;
    }
    const MPEG1_KBPS: [usize; 15] = [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320];
    const MPEG2_KBPS: [usize; 15] = [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160];
    let (kbps, rates, samples_per_byte) = match version {
        0b11 => (&MPEG1_KBPS, [44_100, 48_000, 32_000], 144),
        0b10 => (&MPEG2_KBPS, [22_050, 24_000, 16_000], 72),
        _ => (&MPEG2_KBPS, [11_025, 12_000, 8_000], 72),
    };
    let kbps = *kbps.get(usize::from(b2 >> 4)).filter(|k| **k != 0)?;
    let rate: usize = *rates.get(usize::from((b2 >> 2) & 0x03))?;
    let padding = usize::from((b2 >> 1) & 0x01);
    Some(samples_per_byte * kbps * 1000 / rate + padding)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bitmap's headers: BITMAPINFOHEADER (40 bytes), 1×1, 24 bits, pixels at 54.
    fn bmp() -> Vec<u8> {
        let mut b = b"BM".to_vec();
        b.extend(58u32.to_le_bytes()); // file size
        b.extend([0; 4]); // reserved
        b.extend(54u32.to_le_bytes()); // pixels at
        b.extend(40u32.to_le_bytes()); // DIB header size
        b.extend(1i32.to_le_bytes()); // width
        b.extend(1i32.to_le_bytes()); // height
        b.extend(1u16.to_le_bytes()); // planes
        b.extend(24u16.to_le_bytes()); // bits per pixel
        b.resize(58, 0);
        b
    }

    /// An OS/2 bitmap: BITMAPCOREHEADER (12 bytes), 16-bit width and height, 8 bits.
    fn os2_bmp() -> Vec<u8> {
        let mut b = b"BM".to_vec();
        b.extend(30u32.to_le_bytes());
        b.extend([0; 4]);
        b.extend(26u32.to_le_bytes());
        b.extend(12u32.to_le_bytes());
        b.extend(1u16.to_le_bytes());
        b.extend(1u16.to_le_bytes());
        b.extend(1u16.to_le_bytes());
        b.extend(8u16.to_le_bytes());
        b.resize(30, 0);
        b
    }

    /// MPEG 1 layer III, 128 kbit/s, 44.1 kHz, no padding: 417-byte frames.
    const FRAME: [u8; 4] = [0xFF, 0xFB, 0x90, 0x64];

    fn frames(n: usize) -> Vec<u8> {
        let mut audio = Vec::new();
        for _ in 0..n {
            let start = audio.len();
            audio.extend(FRAME);
            audio.resize(start + 417, 0x55);
        }
        audio
    }

    fn id3(tag_size: u8, then: &[u8]) -> Vec<u8> {
        let mut b = vec![b'I', b'D', b'3', 4, 0, 0, 0, 0, 0, tag_size];
        b.resize(10 + usize::from(tag_size), 0);
        b.extend(then);
        b
    }

    fn with(mut bytes: Vec<u8>, at: usize, value: &[u8]) -> Vec<u8> {
        bytes.splice(at..at + value.len(), value.iter().copied());
        bytes
    }

    #[test]
    fn formats_are_recognised_by_their_headers() {
        let html = |head: &[u8]| [head, b"<html><body><script>alert(1)</script></body></html>".as_slice()].concat();
        let cases: Vec<(&str, Vec<u8>, Option<Format>)> = vec![
            ("jpeg", b"\xFF\xD8\xFF\xE0\0\x10JFIF\0".to_vec(), Some(Format::Jpeg)),
            ("png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec(), Some(Format::Png)),
            ("gif", b"GIF89a\x01\0".to_vec(), Some(Format::Gif)),
            ("bmp", bmp(), Some(Format::Bmp)),
            ("OS/2 bmp", os2_bmp(), Some(Format::Bmp)),
            ("BM alone", b"BM".to_vec(), None),
            ("HTML after BM", html(b"BM"), None),
            ("BM and 52 zero bytes", with(vec![0; 54], 0, b"BM"), None),
            ("bmp header size 41", with(bmp(), 14, &41u32.to_le_bytes()), None),
            ("bmp with 2 planes", with(bmp(), 26, &2u16.to_le_bytes()), None),
            ("bmp with 7 bits a pixel", with(bmp(), 28, &7u16.to_le_bytes()), None),
            ("bmp pixels inside its headers", with(bmp(), 10, &40u32.to_le_bytes()), None),
            ("bmp cut inside its headers", bmp().get(..27).unwrap().to_vec(), None),
            ("amr", b"#!AMR\n\x3c".to_vec(), Some(Format::Amr)),
            ("mp3 frames", frames(3), Some(Format::Mp3)),
            ("one mp3 frame", frames(1), Some(Format::Mp3)),
            ("an mp3 frame header alone", FRAME.to_vec(), None),
            ("an mp3 frame cut short", frames(1).get(..416).unwrap().to_vec(), None),
            ("mp3 after an ID3 tag", id3(20, &frames(2)), Some(Format::Mp3)),
            ("HTML after FF FB", html(&[0xFF, 0xFB]), None),
            ("HTML after an mp3 frame header", html(&FRAME), None),
            ("HTML after a whole mp3 frame", [frames(1), html(b"")].concat(), None),
            ("an ID3 tag then HTML", id3(20, &html(b"")), None),
            ("an ID3 tag and nothing after it", id3(20, b""), None),
            ("mp3 after an ID3 tag and padding", id3(20, &[vec![0; 300], frames(2)].concat()), Some(Format::Mp3)),
            ("an ID3 tag, 5 KB of padding, then frames", id3(20, &[vec![0; 5000], frames(2)].concat()), None),
            ("ID3 version 9", with(id3(20, &frames(2)), 3, &[9]), None),
            ("ID3 size with the high bit", with(id3(20, &frames(2)), 9, &[0x94]), None),
            ("ID3 then text", b"ID3 is a tag format".to_vec(), None),
            ("mpeg version reserved", with(frames(2), 1, &[0xEB]), None),
            ("layer II", with(frames(2), 1, &[0xFD]), None),
            ("free bitrate", with(frames(2), 2, &[0x00]), None),
            ("bitrate index 15", with(frames(2), 2, &[0xF0]), None),
            ("sample rate reserved", with(frames(2), 2, &[0x9C]), None),
            ("emphasis reserved", with(frames(2), 3, &[0x66]), None),
            ("mp4", b"\0\0\0\x20ftypisom".to_vec(), Some(Format::Mp4)),
            ("svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>".to_vec(), None),
            ("nothing", Vec::new(), None),
        ];
        for (name, bytes, expected) in cases {
            assert_eq!(Format::sniff(&bytes), expected, "{name}");
        }
    }

    #[test]
    fn mp3_frame_lengths_follow_version_bitrate_rate_and_padding() {
        // (header, length): MPEG 1 128k 44.1 kHz; padded; MPEG 2 64k 22.05 kHz; MPEG 2.5 8k 8 kHz.
        let cases: [([u8; 4], usize); 4] = [
            ([0xFF, 0xFB, 0x90, 0x64], 417),
            ([0xFF, 0xFB, 0x92, 0x64], 418),
            ([0xFF, 0xF3, 0x80, 0x64], 208),
            ([0xFF, 0xE3, 0x18, 0x64], 72),
        ];
        for (header, length) in cases {
            assert_eq!(frame_length(&header), Some(length), "{header:02X?}");
        }
    }
}
