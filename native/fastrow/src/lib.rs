//! Accept-only fast path of vaxflow's event validation (docs/decisions/0014-compiled-fast-path.md).
//!
//! The Python validator (`schemas.validate`) is the reference: it decides every event and says
//! why one is refused. This module answers one narrower question much faster: "is this event
//! certainly valid, and what is its canonical file row?". Whenever it is not certain (an escape
//! or a non-ASCII byte in the JSON, a DELETE, a value that fails a rule, a date-time outside the
//! years whose London offsets it knows, anything unusual) it declines and the Python path runs,
//! so a refusal and its reasons always come from Python. The column table (kinds, caps,
//! mandatory flags, lookup tables) is handed in by Python from `schemas.fields`; only the
//! format algorithms live here, and tests compare the two paths on every corpus and property
//! the Python tests use.

use std::collections::HashMap;
use std::fmt;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};

/// Larger events are left to Python, which refuses them with a reason.
const MAX_EVENT_BYTES: usize = 64 * 1024;
// The event contract versions a record without extended attributes may name (schemas.event;
// version 2 only added `extended_attributes`, which this parser declines).
const SCHEMA_VERSIONS: [i64; 2] = [1, 2];
/// Years (of the UTC instant) whose Europe/London offsets follow the rule coded in `bst`:
/// the EU-harmonised changes, in force for the UK since 1996. Other years go to Python's zoneinfo.
const FIRST_YEAR: i64 = 1997;
const LAST_YEAR: i64 = 2099;

enum Kind {
    Text,
    /// FHIR `code` (schemas.checks._code): text with no two whitespace characters in a row.
    Code,
    Date,
    DateTime,
    NhsNumber,
    Snomed,
    Decimal,
    Lookup(HashMap<String, String>),
    Action,
}

struct Column {
    name: String,
    kind: Kind,
    max_len: usize,
    required: bool,
    not_future: bool,
}

/// The column table and lookup tables of one `schemas.fields` version, ready to check events.
#[pyclass(frozen, module = "vaxflow_fastrow")]
struct RowValidator {
    columns: Vec<Column>,
    index: HashMap<String, usize>,
    action: usize,
    actions: HashMap<String, String>,
}

/// An event's envelope strings and its record values in column order ("" when absent).
struct Parsed<'a> {
    vaccine_type: &'a str,
    sender_ods: &'a str,
    source_system: &'a str,
    values: Vec<&'a str>,
}

fn decline<E: de::Error>() -> E {
    E::custom("declined")
}

fn once<'a, E: de::Error>(slot: &mut Option<&'a str>, value: &'a str) -> Result<(), E> {
    if slot.is_some() {
        return Err(decline());
    }
    *slot = Some(value);
    Ok(())
}

struct EventSeed<'v>(&'v RowValidator);

impl<'de> DeserializeSeed<'de> for EventSeed<'_> {
    type Value = Parsed<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EventSeed<'_> {
    type Value = Parsed<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an event object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut vt, mut ods, mut source) = (None, None, None);
        let mut values: Option<Vec<&'de str>> = None;
        let (mut received, mut version) = (false, false);
        while let Some(key) = map.next_key::<&'de str>()? {
            match key {
                "vaccine_type" => once(&mut vt, map.next_value()?)?,
                "sender_ods" => once(&mut ods, map.next_value()?)?,
                "source_system" => once(&mut source, map.next_value()?)?,
                "record" => {
                    if values.is_some() {
                        return Err(decline());
                    }
                    values = Some(map.next_value_seed(RecordSeed(self.0))?);
                }
                "received_at" => {
                    let at: Option<&'de str> = map.next_value()?;
                    if received || !at.is_none_or(rfc3339_ok) {
                        return Err(decline());
                    }
                    received = true;
                }
                "schema_version" => {
                    let n: i64 = map.next_value()?;
                    if version || !SCHEMA_VERSIONS.contains(&n) {
                        return Err(decline());
                    }
                    version = true;
                }
                _ => return Err(decline()),
            }
        }
        match (vt, ods, source, values) {
            (Some(vaccine_type), Some(sender_ods), Some(source_system), Some(values)) => {
                Ok(Parsed {
                    vaccine_type,
                    sender_ods,
                    source_system,
                    values,
                })
            }
            _ => Err(decline()),
        }
    }
}

struct RecordSeed<'v>(&'v RowValidator);

