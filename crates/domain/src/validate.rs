//! Values checked once, where a request enters, and trusted everywhere after.
//!
//! "Parse, don't validate": each type here can only be built through a constructor that
//! enforces the rule, so a function that takes a [`SessionTitle`] never has to check its
//! length again. They also deserialize through the same constructor, so a JSON body with a bad
//! value fails to parse (422 `VALIDATION_ERROR`) with the message of [`InvalidInput`].

use std::fmt;

/// Why a value was refused. The `Display` is a message fit for the `error` field of the API's
/// error envelope; `field` is the JSON field name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidInput {
    /// Nothing left after trimming.
    #[error("{field} must not be empty")]
    Empty {
        /// The JSON field.
        field: &'static str,
    },
    /// Longer than allowed, counted in characters (not bytes).
    #[error("{field} must be at most {max} characters long (got {len})")]
    TooLong {
        /// The JSON field.
        field: &'static str,
        /// The limit.
        max: usize,
        /// The length that was given.
        len: usize,
    },
    /// A number outside its range.
    #[error("{field} must be between {min} and {max} (got {value})")]
    OutOfRange {
        /// The JSON field.
        field: &'static str,
        /// The smallest allowed value.
        min: i64,
        /// The largest allowed value.
        max: i64,
        /// The value that was given.
        value: i64,
    },
}

impl InvalidInput {
    /// The API error code this becomes: always `VALIDATION_ERROR`.
    pub const fn error_code(&self) -> crate::ErrorCode {
        crate::ErrorCode::ValidationError
    }
}

/// Trims `raw` and checks its length in characters is within `1..=max`.
///
/// Characters rather than bytes because the limits are what a user sees: 120 letters of a
/// title in Portuguese or emoji are 120, whatever their UTF-8 size.
fn trimmed_text(field: &'static str, raw: &str, max: usize) -> Result<String, InvalidInput> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(InvalidInput::Empty { field });
    }
    let len = text.chars().count();
    if len > max {
        return Err(InvalidInput::TooLong { field, max, len });
    }
    Ok(text.to_owned())
}

/// Implements the conversions and serde shared by the text newtypes below.
macro_rules! text_newtype {
    ($name:ident) => {
        impl $name {
            /// The text, trimmed.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The text, trimmed, by value.
            pub fn into_inner(self) -> String {
                self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = InvalidInput;

            fn try_from(raw: &str) -> Result<Self, Self::Error> {
                Self::parse(raw)
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidInput;

            fn try_from(raw: String) -> Result<Self, Self::Error> {
                Self::parse(&raw)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.0
            }
        }
    };
}

/// A session title: trimmed, 1 to [`SessionTitle::MAX_CHARS`] characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SessionTitle(String);

impl SessionTitle {
    /// The longest title, in characters.
    pub const MAX_CHARS: usize = 120;

    /// Trims `raw` and accepts it if 1 to 120 characters remain.
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        trimmed_text("title", raw, Self::MAX_CHARS).map(Self)
    }
}

text_newtype!(SessionTitle);

/// A chat message body: trimmed, 1 to [`ChatBody::MAX_CHARS`] characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ChatBody(String);

impl ChatBody {
    /// The longest message, in characters.
    pub const MAX_CHARS: usize = 500;

    /// Trims `raw` and accepts it if 1 to 500 characters remain. Inner whitespace and line
    /// breaks are kept: they are part of the message.
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        trimmed_text("body", raw, Self::MAX_CHARS).map(Self)
    }
}

text_newtype!(ChatBody);

/// The price of a pay-per-view session, in coins: 1 to 100 000.
///
/// `i64` because coin amounts are `bigint` in the ledger; the range keeps any arithmetic on a
/// price (shares, totals) far from overflow.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "i64", into = "i64")]
pub struct PriceCoins(i64);

impl PriceCoins {
    /// The lowest price: a pay-per-view session is never free.
    pub const MIN: i64 = 1;
    /// The highest price.
    pub const MAX: i64 = 100_000;

