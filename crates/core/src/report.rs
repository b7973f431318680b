//! `GET /api/stats?from&to&bucket=hour|day[&kf_account][&format=csv]`: service levels per hour or
//! per day, pure. The hourly rows the fold wrote ([`crate::stats`]) are summed into buckets in
//! the rules' timezone; what cannot be summed (distinct users, medians) is computed from the
//! rows' lists, so a day's or a range's figure is exact, not an average of hours.
//!
//! Each duration is `{"count", "median", "p90", "max"}` in seconds (nearest rank: the median of
//! 1, 2, 3, 4 is 2), each `null` without data. A figure that does not apply to one agent (pushes,
//! transfers, notices, ...) is `null` in `agents`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::desk::hours::{local, Offset};
use crate::error::Error;
use crate::http::query_param;
use crate::ledger::query_seconds;
use crate::stats::{Hour, Outcomes};

/// The widest span of an hourly report, and of a daily one.
pub const MAX_HOURLY_SECS: u64 = 92 * 86_400;
pub const MAX_DAILY_SECS: u64 = 400 * 86_400;
/// The span a report covers when `from` is not given: back from `to`.
pub const DEFAULT_SPAN_SECS: u64 = 7 * 86_400;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Hour,
    Day,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
}

/// A checked report query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub from: u64,
    pub to: u64,
    pub bucket: Bucket,
    pub kf_account: Option<String>,
    pub format: Format,
}

fn invalid(field: &str, reason: &'static str) -> Error {
    Error::InvalidRequest { field: field.to_string(), reason }
}

/// An agent's account as WeChat writes it (`kf2001@gh_0123456789ab`): 1 to 64 letters, digits,
/// `_`, `-`, `.` or `@`.
pub fn is_kf_account(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.@".contains(&b))
}

/// Reads the query string: `to` (default now) and `from` (default 7 days before `to`), Unix
/// seconds, `from` <= `to`; `bucket` `hour` (at most 92 days) or `day` (the default, at most 400
/// days); `kf_account` one agent's figures only; `format` `json` (the default) or `csv`.
pub fn query(raw: &str, now: u64) -> Result<Query, Error> {
    let to = query_seconds(raw, "to")?.unwrap_or(now);
    let from = query_seconds(raw, "from")?.unwrap_or_else(|| to.saturating_sub(DEFAULT_SPAN_SECS));
    let bucket = match query_param(raw, "bucket").as_deref() {
        None | Some("day") => Bucket::Day,
        Some("hour") => Bucket::Hour,
        Some(_) => return Err(invalid("bucket", "must be hour or day")),
    };
    if from > to {
        return Err(invalid("to", "must not be before from"));
    }
    match bucket {
        Bucket::Hour if to - from > MAX_HOURLY_SECS => {
            return Err(invalid("to", "must be at most 92 days after from by hour"))
        }
        Bucket::Day if to - from > MAX_DAILY_SECS => return Err(invalid("to", "must be at most 400 days after from")),
        _ => {}
    }
    let kf_account = query_param(raw, "kf_account");
    if kf_account.as_deref().is_some_and(|k| !is_kf_account(k)) {
        return Err(invalid("kf_account", "must be an agent's account like kf2001@gh_0123456789ab"));
    }
    let format = match query_param(raw, "format").as_deref() {
        None | Some("json") => Format::Json,
        Some("csv") => Format::Csv,
        Some(_) => return Err(invalid("format", "must be json or csv")),
    };
    Ok(Query { from, to, bucket, kf_account, format })
}

/// The buckets of a query: their starts (UTC, Unix seconds) and length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buckets {
    pub first: u64,
    pub len: u64,
    pub count: usize,
    offset: i64,
}

