//! [`Timestamp`]: the one representation of a point in time across the server.
//!
//! Times are stored and shown as RFC 3339 UTC with milliseconds (`2026-12-06T02:23:56.123Z`):
//! fixed width, so their text order is their time order, which lets the store compare and
//! index them as text. Every time the server makes comes from [`Timestamp::now`] or
//! [`Timestamp::parse`], so the format lives here and nowhere else.

use std::fmt;

use chrono::{DateTime, Utc};

/// The format every stored and printed time has.
const FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.3fZ";

/// A point in time, in its canonical text form.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Timestamp(String);

/// A time given by a person or a client that is not RFC 3339.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an RFC 3339 time (e.g. 2026-11-24T08:00:00Z)")]
pub struct BadTime(pub String);

impl Timestamp {
    /// The current time.
    pub fn now() -> Timestamp {
        Timestamp::from_utc(Utc::now())
    }

    /// Any RFC 3339 time (any offset), normalised to UTC and milliseconds.
    ///
    /// ```
    /// use mapwright::model::Timestamp;
    /// let t = Timestamp::parse("2026-11-24T09:00:00+01:00").unwrap();
    /// assert_eq!(t.as_str(), "2026-11-24T08:00:00.000Z");
    /// assert!(Timestamp::parse("yesterday").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Timestamp, BadTime> {
        DateTime::parse_from_rfc3339(text.trim()).map(|t| Timestamp::from_utc(t.with_timezone(&Utc))).map_err(|_| BadTime(text.to_string()))
    }

    /// A time the store wrote, taken as it is (the store only holds canonical times).
    pub fn from_stored(text: String) -> Timestamp {
        Timestamp(text)
    }

    fn from_utc(t: DateTime<Utc>) -> Timestamp {
        use chrono::{Datelike, Timelike};
        // `FORMAT` written out: every write stamps two or three times on the writer thread,
        // and chrono's format string is parsed again each time. Years outside 0..=9999 (never
        // made here) take the general path.
        if !(0..=9999).contains(&t.year()) {
            return Timestamp(t.format(FORMAT).to_string());
        }
        // A leap second (nanoseconds past 1e9) reads as second 60, as chrono writes it.
        let (leap, ns) = (t.nanosecond() / 1_000_000_000, t.nanosecond() % 1_000_000_000);
        let (sec, ms) = (t.second() + leap, ns / 1_000_000);
        Timestamp(format!("{:04}-{:02}-{:02}T{:02}:{:02}:{sec:02}.{ms:03}Z", t.year(), t.month(), t.day(), t.hour(), t.minute()))
    }

    fn to_utc(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.0).ok().map(|t| t.with_timezone(&Utc))
    }

    /// This time moved by `secs` seconds (negative: earlier). A time that cannot be read (it
    /// never happens for times made here) stays as it is.
    pub fn plus_secs(&self, secs: i64) -> Timestamp {
        match self.to_utc().and_then(|t| t.checked_add_signed(chrono::Duration::seconds(secs))) {
            Some(t) => Timestamp::from_utc(t),
            None => self.clone(),
        }
    }

    /// This time moved by `days` days.
    pub fn plus_days(&self, days: u32) -> Timestamp {
        self.plus_secs(i64::from(days) * 86_400)
    }

    /// How long ago this was (zero if it is in the future or cannot be read).
    pub fn elapsed(&self) -> std::time::Duration {
        self.to_utc().and_then(|t| (Utc::now() - t).to_std().ok()).unwrap_or_default()
    }

    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The canonical text, owned.
    pub fn into_string(self) -> String {
        self.0
    }

    /// The same time to the second, for people (`2026-11-24T08:00:00Z`).
    pub fn to_seconds(&self) -> String {
        self.to_utc().map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_else(|| self.0.clone())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn text_order_is_time_order_and_arithmetic_keeps_the_format() {
        let a = Timestamp::parse("2026-01-09T23:59:59.999Z").unwrap();
        let b = a.plus_secs(1);
        assert_eq!(b.as_str(), "2026-01-10T00:00:00.999Z");
        assert!(a < b && a.as_str() < b.as_str());
        assert_eq!(a.plus_days(2).as_str(), "2026-01-11T23:59:59.999Z");
        assert_eq!(b.plus_secs(-1), a);
        assert_eq!(a.to_seconds(), "2026-01-09T23:59:59Z");
        let now = Timestamp::now();
        assert_eq!(now.as_str().len(), "2026-01-09T23:59:59.999Z".len());
        assert!(now.elapsed() < std::time::Duration::from_secs(5));
    }

    proptest::proptest! {
        /// The format written out is chrono's `FORMAT`, for any time of any year.
        #[test]
        fn the_written_format_is_chronos(secs in -70_000_000_000i64..300_000_000_000, nanos in 0u32..2_000_000_000) {
            if let Some(t) = DateTime::<Utc>::from_timestamp(secs, nanos) {
                proptest::prop_assert_eq!(Timestamp::from_utc(t).0, t.format(FORMAT).to_string());
            }
        }
    }
}
