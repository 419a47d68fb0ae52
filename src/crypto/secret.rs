//! [`Secret`]: a plaintext string that does not print itself.

use std::fmt;

use super::util::constant_time_eq;

/// A plaintext secret that never prints itself: `Debug` shows `[redacted]`
/// and there is no `Display`, so it cannot leak through logs or error
/// messages by accident. It does not zero its memory on drop.
///
/// Equality is compared in constant time so that comparing a secret with
/// user input does not leak how many leading bytes matched.
#[derive(Clone, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a plaintext value.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The plaintext. Call this only where the value is actually needed (e.g.
    /// right before sending it to the remote server).
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Unwraps the plaintext.
    #[must_use]
    pub fn into_inner(self) -> String {
        self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        constant_time_eq(self.0.as_bytes(), other.0.as_bytes())
    }
}

impl Eq for Secret {}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a failing unwrap is a failing test")]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some([redacted])");
        assert_eq!(s.expose(), "hunter2");
        assert_eq!(s.into_inner(), "hunter2");
    }

    #[test]
    fn equality() {
        assert_eq!(Secret::new("a"), Secret::from("a"));
        assert_ne!(Secret::new("a"), Secret::new("b"));
        assert_ne!(Secret::new("a"), Secret::new("ab"));
    }
}