impl Buckets {
    /// The whole hours (UTC) or days (at `offset`) that hold `from` through `to`.
    pub fn new(query: &Query, offset: Offset) -> Buckets {
        let offset = i64::from(offset.0) * 60;
        let len = match query.bucket {
            Bucket::Hour => 3600,
            Bucket::Day => 86_400,
        };
        let mut b = Buckets { first: 0, len, count: 0, offset };
        b.first = b.start_of(query.from);
        b.count = usize::try_from((query.to.saturating_sub(b.first)) / len + 1).unwrap_or(usize::MAX);
        b
    }

    /// The start of the bucket holding `at`. A day starts at local midnight, or, at an offset
    /// that is not whole hours (+05:30), at the first whole UTC hour after it (00:30 local): the
    /// hourly rows are UTC hours, and a day holds 24 of them whole.
    fn start_of(&self, at: u64) -> u64 {
        match self.len {
            3600 => at - at % 3600,
            _ => {
                let start = day_start(at, self.offset).div_ceil(3600) * 3600;
                if at < start {
                    start.saturating_sub(86_400)
                } else {
                    start
                }
            }
        }
    }

    /// The bucket holding `at`, if the report covers it.
    fn index(&self, at: u64) -> Option<usize> {
        let i = usize::try_from(at.checked_sub(self.first)? / self.len).ok()?;
        (i < self.count).then_some(i)
    }

    fn start(&self, i: usize) -> u64 {
        self.first + self.len * i as u64
    }
}

/// The start of the local day (at `offset` seconds) holding `at`.
fn day_start(at: u64, offset: i64) -> u64 {
    let local = i64::try_from(at).unwrap_or(i64::MAX) + offset;
    u64::try_from(local - local.rem_euclid(86_400) - offset).unwrap_or(0)
}

/// From when the users still waiting may be episodes not decided yet (the report's
/// [`Context::waiting`]): those waiting less than `unanswered_after_secs`, or since today's
/// start at `offset`.
pub fn undecided_from(now: u64, offset: Offset, unanswered_after_secs: u64) -> u64 {
    now.saturating_sub(unanswered_after_secs).min(day_start(now, i64::from(offset.0) * 60))
}

/// One hourly row of the report's range: its hour, its agent (`""`: the account), its figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourRow {
    pub hour: u64,
    pub kf_account: String,
    pub figures: Hour,
}

/// What a report is computed from besides the rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub now: u64,
    pub offset: Offset,
    /// `stats.unanswered_after_secs`.
    pub unanswered_after_secs: u64,
    /// When each user still waiting started waiting (the episodes not decided yet).
    pub waiting: Vec<u64>,
    /// Whether the figures reach this request (else the ledger holds rows not folded yet: the
    /// next report or cron run adds them).
    pub up_to_date: bool,
}

/// A duration's spread, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Spread {
    pub count: usize,
    pub median: Option<u64>,
    pub p90: Option<u64>,
    pub max: Option<u64>,
}

/// The value at `p` (per cent) by nearest rank, of `sorted`.
fn rank(sorted: &[u64], p: usize) -> Option<u64> {
    let n = sorted.len();
    let r = (p * n).div_ceil(100).max(1);
    sorted.get(r - 1).copied()
}

