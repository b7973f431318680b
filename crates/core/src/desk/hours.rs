//! Office hours, pure: a fixed UTC offset, calendar dates, `HH:MM-HH:MM` ranges, and whether a
//! moment is inside them. Dates are proleptic Gregorian, computed from days since 1970-01-01
//! (H. Hinnant's `civil_from_days`/`days_from_civil`); no time zone database is needed because
//! China (and every account this serves) uses one fixed offset with no daylight saving time.

/// A fixed offset from UTC, in minutes (`+08:00` is 480).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offset(pub i32);

impl Offset {
    /// China Standard Time, the default.
    pub const CHINA: Offset = Offset(480);

    /// `+HH:MM` or `-HH:MM`, at most 14 hours.
    pub fn parse(s: &str) -> Option<Offset> {
        let (sign, rest) = match s.as_bytes().first()? {
            b'+' => (1, s.get(1..)?),
            b'-' => (-1, s.get(1..)?),
            _ => return None,
        };
        let (h, m) = rest.split_once(':')?;
        let (h, m) = (two_digits(h)?, two_digits(m)?);
        if m >= 60 || h * 60 + m > 14 * 60 {
            return None;
        }
        Some(Offset(sign * i32::try_from(h * 60 + m).ok()?))
    }
}

fn two_digits(s: &str) -> Option<u32> {
    if s.len() != 2 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A calendar date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    pub year: i32,
    pub month: u32,
    pub day: u32,
}

impl Date {
    /// `YYYY-MM-DD`, a real date.
    pub fn parse(s: &str) -> Option<Date> {
        let mut parts = s.split('-');
        let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || y.len() != 4 || !y.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let date = Date { year: y.parse().ok()?, month: two_digits(m)?, day: two_digits(d)? };
        (date.month >= 1 && date.month <= 12 && date.day >= 1 && date.day <= days_in_month(date.year, date.month))
            .then_some(date)
    }

    /// The date `days` days after 1970-01-01.
    pub fn from_days(days: i64) -> Date {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        Date {
            year: i32::try_from(year).unwrap_or(i32::MAX),
            month: u32::try_from(month).unwrap_or(1),
            day: u32::try_from(day).unwrap_or(1),
        }
    }

    /// Days since 1970-01-01.
    pub fn days(&self) -> i64 {
        let y = i64::from(self.year) - i64::from(self.month <= 2);
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let m = i64::from(self.month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// 0 = Monday ... 6 = Sunday.
    pub fn weekday(&self) -> usize {
        // 1970-01-01 was a Thursday (3).
        usize::try_from((self.days() + 3).rem_euclid(7)).unwrap_or(0)
    }
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// Minutes since local midnight, `start` inclusive, `end` exclusive; `end` may be 1440 (24:00).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Range {
    pub start: u32,
    pub end: u32,
}

/// Why a range is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeError {
    /// Not `HH:MM-HH:MM` with real times (`24:00` only as an end).
    Syntax,
    /// The end is not after the start.
    Empty,
}

impl Range {
    pub fn parse(s: &str) -> Result<Range, RangeError> {
        let (a, b) = s.split_once('-').ok_or(RangeError::Syntax)?;
        let start = minutes(a).filter(|&m| m < 1440).ok_or(RangeError::Syntax)?;
        let end = minutes(b).ok_or(RangeError::Syntax)?;
        if end <= start {
            return Err(RangeError::Empty);
        }
        Ok(Range { start, end })
    }