impl<'de> DeserializeSeed<'de> for RecordSeed<'_> {
    type Value = Vec<&'de str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RecordSeed<'_> {
    type Value = Vec<&'de str>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a record object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut values = vec![""; self.0.columns.len()];
        let mut seen = vec![false; self.0.columns.len()];
        let mut next = 0;
        while let Some(key) = map.next_key::<&'de str>()? {
            // Producers mostly send the columns in file order: one comparison instead of a hash.
            let i = match self.0.columns.get(next) {
                Some(column) if column.name == key => next,
                _ => *self.0.index.get(key).ok_or_else(decline)?,
            };
            next = i + 1;
            if seen[i] {
                return Err(decline());
            }
            seen[i] = true;
            values[i] = map.next_value()?;
        }
        Ok(values)
    }
}

fn digits(s: &[u8]) -> Option<i64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0i64, |n, &c| n * 10 + i64::from(c - b'0')))
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// A real proleptic Gregorian date in Python's range (years 1 to 9999).
fn real_date(y: i64, m: i64, d: i64) -> bool {
    (1..=9999).contains(&y) && (1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m)
}

/// Days since 1970-01-01 (Howard Hinnant's days_from_civil).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// 01:00 UTC on the last Sunday of the month that ends on day `last`.
fn last_sunday_1am(y: i64, m: i64, last: i64) -> i64 {
    let days = days_from_civil(y, m, last);
    let sunday_based = (days + 4).rem_euclid(7); // 1970-01-01 was a Thursday
    (days - sunday_based) * 86_400 + 3_600
}

/// Whether London keeps British Summer Time at `utc` (epoch seconds), or None for a year
/// outside FIRST_YEAR..=LAST_YEAR.
fn bst(utc: i64) -> Option<bool> {
    let (y, _, _) = civil_from_days(utc.div_euclid(86_400));
    if !(FIRST_YEAR..=LAST_YEAR).contains(&y) {
        return None;
    }
    Some(last_sunday_1am(y, 3, 31) <= utc && utc < last_sunday_1am(y, 10, 31))
}

/// `YYYYMMDD` for YYYYMMDD or YYYY-MM-DD naming a real date (schemas.dates.canonical_date).
fn canonical_date(v: &str) -> Option<String> {
    let b = v.as_bytes();
    let (y, m, d) = match b.len() {
        8 => (&b[0..4], &b[4..6], &b[6..8]),
        10 if b[4] == b'-' && b[7] == b'-' => (&b[0..4], &b[5..7], &b[8..10]),
        _ => return None,
    };
    if !real_date(digits(y)?, digits(m)?, digits(d)?) {
        return None;
    }
    let mut out = String::with_capacity(8);
    for part in [y, m, d] {
        out.push_str(std::str::from_utf8(part).ok()?);
    }
    Some(out)
}

/// (canonical spec form, epoch seconds) of a DATE_AND_TIME (schemas.dates.canonical_datetime),
/// for the spec form and ISO 8601 at UTC or +01:00 (with or without the offset's colon and up to
/// six fraction digits, which are dropped); None for everything else.
fn canonical_datetime(v: &str) -> Option<(String, i64)> {
    let b = v.as_bytes();
    let (date, hour, minute, second, plus_one) = match b.len() {
        15 | 17 if b[8] == b'T' => {
            let plus_one = match &b[15..] {
                b"" | b"00" => false,
                b"01" => true,
                _ => return None,
            };
            digits(&b[0..8])?;
            (
                (&b[0..4], &b[4..6], &b[6..8]),
                &b[9..11],
                &b[11..13],
                &b[13..15],
                plus_one,
            )
        }
        n if n >= 20
            && b[4] == b'-'
            && b[7] == b'-'
            && b[10] == b'T'
            && b[13] == b':'
            && b[16] == b':' =>
        {
            // One to six fraction digits (the receiver's %f), read and dropped.
            let mut zone = &b[19..];
            if zone.first() == Some(&b'.') {
                let len = zone[1..].iter().take_while(|c| c.is_ascii_digit()).count();
                if !(1..=6).contains(&len) {
                    return None;
                }
                zone = &zone[1 + len..];
            }
            let plus_one = match zone {
                b"Z" | b"+00:00" | b"-00:00" | b"+0000" | b"-0000" => false,
                b"+01:00" | b"+0100" => true,
                _ => return None,
            };
            (
                (&b[0..4], &b[5..7], &b[8..10]),
                &b[11..13],
                &b[14..16],
                &b[17..19],
                plus_one,
            )
        }
        _ => return None,
    };
    let (y, mo, d) = (digits(date.0)?, digits(date.1)?, digits(date.2)?);
    let (h, mi, s) = (digits(hour)?, digits(minute)?, digits(second)?);
    if hour.len() != 2 || minute.len() != 2 || second.len() != 2 || mi > 59 || s > 59 || h > 23 {
        return None;
    }
    if !real_date(y, mo, d) {
        return None;
    }
    let utc_hour =
        days_from_civil(y, mo, d) * 86_400 + h * 3_600 - if plus_one { 3_600 } else { 0 };
    let summer = bst(utc_hour)?;
    let local = utc_hour + if summer { 3_600 } else { 0 };
    let (ly, lm, ld) = civil_from_days(local.div_euclid(86_400));
    let lh = local.rem_euclid(86_400) / 3_600;
    let mut canonical = String::with_capacity(17);
    push_digits(&mut canonical, ly, 4);
    for (n, width) in [(lm, 2), (ld, 2)] {
        push_digits(&mut canonical, n, width);
    }
    canonical.push('T');
    for n in [lh, mi, s] {
        push_digits(&mut canonical, n, 2);
    }
    canonical.push_str(if summer { "01" } else { "00" });
    Some((canonical, utc_hour + mi * 60 + s))
}