impl Spread {
    fn of(mut values: Vec<u64>) -> Spread {
        values.sort_unstable();
        Spread { count: values.len(), median: rank(&values, 50), p90: rank(&values, 90), max: values.last().copied() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OutcomeCounts {
    pub sent: u64,
    pub skipped: u64,
    pub failed: u64,
}

impl From<Outcomes> for OutcomeCounts {
    fn from([sent, skipped, failed]: Outcomes) -> Self {
        OutcomeCounts { sent, skipped, failed }
    }
}

/// The figures of a bucket (or the totals), for the account or one agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Figures {
    pub pushes: Option<u64>,
    pub messages: Option<u64>,
    pub users: u64,
    pub users_transferred: Option<u64>,
    pub after_hours: Option<u64>,
    pub queue_wait_secs: Spread,
    pub first_response_secs: Spread,
    pub session_secs: Spread,
    pub sessions: u64,
    pub switches: u64,
    pub episodes: Option<u64>,
    pub unanswered: Option<u64>,
    pub never_answered: Option<u64>,
    pub notices: Option<OutcomeCounts>,
    pub alerts: Option<OutcomeCounts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agents: Option<BTreeMap<String, Figures>>,
}

/// A bucket's (or the range's) rows summed: the account's and each agent's.
#[derive(Debug, Default)]
struct Sum {
    account: Hour,
    agents: BTreeMap<String, Hour>,
    /// Starts of the episodes still waiting.
    waiting: Vec<u64>,
}

impl Sum {
    fn add(&mut self, row: HourRow) {
        let target =
            if row.kf_account.is_empty() { &mut self.account } else { self.agents.entry(row.kf_account).or_default() };
        target.merge(row.figures);
    }

    /// Adds another bucket's sum (the totals are the buckets' sums).
    fn absorb(&mut self, other: Sum) {
        self.account.merge(other.account);
        for (agent, hour) in other.agents {
            self.agents.entry(agent).or_default().merge(hour);
        }
        self.waiting.extend(other.waiting);
    }

    fn figures(&mut self, ctx: &Context) -> Figures {
        self.account.dedup();
        for hour in self.agents.values_mut() {
            hour.dedup();
        }
        let mut account = agent_figures(&self.account);
        let h = &self.account;
        let offset = i64::from(ctx.offset.0) * 60;
        let today = day_start(ctx.now, offset);
        let n = ctx.unanswered_after_secs;
        // Episodes picked up in time, or that day; those still waiting may yet be.
        let in_time = h.waits.iter().filter(|(_, wait)| *wait <= n).count() as u64;
        let that_day = h
            .waits
            .iter()
            .filter(|(start, wait)| start.saturating_add(*wait) < day_start(*start, offset) + 86_400)
            .count();
        let pending = self.waiting.iter().filter(|s| ctx.now.saturating_sub(**s) < n).count() as u64;
        let pending_today = self.waiting.iter().filter(|s| **s >= today).count() as u64;
        account.pushes = Some(h.pushes);
        account.messages = Some(h.messages);
        account.users_transferred = Some(h.transferred.len() as u64);
        account.after_hours = Some(h.after_hours);
        account.episodes = Some(h.episodes);
        account.unanswered = Some(h.episodes.saturating_sub(in_time + pending));
        account.never_answered = Some(h.episodes.saturating_sub(that_day as u64 + pending_today));
        account.notices = Some(h.notices.into());
        account.alerts = Some(h.alerts.into());
        account.agents = Some(self.agents.iter().map(|(k, h)| (k.clone(), agent_figures(h))).collect());
        account
    }
}

/// The figures that apply to one agent (the others `null`).
fn agent_figures(h: &Hour) -> Figures {
    Figures {
        pushes: None,
        messages: None,
        users: h.users.len() as u64,
        users_transferred: None,
        after_hours: None,
        queue_wait_secs: Spread::of(h.waits.iter().map(|(_, w)| *w).collect()),
        first_response_secs: Spread::of(h.first_responses.clone()),
        session_secs: Spread::of(h.session_secs.clone()),
        sessions: h.sessions,
        switches: h.switches,
        episodes: None,
        unanswered: None,
        never_answered: None,
        notices: None,
        alerts: None,
        agents: None,
    }
}

#[derive(Debug, Serialize)]
pub struct BucketFigures {
    pub start: u64,
    #[serde(flatten)]
    pub figures: Figures,
}

/// The report, as the JSON answers it.
#[derive(Debug, Serialize)]
pub struct Report {
    pub from: u64,
    pub to: u64,
    pub bucket: &'static str,
    pub timezone: String,
    pub unanswered_after_secs: u64,
    /// `false`: the ledger has rows the figures do not include yet (after a burst).
    pub up_to_date: bool,
    pub buckets: Vec<BucketFigures>,
    pub totals: Figures,
}

/// Computes the report of `query` from the hourly `rows` of its range.
pub fn report(query: &Query, rows: Vec<HourRow>, ctx: &Context) -> Report {
    let buckets = Buckets::new(query, ctx.offset);
    let mut sums: Vec<Sum> = (0..buckets.count).map(|_| Sum::default()).collect();
    let wanted = |kf: &str| kf.is_empty() || query.kf_account.as_deref().is_none_or(|k| k == kf);
    for row in rows.into_iter().filter(|r| wanted(&r.kf_account)) {
        if let Some(sum) = buckets.index(row.hour).and_then(|i| sums.get_mut(i)) {
            sum.add(row);
        }
    }
    for start in &ctx.waiting {
        if let Some(sum) = buckets.index(*start).and_then(|i| sums.get_mut(i)) {
            sum.waiting.push(*start);
        }
    }
    let mut total = Sum::default();
    let buckets = sums
        .into_iter()
        .enumerate()
        .map(|(i, mut sum)| {
            let figures = sum.figures(ctx);
            total.absorb(sum);
            BucketFigures { start: buckets.start(i), figures }
        })
        .collect();
    Report {
        from: query.from,
        to: query.to,
        bucket: match query.bucket {
            Bucket::Hour => "hour",
            Bucket::Day => "day",
        },
        timezone: timezone(ctx.offset),
        unanswered_after_secs: ctx.unanswered_after_secs,
        up_to_date: ctx.up_to_date,
        buckets,
        totals: total.figures(ctx),
    }
}

fn timezone(offset: Offset) -> String {
    let m = offset.0;
    format!("{}{:02}:{:02}", if m < 0 { '-' } else { '+' }, m.abs() / 60, m.abs() % 60)
}

/// `YYYY-MM-DD HH:MM` at `offset`.
fn local_time(at: u64, offset: Offset) -> String {
    let (date, minute) = local(at, offset);
    format!("{:04}-{:02}-{:02} {:02}:{:02}", date.year, date.month, date.day, minute / 60, minute % 60)
}

/// The CSV's columns, in Chinese for the operators who open it in Excel.
const CSV_HEADER: &[&str] = &[
    "时段开始",
    "客服账号",
    "推送数",
    "用户消息数",
    "用户数",
    "转人工用户数",
    "非工作时间消息数",
    "排队等待中位数(秒)",
    "排队等待P90(秒)",
    "排队等待最长(秒)",
    "首次响应中位数(秒)",
    "首次响应P90(秒)",
    "首次响应最长(秒)",
    "会话时长中位数(秒)",
    "会话时长P90(秒)",
    "会话时长最长(秒)",
    "会话数",
    "转接数",
    "排队次数",
    "未及时接待",
    "当天未接待",
    "通知已发",
    "通知跳过",
    "通知失败",
    "告警已发",
    "告警跳过",
    "告警失败",
];

fn cell(value: Option<u64>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

/// A CSV field: quoted when it holds a comma, a quote or a line break; and a leading `=`, `+`,
/// `-` or `@` made inert, so that a spreadsheet never reads an agent's name as a formula.
fn field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@']) { format!("'{text}") } else { text.to_string() };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

fn csv_row(out: &mut String, start: &str, agent: &str, f: &Figures) {
    let spread = |s: &Spread| [s.median, s.p90, s.max];
    let outcomes = |o: Option<OutcomeCounts>| match o {
        Some(o) => [Some(o.sent), Some(o.skipped), Some(o.failed)],
        None => [None; 3],
    };
    let mut cells = vec![
        field(start),
        field(agent),
        cell(f.pushes),
        cell(f.messages),
        f.users.to_string(),
        cell(f.users_transferred),
    ];
    cells.push(cell(f.after_hours));
    for s in [&f.queue_wait_secs, &f.first_response_secs, &f.session_secs] {
        cells.extend(spread(s).map(cell));
    }
    cells.extend([f.sessions.to_string(), f.switches.to_string(), cell(f.episodes), cell(f.unanswered)]);
    cells.push(cell(f.never_answered));
    cells.extend(outcomes(f.notices).map(cell));
    cells.extend(outcomes(f.alerts).map(cell));
    out.push_str(&cells.join(","));
    out.push_str("\r\n");
}

/// The report as CSV: UTF-8 with a byte-order mark (so that Excel reads the Chinese headers),
/// one row per bucket for the account (`全部`) and one per agent, then the totals (`合计`).
/// Times are local (`YYYY-MM-DD HH:MM` in the rules' timezone); a figure without data is empty.
pub fn csv(report: &Report, offset: Offset) -> Vec<u8> {
    let mut out = String::from("\u{feff}");
    out.push_str(&CSV_HEADER.join(","));
    out.push_str("\r\n");
    let rows = report
        .buckets
        .iter()
        .map(|b| (local_time(b.start, offset), &b.figures))
        .chain(std::iter::once(("合计".to_string(), &report.totals)));
    for (start, figures) in rows {
        csv_row(&mut out, &start, "全部", figures);
        for (agent, f) in figures.agents.iter().flatten() {
            csv_row(&mut out, &start, agent, f);
        }
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s = Spread::of(vec![4, 1, 3, 2]);
        assert_eq!((s.count, s.median, s.p90, s.max), (4, Some(2), Some(4), Some(4)));
        let s = Spread::of((1..=10).collect());
        assert_eq!((s.median, s.p90), (Some(5), Some(9)));
        assert_eq!(Spread::of(vec![7]), Spread { count: 1, median: Some(7), p90: Some(7), max: Some(7) });
        assert_eq!(Spread::of(Vec::new()), Spread { count: 0, median: None, p90: None, max: None });
    }

    #[test]
    fn days_start_at_local_midnight_on_either_side_of_utc() {
        // 2026-09-28 00:30 at +08:00 is 09-27 16:30Z: its day starts at 09-27 16:00Z.
        assert_eq!(day_start(1_790_524_800 + 1800, 480 * 60), 1_790_524_800);
        // 2026-09-27 20:00 at -05:00 (09-28 01:00Z): its day starts at 09-27 05:00Z.
        let at = 1_790_553_600 + 3600;
        assert_eq!(day_start(at, -300 * 60), 1_790_553_600 - 19 * 3600);
        assert_eq!(local_time(1_790_524_800, Offset(480)), "2026-09-28 00:00");
        assert_eq!(timezone(Offset(-330)), "-05:30");
    }

    #[test]
    fn at_an_offset_of_half_hours_a_day_is_24_whole_utc_hours_from_00_30() {
        // +05:30; 2026-09-28 00:00 local is 09-27 18:30Z.
        let midnight = 1_790_553_600 - 5 * 3600 - 1800;
        let q = |from: u64, to: u64| Query { from, to, bucket: Bucket::Day, kf_account: None, format: Format::Json };
        let b = Buckets::new(&q(midnight + 3600, midnight + 86_400 + 3600), Offset(330));
        // The day from 00:30 local (19:00Z), and the next one.
        assert_eq!((b.first, b.count), (midnight + 1800, 2));
        assert_eq!(local_time(b.first, Offset(330)), "2026-09-28 00:30");
        // 00:10 local belongs to the day before (which started at 00:30 the day before).
        let b = Buckets::new(&q(midnight + 600, midnight + 600), Offset(330));
        assert_eq!(b.first, midnight + 1800 - 86_400);
        // Every UTC hour row falls in exactly one day.
        let b = Buckets::new(&q(midnight, midnight + 3 * 86_400), Offset(330));
        let hours: Vec<Option<usize>> = (0..72).map(|h| b.index(midnight + 1800 + h * 3600)).collect();
        assert!(hours.iter().take(24).all(|i| *i == Some(1)) && hours.iter().skip(24).take(24).all(|i| *i == Some(2)));
    }

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(field("kf2001@gh_1"), "kf2001@gh_1");
        assert_eq!(field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(field("a,b"), "\"a,b\"");
    }
}
