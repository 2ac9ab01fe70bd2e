//! Tenant ids as Mimir takes them from `X-Scope-OrgID`: one id, or several joined by `|`
//! for cross-tenant reads.

/// The header that carries the tenant id(s).
pub const ORG_ID_HEADER: &str = "X-Scope-OrgID";

/// Mimir's limit on a tenant id's length, in bytes.
pub const MAX_ORG_ID_LEN: usize = 150;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantError {
    #[error("tenant id is empty")]
    Empty,
    #[error("tenant id {id:?} is {len} bytes long, over the limit of {MAX_ORG_ID_LEN}")]
    TooLong { id: String, len: usize },
    #[error("tenant id {id:?} contains unsupported character {ch:?} at byte {pos}; allowed are a-z A-Z 0-9 ! - _ . * ' ( )")]
    BadChar { id: String, ch: char, pos: usize },
    #[error("tenant id {id:?} is not allowed: '.' and '..' are unsafe as path segments")]
    Unsafe { id: String },
}

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '!' | '-' | '_' | '.' | '*' | '\'' | '(' | ')')
}

/// Checks one tenant id against Mimir's rules.
pub fn validate_org_id(id: &str) -> Result<(), TenantError> {
    if id.is_empty() {
        return Err(TenantError::Empty);
    }
    if let Some((pos, ch)) = id.char_indices().find(|(_, c)| !allowed(*c)) {
        return Err(TenantError::BadChar {
            id: id.to_string(),
            ch,
            pos,
        });
    }
    if id.len() > MAX_ORG_ID_LEN {
        return Err(TenantError::TooLong {
            id: id.to_string(),
            len: id.len(),
        });
    }
    if id == "." || id == ".." {
        return Err(TenantError::Unsafe { id: id.to_string() });
    }
    Ok(())
}

/// Splits an `X-Scope-OrgID` value on `|`, validates each id, and returns them sorted and
/// de-duplicated.
pub fn parse_org_ids(value: &str) -> Result<Vec<String>, TenantError> {
    let mut ids = Vec::new();
    for id in value.split('|') {
        validate_org_id(id)?;
        ids.push(id.to_string());
    }
    ids.sort();
    ids.dedup();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_ids() {
        for id in ["a", "team-1", "A_b.c", "x!*'()", &"z".repeat(150), "..."] {
            assert_eq!(validate_org_id(id), Ok(()), "{id}");
        }
    }

    #[test]
    fn invalid_ids_say_why() {
        let long = "z".repeat(151);
        let cases = [
            ("", "empty"),
            (".", "unsafe"),
            ("..", "unsafe"),
            ("a/b", "'/' at byte 1"),
            ("a b", "' '"),
            ("tenant\u{e9}", "'\u{e9}'"),
            (long.as_str(), "151 bytes"),
        ];
        for (id, want) in cases {
            let e = validate_org_id(id).unwrap_err().to_string();
            assert!(e.contains(want), "{id:?}: {e}");
        }
    }

    #[test]
    fn cross_tenant_values_are_sorted_and_deduplicated() {
        assert_eq!(parse_org_ids("b|a|b").unwrap(), vec!["a", "b"]);
        assert_eq!(parse_org_ids("one").unwrap(), vec!["one"]);
        assert_eq!(parse_org_ids("a||b"), Err(TenantError::Empty));
        let e = parse_org_ids("a|b/c").unwrap_err().to_string();
        assert!(e.contains("\"b/c\""), "{e}");
    }
}