    /// Accepts `coins` if it is within [`Self::MIN`]..=[`Self::MAX`].
    pub fn new(coins: i64) -> Result<Self, InvalidInput> {
        if (Self::MIN..=Self::MAX).contains(&coins) {
            Ok(Self(coins))
        } else {
            Err(InvalidInput::OutOfRange {
                field: "priceCoins",
                min: Self::MIN,
                max: Self::MAX,
                value: coins,
            })
        }
    }

    /// The number of coins.
    pub const fn get(self) -> i64 {
        self.0
    }
}

impl TryFrom<i64> for PriceCoins {
    type Error = InvalidInput;

    fn try_from(coins: i64) -> Result<Self, Self::Error> {
        Self::new(coins)
    }
}

impl From<PriceCoins> for i64 {
    fn from(price: PriceCoins) -> Self {
        price.0
    }
}

impl fmt::Display for PriceCoins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn title_is_trimmed_and_bounded() {
        assert_eq!(SessionTitle::parse("  Hello  ").unwrap().as_str(), "Hello");
        assert_eq!(
            SessionTitle::parse(" \t\n "),
            Err(InvalidInput::Empty { field: "title" })
        );
        let max = "é".repeat(120);
        assert_eq!(SessionTitle::parse(&max).unwrap().as_str(), max);
        let err = SessionTitle::parse(&"é".repeat(121)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "title must be at most 120 characters long (got 121)"
        );
        assert_eq!(err.error_code(), crate::ErrorCode::ValidationError);
    }

    #[test]
    fn chat_body_is_trimmed_and_bounded() {
        assert_eq!(
            ChatBody::parse(" hi\nthere ").unwrap().as_str(),
            "hi\nthere"
        );
        assert!(ChatBody::parse("").is_err());
        assert!(ChatBody::parse(&"x".repeat(500)).is_ok());
        assert_eq!(
            ChatBody::parse(&"x".repeat(501)).unwrap_err().to_string(),
            "body must be at most 500 characters long (got 501)"
        );
    }

    #[test]
    fn price_is_bounded() {
        assert_eq!(PriceCoins::new(1).unwrap().get(), 1);
        assert_eq!(PriceCoins::new(100_000).unwrap().get(), 100_000);
        for bad in [i64::MIN, -1, 0, 100_001, i64::MAX] {
            assert!(PriceCoins::new(bad).is_err(), "{bad}");
        }
        assert_eq!(
            PriceCoins::new(0).unwrap_err().to_string(),
            "priceCoins must be between 1 and 100000 (got 0)"
        );
    }

    #[test]
    fn serde_goes_through_the_constructors() {
        let title: SessionTitle = serde_json::from_str("\" Hi \"").unwrap();
        assert_eq!(serde_json::to_string(&title).unwrap(), "\"Hi\"");
        assert!(serde_json::from_str::<SessionTitle>("\"  \"").is_err());
        let err = serde_json::from_str::<PriceCoins>("0").unwrap_err();
        assert!(
            err.to_string().contains("priceCoins must be between"),
            "{err}"
        );
        let price: PriceCoins = serde_json::from_str("250").unwrap();
        assert_eq!(serde_json::to_string(&price).unwrap(), "250");
        let body: ChatBody = serde_json::from_str("\"yo\"").unwrap();
        assert_eq!(String::from(body), "yo");
    }

    proptest! {
        #[test]
        fn accepted_titles_satisfy_the_rule(raw in "\\PC{0,130}") {
            match SessionTitle::parse(&raw) {
                Ok(title) => {
                    let n = title.as_str().chars().count();
                    prop_assert!((1..=SessionTitle::MAX_CHARS).contains(&n));
                    prop_assert_eq!(title.as_str(), raw.trim());
                }
                Err(_) => {
                    let n = raw.trim().chars().count();
                    prop_assert!(n == 0 || n > SessionTitle::MAX_CHARS);
                }
            }
        }

        #[test]
        fn prices_in_range_are_accepted(coins: i64) {
            prop_assert_eq!(
                PriceCoins::new(coins).is_ok(),
                (1..=100_000).contains(&coins)
            );
        }
    }
}
