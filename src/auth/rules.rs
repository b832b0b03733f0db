//! A client's allow rules (`action:key-pattern` or `*`) and the glob their key patterns use.

use std::fmt;
use std::str::FromStr;

use super::Action;

/// An allow rule, `action:key-pattern` or `*`; `*` in a pattern matches any run of characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    action: Option<Action>,
    pattern: String,
}

impl FromStr for Rule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "*" {
            return Ok(Rule {
                action: None,
                pattern: "*".into(),
            });
        }
        let (action, pattern) = s
            .split_once(':')
            .ok_or_else(|| format!("rule {s:?} is not `action:key-pattern` or `*`"))?;
        let action = match action {
            "*" => None,
            a => Some(a.parse::<Action>()?),
        };
        let valid = |c: char| c.is_ascii_alphanumeric() || "_.-*".contains(c);
        if pattern.is_empty() || pattern.len() > 64 || !pattern.chars().all(valid) {
            return Err(format!(
                "rule {s:?}: the key pattern must be 1-64 characters of [A-Za-z0-9_.-*]"
            ));
        }
        Ok(Rule {
            action,
            pattern: pattern.into(),
        })
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.action {
            None if self.pattern == "*" => f.write_str("*"),
            None => write!(f, "*:{}", self.pattern),
            Some(a) => write!(f, "{a}:{}", self.pattern),
        }
    }
}

impl Rule {
    /// Whether this rule allows `action` on `key_id`.
    pub fn allows(&self, action: Action, key_id: &str) -> bool {
        self.action.is_none_or(|a| a == action) && glob(&self.pattern, key_id)
    }
}

/// `*` matches any run of characters; everything else matches itself.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if text.len() < first.len() + last.len() || !text.starts_with(first) || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(i) => rest = &rest[i + middle.len()..],
            None => return false,
        }
    }
    true
}