/// `n` (0 <= n < 10^width) zero-padded to `width` digits.
fn push_digits(out: &mut String, n: i64, width: u32) {
    for k in (0..width).rev() {
        out.push(char::from(b'0' + (n / 10i64.pow(k) % 10) as u8));
    }
}

/// Two whitespace characters in a row, which the FHIR `code` pattern refuses.
fn whitespace_run(v: &str) -> bool {
    let mut previous = false;
    for c in v.chars() {
        let space = c.is_whitespace();
        if space && previous {
            return true;
        }
        previous = space;
    }
    false
}

fn nhs_number_ok(v: &str) -> bool {
    let b = v.as_bytes();
    if b.len() != 10 || !b.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let total: u32 = b[..9]
        .iter()
        .zip((2..=10u32).rev())
        .map(|(&c, w)| u32::from(c - b'0') * w)
        .sum();
    let check = match 11 - total % 11 {
        11 => 0,
        c => c,
    };
    check == u32::from(b[9] - b'0')
}

const VERHOEFF_D: [[u8; 10]; 10] = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
    [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
    [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
    [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
    [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
    [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
];
const VERHOEFF_P1: [u8; 10] = [1, 5, 7, 6, 2, 8, 3, 0, 9, 4];

fn snomed_ok(v: &str) -> bool {
    let b = v.as_bytes();
    if !(6..=18).contains(&b.len()) || b[0] == b'0' || !b.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let partition = &b[b.len() - 3..b.len() - 1];
    if partition != b"00" && partition != b"10" {
        return false;
    }
    let mut c = 0u8;
    for (i, &ch) in b.iter().rev().enumerate() {
        let mut digit = ch - b'0';
        for _ in 0..i % 8 {
            digit = VERHOEFF_P1[usize::from(digit)];
        }
        c = VERHOEFF_D[usize::from(c)][usize::from(digit)];
    }
    c == 0
}

/// A non-negative decimal without superfluous leading zeros (schemas.checks.canonical_decimal).
fn canonical_decimal(v: &str) -> Option<String> {
    if v.len() > 20 {
        return None;
    }
    let (whole, fraction) = match v.split_once('.') {
        Some((w, f)) if !f.is_empty() && f.bytes().all(|c| c.is_ascii_digit()) => (w, Some(f)),
        Some(_) => return None,
        None => (v, None),
    };
    if !whole.bytes().all(|c| c.is_ascii_digit()) || (whole.is_empty() && fraction.is_none()) {
        return None;
    }
    let whole = match whole.trim_start_matches('0') {
        "" => "0",
        w => w,
    };
    Some(match fraction {
        Some(f) => format!("{whole}.{f}"),
        None => whole.to_owned(),
    })
}

/// RFC 3339 with an offset and at most microseconds: a form msgspec's datetime decoder accepts.
fn rfc3339_ok(v: &str) -> bool {
    let b = v.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return false;
    }
    let fields = [
        &b[0..4],
        &b[5..7],
        &b[8..10],
        &b[11..13],
        &b[14..16],
        &b[17..19],
    ];
    let Some(n) = fields
        .iter()
        .map(|f| digits(f))
        .collect::<Option<Vec<i64>>>()
    else {
        return false;
    };
    if !real_date(n[0], n[1], n[2]) || n[3] > 23 || n[4] > 59 || n[5] > 59 {
        return false;
    }
    let mut rest = &b[19..];
    if rest.first() == Some(&b'.') {
        let len = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=6).contains(&len) {
            return false;
        }
        rest = &rest[1 + len..];
    }
    match rest {
        b"Z" => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => match (digits(&[*h1, *h2]), digits(&[*m1, *m2])) {
            (Some(h), Some(m)) => h <= 23 && m <= 59,
            _ => false,
        },
        _ => false,
    }
}

impl RowValidator {
    /// The event's envelope, canonical action and canonical row, or None to let Python decide.
    fn accept<'a>(
        &self,
        raw: &'a [u8],
        now_epoch: f64,
        today: &str,
    ) -> Option<(Parsed<'a>, String, Vec<u8>)> {
        // Only JSON without escapes: then a decoded value is its bytes in the event, and JSON's own
        // ban on raw control characters leaves DEL, C1 and the line separators to look for.
        if raw.len() > MAX_EVENT_BYTES || raw.contains(&b'\\') || raw.contains(&0x7f) {
            return None;
        }
        let text = std::str::from_utf8(raw).ok()?; // once, so the parser need not check each string
        if !raw.is_ascii()
            && text
                .chars()
                .any(|c| ('\u{80}'..='\u{9f}').contains(&c) || c == '\u{2028}' || c == '\u{2029}')
        {
            return None;
        }
        let mut de = serde_json::Deserializer::from_str(text);
        let parsed = EventSeed(self).deserialize(&mut de).ok()?;
        de.end().ok()?;
        let action = self.actions.get(parsed.values[self.action])?;
        if action == "DELETE" {
            return None; // rare; the receiver checks only its identifiers, Python handles it
        }
        let mut row = Vec::with_capacity(raw.len());
        for (i, (column, &value)) in self.columns.iter().zip(&parsed.values).enumerate() {
            row.extend_from_slice(if i == 0 { b"\"" } else { b"\"|\"" });
            if value.is_empty() {
                if column.required {
                    return None;
                }
                continue;
            }
            let canonical: Option<String> = match &column.kind {
                Kind::Text | Kind::Code => {
                    // Python counts code points and strips Unicode whitespace; for the characters
                    // that can get here (no controls) char::is_whitespace is the same set, and
                    // also the set of Python's \s that the FHIR code pattern uses.
                    let long = if value.is_ascii() {
                        value.len() > column.max_len
                    } else {
                        value.chars().count() > column.max_len
                    };
                    let edge = |c: Option<char>| c.is_some_and(char::is_whitespace);
                    if long || edge(value.chars().next()) || edge(value.chars().next_back()) {
                        return None;
                    }
                    if matches!(column.kind, Kind::Code) && whitespace_run(value) {
                        return None;
                    }
                    None
                }
                Kind::Action => Some(action.clone()),
                Kind::Date => {
                    let date = canonical_date(value)?;
                    if date.starts_with('0') {
                        return None; // a year before 1000: the receiver cannot read it (Python says why)
                    }
                    if column.not_future && date.as_str() > today {
                        return None;
                    }
                    Some(date)
                }
                Kind::DateTime => {
                    let (canonical, epoch) = canonical_datetime(value)?;
                    if column.not_future && epoch as f64 > now_epoch {
                        return None;
                    }
                    Some(canonical)
                }
                Kind::NhsNumber => nhs_number_ok(value).then_some(None)?,
                Kind::Snomed => snomed_ok(value).then_some(None)?,
                Kind::Decimal => Some(canonical_decimal(value)?),
                Kind::Lookup(table) => Some(table.get(value)?.clone()),
            };
            let text = canonical.as_deref().unwrap_or(value).as_bytes();
            if text.contains(&b'"') {
                for &c in text {
                    row.extend_from_slice(if c == b'"' {
                        b"\"\""
                    } else {
                        std::slice::from_ref(&c)
                    });
                }
            } else {
                row.extend_from_slice(text);
            }
        }
        row.push(b'"');
        Some((parsed, action.clone(), row))
    }
}

#[pymethods]
impl RowValidator {
    /// `columns`: (name, kind, max length, mandatory for NEW/UPDATE, not in the future) in file
    /// order; `tables`: spelling -> canonical value for the lookup kinds and for "action_flag".
    #[new]
    fn new(
        columns: Vec<(String, String, usize, bool, bool)>,
        tables: HashMap<String, HashMap<String, String>>,
    ) -> PyResult<Self> {
        let mut built = Vec::with_capacity(columns.len());
        let mut index = HashMap::new();
        let mut action = None;
        for (i, (name, kind, max_len, required, not_future)) in columns.into_iter().enumerate() {
            let kind = match kind.as_str() {
                "text" => Kind::Text,
                "code" => Kind::Code,
                "date" => Kind::Date,
                "datetime" => Kind::DateTime,
                "nhs_number" => Kind::NhsNumber,
                "snomed" => Kind::Snomed,
                "decimal" => Kind::Decimal,
                "action_flag" => {
                    action = Some(i);
                    Kind::Action
                }
                other => match tables.get(other) {
                    Some(table) => Kind::Lookup(table.clone()),
                    None => {
                        return Err(PyValueError::new_err(format!(
                            "no fast check for kind {other}"
                        )))
                    }
                },
            };
            index.insert(name.clone(), i);
            built.push(Column {
                name,
                kind,
                max_len,
                required,
                not_future,
            });
        }
        let action = action.ok_or_else(|| PyValueError::new_err("no action_flag column"))?;
        let actions = tables
            .get("action_flag")
            .cloned()
            .ok_or_else(|| PyValueError::new_err("no action_flag table"))?;
        Ok(RowValidator {
            columns: built,
            index,
            action,
            actions,
        })
    }

    /// (vaccine_type, sender_ods, source_system, canonical action, row bytes) as the producer
    /// sent the envelope, or None when Python must decide. The envelope's permissions are
    /// checked by the caller, which caches them per sender.
    fn row<'py>(
        &self,
        py: Python<'py>,
        raw: &[u8],
        now_epoch: f64,
        today: &str,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let Some((parsed, action, row)) = self.accept(raw, now_epoch, today) else {
            return Ok(None);
        };
        let items: [PyObject; 5] = [
            parsed.vaccine_type.into_pyobject(py)?.into_any().unbind(),
            parsed.sender_ods.into_pyobject(py)?.into_any().unbind(),
            parsed.source_system.into_pyobject(py)?.into_any().unbind(),
            action.into_pyobject(py)?.into_any().unbind(),
            PyBytes::new(py, &row).into_any().unbind(),
        ];
        Ok(Some(PyTuple::new(py, items)?))
    }
}

