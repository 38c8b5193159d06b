//! Timestamps as the two vendors write them, to and from [`Millis`].

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use crate::Millis;

/// Parse an RFC 3339 timestamp (`2019-12-07T16:50:06.678Z`, `2024-05-02T08:30:00+00:00`).
pub fn parse_rfc3339(text: &str) -> Option<Millis> {
    let at = OffsetDateTime::parse(text.trim(), &Rfc3339).ok()?;
    Some((at.unix_timestamp_nanos() / 1_000_000) as Millis)
}

/// Format as UTC with milliseconds and `Z`, as HubSpot does: `2019-12-07T16:50:06.678Z`.
pub fn format_millis_z(at: Millis) -> String {
    let at = to_datetime(at);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    )
}

/// Format as UTC seconds with `+00:00`, as Mailchimp does: `2024-05-02T08:30:00+00:00`.
pub fn format_seconds_offset(at: Millis) -> String {
    let at = to_datetime(at);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}+00:00",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// Format as an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`), as a `Date` header holds.
pub fn format_http_date(at: Millis) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(at.max(0) as u64);
    httpdate::fmt_http_date(at)
}

/// The system clock in milliseconds.
pub fn now_millis() -> Millis {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as Millis
}

fn to_datetime(at: Millis) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(at) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .to_offset(UtcOffset::UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_both_vendor_formats() {
        let at = parse_rfc3339("2019-12-07T16:50:06.678Z").unwrap();
        assert_eq!(format_millis_z(at), "2019-12-07T16:50:06.678Z");
        let at = parse_rfc3339("2024-05-02T08:30:00+00:00").unwrap();
        assert_eq!(format_seconds_offset(at), "2024-05-02T08:30:00+00:00");
        assert_eq!(parse_rfc3339("2024-05-02T10:30:00+02:00"), Some(at));
        assert_eq!(parse_rfc3339(""), None);
    }
}
