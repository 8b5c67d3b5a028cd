//! Durations in the config file: `"90s"`, `"10m"`, `"24h"`, `"7d"`, `"5y"` (365 days), or
//! a bare number of seconds.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// The longest duration the config takes: 1,000 years. A certificate's dates must stay
/// within what X.509 can write (year 9999), and any longer value is a typo.
pub const MAX_SECS: i64 = 1000 * 365 * 86_400;

/// A positive duration in whole seconds, at most `MAX_SECS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(i64);

impl Duration {
    /// From seconds.
    pub const fn secs(s: i64) -> Self {
        Duration(s)
    }

    /// The duration in seconds.
    pub fn as_secs(self) -> i64 {
        self.0
    }

    /// Parses `<number><unit>` with unit s, m, h, d or y, or a bare number of seconds.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
            Some(i) => s.split_at(i),
            None => (s, "s"),
        };
        let n: i64 = num.parse().map_err(|_| {
            format!("{s:?} is not a duration like \"90s\", \"10m\", \"24h\", \"7d\" or \"5y\"")
        })?;
        let mult = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "y" => 365 * 86_400,
            _ => return Err(format!("{s:?}: unknown unit {unit:?}; use s, m, h, d or y")),
        };
        let secs = n
            .checked_mul(mult)
            .filter(|v| *v > 0 && *v <= MAX_SECS)
            .ok_or_else(|| format!("{s:?} must be positive and at most 1000y"))?;
        Ok(Duration(secs))
    }
}

/// An optional [`Duration`] that may also be zero (`0`, `"0s"`): for a bound that an
/// operator may lift.
pub fn zero_or_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(i64),
        Text(String),
    }
    match Option::<Raw>::deserialize(d)? {
        None => Ok(None),
        Some(Raw::Secs(0)) => Ok(Some(Duration(0))),
        Some(Raw::Secs(n)) if n > 0 && n <= MAX_SECS => Ok(Some(Duration(n))),
        Some(Raw::Secs(n)) => Err(serde::de::Error::custom(format!(
            "duration {n} must be zero or positive, and at most 1000y ({MAX_SECS} seconds)"
        ))),
        Some(Raw::Text(t)) if t.trim().trim_end_matches(['s', 'm', 'h', 'd', 'y']) == "0" => {
            Ok(Some(Duration(0)))
        }
        Some(Raw::Text(t)) => Duration::parse(&t)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}s", self.0)
    }
}

impl serde::Serialize for Duration {
    /// As whole seconds, which [`Duration`]'s deserializer reads back.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(self.0)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(i64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(n) if n > 0 && n <= MAX_SECS => Ok(Duration(n)),
            Raw::Secs(n) => Err(serde::de::Error::custom(format!(
                "duration {n} must be positive and at most 1000y ({MAX_SECS} seconds)"
            ))),
            Raw::Text(t) => Duration::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_bare_seconds() {
        assert_eq!(Duration::parse("90s").unwrap().as_secs(), 90);
        assert_eq!(Duration::parse("10m").unwrap().as_secs(), 600);
        assert_eq!(Duration::parse("24h").unwrap().as_secs(), 86_400);
        assert_eq!(Duration::parse("7d").unwrap().as_secs(), 604_800);
        assert_eq!(Duration::parse("5y").unwrap().as_secs(), 5 * 365 * 86_400);
        assert_eq!(Duration::parse("42").unwrap().as_secs(), 42);
    }

    #[test]
    fn a_liftable_bound_takes_zero_and_nothing_else_new() {
        #[derive(serde::Deserialize)]
        struct T {
            #[serde(default, deserialize_with = "zero_or_duration")]
            d: Option<Duration>,
        }
        let d = |text: &str| toml::from_str::<T>(text).map(|t| t.d.map(Duration::as_secs));
        assert_eq!(d("").unwrap(), None);
        for zero in ["d = 0", "d = \"0s\"", "d = \"0d\""] {
            assert_eq!(d(zero).unwrap(), Some(0), "{zero}");
        }
        assert_eq!(d("d = \"2m\"").unwrap(), Some(120));
        for bad in ["d = -1", "d = \"-5s\"", "d = \"00s\"", "d = \"s\""] {
            assert!(d(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rejects_nonsense() {
        for bad in ["", "s", "5w", "-5s", "0s", "1.5h", "99999999999999999999y"] {
            assert!(Duration::parse(bad).is_err(), "{bad}");
        }
    }
}
