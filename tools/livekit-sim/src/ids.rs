use rand::Rng;
use rand::distr::Alphanumeric;

/// A LiveKit-style id: the prefix (`RM_`, `PA_`, `TR_`, `EV_`) and 12 random alphanumerics.
pub fn new_id(prefix: &str) -> String {
    let suffix: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(12)
        .map(char::from)
        .collect();
    format!("{prefix}{suffix}")
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
