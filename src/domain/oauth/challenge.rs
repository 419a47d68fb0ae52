//! `WWW-Authenticate` challenges (RFC 9110 §11.6.1, RFC 6750 §3).
//!
//! Parsing is tolerant: several challenges in one header, quoted or bare values, whitespace
//! around `=`, escapes inside quotes. Only the `Bearer` challenge is read.

/// The parameters of a `Bearer` challenge that authorization cares about.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Challenge {
    /// Protected resource metadata URL (RFC 9728 §5.1).
    pub resource_metadata: Option<String>,
    /// Space-separated scopes the request needs.
    pub scope: Option<String>,
    /// `error`, e.g. `invalid_token` or `insufficient_scope`.
    pub error: Option<String>,
    /// `realm`.
    pub realm: Option<String>,
}

impl Challenge {
    /// Whether this challenge says "use OAuth": it points at metadata or names scopes.
    pub fn signals_oauth(&self) -> bool {
        self.resource_metadata.is_some() || self.scope.is_some()
    }
}

/// Parse the `Bearer` challenge out of one or more `WWW-Authenticate` header values.
/// Returns `None` when there is no `Bearer` challenge.
pub fn parse<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Challenge> {
    values.into_iter().find_map(parse_one)
}

fn parse_one(header: &str) -> Option<Challenge> {
    let mut parser = Parser {
        input: header.as_bytes(),
        pos: 0,
    };
    let mut current_is_bearer = false;
    let mut found: Option<Challenge> = None;
    loop {
        parser.skip_separators();
        let Some(token) = parser.token() else { break };
        parser.skip_spaces();
        if parser.peek() == Some(b'=') {
            // An auth-param of the current challenge.
            parser.pos += 1;
            parser.skip_spaces();
            let value = parser.value();
            if current_is_bearer && let Some(challenge) = found.as_mut() {
                let slot = match token.to_ascii_lowercase().as_str() {
                    "resource_metadata" => Some(&mut challenge.resource_metadata),
                    "scope" => Some(&mut challenge.scope),
                    "error" => Some(&mut challenge.error),
                    "realm" => Some(&mut challenge.realm),
                    _ => None,
                };
                // The first occurrence wins; duplicates are ignored.
                if let Some(slot) = slot
                    && slot.is_none()
                {
                    *slot = Some(value);
                }
            }
        } else {
            // A new challenge scheme. Stop after the Bearer challenge is complete.
            if found.is_some() {
                break;
            }
            current_is_bearer = token.eq_ignore_ascii_case("bearer");
            if current_is_bearer {
                found = Some(Challenge::default());
            }
        }
    }
    found
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn skip_spaces(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn skip_separators(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.pos += 1;
        }
    }

    fn token(&mut self) -> Option<String> {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/".contains(&c) {
                self.pos += 1;
            } else {
                break;
            }
        }
        (self.pos > start)
            .then(|| String::from_utf8_lossy(&self.input[start..self.pos]).into_owned())
    }

    fn value(&mut self) -> String {
        if self.peek() == Some(b'"') {
            self.pos += 1;
            let mut out = Vec::new();
            while let Some(c) = self.peek() {
                self.pos += 1;
                match c {
                    b'\\' => {
                        if let Some(next) = self.peek() {
                            out.push(next);
                            self.pos += 1;
                        }
                    }
                    b'"' => break,
                    _ => out.push(c),
                }
            }
            String::from_utf8_lossy(&out).into_owned()
        } else {
            let start = self.pos;
            while let Some(c) = self.peek() {
                if c == b',' || c == b' ' || c == b'\t' {
                    break;
                }
                self.pos += 1;
            }
            String::from_utf8_lossy(&self.input[start..self.pos]).into_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_resource_metadata_and_scope() {
        let c = parse([r#"Bearer error="invalid_token", error_description="Missing", resource_metadata="http://x/.well-known/oauth-protected-resource/mcp", scope="a b""#]).unwrap();
        assert_eq!(
            c.resource_metadata.as_deref(),
            Some("http://x/.well-known/oauth-protected-resource/mcp")
        );
        assert_eq!(c.scope.as_deref(), Some("a b"));
        assert_eq!(c.error.as_deref(), Some("invalid_token"));
        assert!(c.signals_oauth());
    }

    #[test]
    fn bare_invalid_token_and_realm_are_not_oauth() {
        assert!(
            !parse([r#"Bearer error="invalid_token""#])
                .unwrap()
                .signals_oauth()
        );
        assert!(!parse([r#"Bearer realm="api""#]).unwrap().signals_oauth());
        assert!(!parse(["Bearer"]).unwrap().signals_oauth());
    }

    #[test]
    fn tolerates_spacing_bare_values_several_challenges_and_escapes() {
        let c = parse([
            r#"Basic realm="x", Bearer scope = read , resource_metadata= "http://a/\"q\"""#,
        ])
        .unwrap();
        assert_eq!(c.scope.as_deref(), Some("read"));
        assert_eq!(c.resource_metadata.as_deref(), Some(r#"http://a/"q""#));
        assert!(parse([r#"Basic realm="x""#]).is_none());
        let first =
            parse([r#"Bearer resource_metadata="http://one", resource_metadata="http://two""#])
                .unwrap();
        assert_eq!(first.resource_metadata.as_deref(), Some("http://one"));
        let c = parse(["Digest realm=a", r#"bearer scope="s""#]).unwrap();
        assert_eq!(c.scope.as_deref(), Some("s"));
    }
}