#[pymodule]
fn vaxflow_fastrow(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<RowValidator>()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        for z in [-719_468, -1, 0, 1, 10_957, 19_000, 47_481, 2_932_896] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
    }

    #[test]
    fn summer_time_2024() {
        // 2024: BST from 31 March 01:00 UTC to 27 October 01:00 UTC
        let start = days_from_civil(2024, 3, 31) * 86_400 + 3_600;
        let end = days_from_civil(2024, 10, 27) * 86_400 + 3_600;
        assert_eq!(bst(start - 1), Some(false));
        assert_eq!(bst(start), Some(true));
        assert_eq!(bst(end - 1), Some(true));
        assert_eq!(bst(end), Some(false));
        assert_eq!(bst(days_from_civil(1990, 6, 1) * 86_400), None);
    }

    #[test]
    fn formats() {
        assert_eq!(canonical_date("2024-02-29").as_deref(), Some("20240229"));
        assert_eq!(canonical_date("20230229"), None);
        assert_eq!(canonical_decimal(".5").as_deref(), Some("0.5"));
        assert_eq!(canonical_decimal("007"), Some("7".to_owned()));
        assert_eq!(canonical_decimal("5."), None);
        assert!(
            whitespace_run("a  b")
                && whitespace_run("a\u{a0} b")
                && whitespace_run("a\u{3000}\u{3000}b")
        );
        assert!(!whitespace_run("a b") && !whitespace_run("a\u{a0}b") && !whitespace_run("ab"));
        assert!(nhs_number_ok("9434765919"));
        assert!(!nhs_number_ok("9434765918"));
        assert!(snomed_ok("39114911000001105"));
        assert_eq!(
            canonical_datetime("2024-06-10T18:33:25.123+0000"),
            canonical_datetime("2024-06-10T18:33:25Z")
        );
        assert_eq!(
            canonical_datetime("2024-06-10T18:33:25.999999+0100").map(|c| c.0),
            Some("20240610T18332501".to_owned())
        );
        assert_eq!(
            canonical_datetime("2024-06-10T18:33:25.1234567+00:00"),
            None
        );
        assert_eq!(canonical_datetime("2024-06-10T18:33:25.+00:00"), None);
        assert!(rfc3339_ok("2024-06-01T10:00:00.123+01:00"));
        assert!(!rfc3339_ok("2024-06-01T10:00:00"));
    }
}
