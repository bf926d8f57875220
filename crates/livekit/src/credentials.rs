use std::fmt;

/// A LiveKit API key and its secret.
///
/// `Debug` prints the key but never the secret, so the struct can sit inside configs that are
/// logged at start-up.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The API key: the `iss` of every token signed with the secret.
    pub api_key: String,
    /// The HMAC secret shared with the LiveKit server.
    pub api_secret: String,
}

impl Credentials {
    pub fn new(api_key: impl Into<String>, api_secret: impl Into<String>) -> Self {
        Self {
            api_key: api_key.into(),
            api_secret: api_secret.into(),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("api_key", &self.api_key)
            .field("api_secret", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_secret() {
        let c = Credentials::new("APIkey", "very-secret-value");
        let s = format!("{c:?}");
        assert!(s.contains("APIkey"));
        assert!(!s.contains("very-secret-value"));
    }
}