    pub fn contains(&self, minute: u32) -> bool {
        self.start <= minute && minute < self.end
    }
}

/// `HH:MM` as minutes since midnight; `24:00` is 1440.
fn minutes(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    let (h, m) = (two_digits(h)?, two_digits(m)?);
    (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
}

/// Two ranges of `ranges` that overlap, by index (the later one second), if any. A day holds at
/// most [`MAX_RANGES_PER_DAY`] ranges: every pair is compared.
pub fn overlap(ranges: &[Range]) -> Option<(usize, usize)> {
    ranges
        .iter()
        .enumerate()
        .find_map(|(j, b)| ranges.iter().take(j).position(|a| a.start < b.end && b.start < a.end).map(|i| (i, j)))
}

/// Most ranges one day may hold.
pub const MAX_RANGES_PER_DAY: usize = 48;

/// Opening hours: a weekly schedule, closed dates (holidays) and open dates with their own
/// ranges (make-up working days), which win over both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hours {
    /// Monday first; a day without ranges is closed.
    pub weekly: [Vec<Range>; 7],
    pub closed_dates: Vec<Date>,
    pub open_dates: Vec<(Date, Vec<Range>)>,
}

/// The local date and minute of `now` (Unix seconds) at `offset`.
pub fn local(now: u64, offset: Offset) -> (Date, u32) {
    let local = i64::try_from(now).unwrap_or(i64::MAX).saturating_add(i64::from(offset.0) * 60);
    let days = local.div_euclid(86_400);
    let minute = u32::try_from(local.rem_euclid(86_400) / 60).unwrap_or(0);
    (Date::from_days(days), minute)
}

impl Hours {
    /// Whether `now` is inside the hours, at `offset`.
    pub fn is_open(&self, now: u64, offset: Offset) -> bool {
        let (date, minute) = local(now, offset);
        let ranges = match self.open_dates.iter().find(|(d, _)| *d == date) {
            Some((_, ranges)) => ranges,
            None if self.closed_dates.contains(&date) => return false,
            None => self.weekly.get(date.weekday()).map_or(&[][..], Vec::as_slice),
        };
        ranges.iter().any(|r| r.contains(minute))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix seconds of a local time at +08:00.
    fn at(date: &str, hh: u64, mm: u64) -> u64 {
        let d = Date::parse(date).unwrap();
        let days = u64::try_from(d.days()).unwrap();
        days * 86_400 + hh * 3600 + mm * 60 - 8 * 3600
    }

    #[test]
    fn dates_convert_both_ways_and_know_their_weekday() {
        let cases = [
            ("1970-01-01", 0, 3),
            ("2000-02-29", 11_016, 1),
            ("2026-10-01", 20_727, 3),
            ("2026-09-27", 20_723, 6),
            ("2024-12-31", 20_088, 1),
            ("1969-12-31", -1, 2),
        ];
        for (s, days, weekday) in cases {
            let d = Date::parse(s).unwrap();
            assert_eq!(d.days(), days, "{s}");
            assert_eq!(Date::from_days(days), d, "{s}");
            assert_eq!(d.weekday(), weekday, "{s}");
        }
        for day in -800_000..800_000 {
            assert_eq!(Date::from_days(day).days(), day);
        }
        for bad in [
            "2026-02-29",
            "2100-02-29",
            "2026-13-01",
            "2026-00-10",
            "2026-04-31",
            "26-01-01",
            "2026-1-01",
            "2026/01/01",
            "2026-01-01-01",
            "",
        ] {
            assert_eq!(Date::parse(bad), None, "{bad}");
        }
        assert!(Date::parse("2000-02-29").is_some() && Date::parse("2028-02-29").is_some());
    }

    #[test]
    fn offsets_and_ranges_parse_strictly() {
        assert_eq!(Offset::parse("+08:00"), Some(Offset(480)));
        assert_eq!(Offset::parse("-05:30"), Some(Offset(-330)));
        assert_eq!(Offset::parse("+14:00"), Some(Offset(840)));
        for bad in ["08:00", "+8:00", "+14:01", "+08:60", "+08", "Asia/Shanghai", ""] {
            assert_eq!(Offset::parse(bad), None, "{bad}");
        }
        assert_eq!(Range::parse("09:00-18:00"), Ok(Range { start: 540, end: 1080 }));
        assert_eq!(Range::parse("00:00-24:00"), Ok(Range { start: 0, end: 1440 }));
        for (bad, err) in [
            ("18:00-09:00", RangeError::Empty),
            ("09:00-09:00", RangeError::Empty),
            ("24:00-24:00", RangeError::Syntax),
            ("09:00-24:01", RangeError::Syntax),
            ("9:00-18:00", RangeError::Syntax),
            ("09:60-18:00", RangeError::Syntax),
            ("09:00", RangeError::Syntax),
            ("09:00 - 18:00", RangeError::Syntax),
        ] {
            assert_eq!(Range::parse(bad), Err(err), "{bad}");
        }
        let r = |s| Range::parse(s).unwrap();
        assert_eq!(overlap(&[r("09:00-12:00"), r("13:30-18:00")]), None);
        assert_eq!(overlap(&[r("13:30-18:00"), r("09:00-12:00"), r("11:59-12:30")]), Some((1, 2)));
        assert_eq!(overlap(&[r("09:00-18:00"), r("10:00-11:00")]), Some((0, 1)), "one inside another");
        assert_eq!(overlap(&[r("10:00-11:00"), r("09:00-18:00")]), Some((0, 1)));
        assert_eq!(overlap(&[r("09:00-12:00"), r("12:00-13:00")]), None, "touching is not overlapping");
    }

    #[test]
    fn is_open_at_the_boundaries() {
        let r = |s| Range::parse(s).unwrap();
        let mut weekly: [Vec<Range>; 7] = Default::default();
        weekly[0] = vec![r("09:00-12:00"), r("13:30-18:00")];
        weekly[4] = vec![r("22:00-24:00")];
        let hours = Hours {
            weekly,
            closed_dates: vec![Date::parse("2026-10-05").unwrap()],
            open_dates: vec![(Date::parse("2026-09-27").unwrap(), vec![r("09:00-18:00")])],
        };
        let tz = Offset::CHINA;
        let cases = [
            // 2026-09-28 is a Monday.
            (at("2026-09-28", 8, 59), false, "a minute before opening"),
            (at("2026-09-28", 9, 0), true, "the first minute"),
            (at("2026-09-28", 11, 59), true, "the last minute of the first range"),
            (at("2026-09-28", 12, 0), false, "the end is exclusive"),
            (at("2026-09-28", 13, 30), true, "the second range"),
            (at("2026-09-28", 17, 59), true, "the last minute"),
            (at("2026-09-28", 18, 0), false, "closing time"),
            (at("2026-09-29", 10, 0), false, "Tuesday has no ranges"),
            // Friday 2026-10-02 22:00 to midnight.
            (at("2026-10-02", 23, 59), true, "24:00 as an end includes 23:59"),
            (at("2026-10-03", 0, 0), false, "midnight belongs to the next day"),
            // Monday 2026-10-05 is a closed date.
            (at("2026-10-05", 10, 0), false, "a closed date that is a weekday"),
            // Sunday 2026-09-27 is an open date.
            (at("2026-09-27", 9, 0), true, "an open date on a Sunday"),
            (at("2026-09-27", 18, 0), false, "an open date's own ranges"),
        ];
        for (now, open, why) in cases {
            assert_eq!(hours.is_open(now, tz), open, "{why}");
        }
        // The offset moves the day: Monday 09:00 at +08:00 is Monday 01:00 UTC, and still
        // Sunday 20:00 at -05:00.
        let monday_9 = at("2026-09-28", 9, 0);
        assert!(hours.is_open(monday_9, tz));
        assert!(!hours.is_open(monday_9, Offset(-300)));
        assert_eq!(local(monday_9, Offset(-300)), (Date::parse("2026-09-27").unwrap(), 20 * 60));
        assert_eq!(local(monday_9, Offset(0)), (Date::parse("2026-09-28").unwrap(), 60));
    }
}
