//! Small typed values that describe block options and layer parameters.
//!
//! A block option (`k3-e6-d2`) and a layer's configuration are both maps from a short key to a
//! value. Keeping one value type for both lets a search space hand its options straight to the
//! layer types, and lets spaces and layers defined outside Rust (files, plugins) use the same
//! vocabulary.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::SdkError;

/// One value of a setting: a flag, an integer, a real number or a name.
///
/// In JSON these are plain booleans, numbers and strings. In the compact text form a flag is
/// `1`/`0` and a real number uses the shortest decimal (`0.75`, `1`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// On/off, e.g. squeeze-excite.
    Bool(bool),
    /// A count or size, e.g. kernel 5.
    Int(i64),
    /// A ratio, e.g. width 0.75.
    Float(f64),
    /// A name, e.g. activation `swish`.
    Name(String),
}

impl Value {
    /// The text used in compact architecture strings; equal texts mean equal values.
    pub fn token(&self) -> String {
        self.to_string()
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        // `1`, `1.0` and `true` written by hand in JSON all mean the same setting.
        self.token() == other.token()
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{}", u8::from(*b)),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Name(s) => f.write_str(s),
        }
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}
impl From<f64> for Value {
    fn from(x: f64) -> Self {
        Value::Float(x)
    }
}
impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Name(s.to_owned())
    }
}

/// An ordered map of settings with typed accessors that fail with the missing key's name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Settings(BTreeMap<String, Value>);

impl Settings {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builder-style insert.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.0.insert(key.to_owned(), value.into());
        self
    }

    /// Inserts or replaces a setting.
    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.0.insert(key.to_owned(), value.into());
    }

    /// The raw value of a setting.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// Whether the setting is present.
    pub fn contains(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    /// All settings in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of settings.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no settings.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn required(&self, key: &str) -> Result<&Value, SdkError> {
        self.0.get(key).ok_or_else(|| SdkError::Setting(format!("missing setting `{key}`")))
    }

    fn wrong(key: &str, want: &str, got: &Value) -> SdkError {
        SdkError::Setting(format!("setting `{key}` must be {want}, got `{got}`"))
    }

    /// An integer setting.
    pub fn int(&self, key: &str) -> Result<i64, SdkError> {
        match self.required(key)? {
            Value::Int(i) => Ok(*i),
            Value::Float(x) if x.fract() == 0.0 => Ok(*x as i64),
            other => Err(Self::wrong(key, "an integer", other)),
        }
    }

    /// An integer setting with a default when absent.
    pub fn int_or(&self, key: &str, default: i64) -> Result<i64, SdkError> {
        if self.contains(key) {
            self.int(key)
        } else {
            Ok(default)
        }
    }

    /// A real-valued setting (integers are accepted).
    pub fn float(&self, key: &str) -> Result<f64, SdkError> {
        match self.required(key)? {
            Value::Int(i) => Ok(*i as f64),
            Value::Float(x) => Ok(*x),
            other => Err(Self::wrong(key, "a number", other)),
        }
    }

    /// A real-valued setting with a default when absent.
    pub fn float_or(&self, key: &str, default: f64) -> Result<f64, SdkError> {
        if self.contains(key) {
            self.float(key)
        } else {
            Ok(default)
        }
    }

    /// A flag (`true`/`false`, or `1`/`0`).
    pub fn flag(&self, key: &str) -> Result<bool, SdkError> {
        match self.required(key)? {
            Value::Bool(b) => Ok(*b),
            Value::Int(0) => Ok(false),
            Value::Int(1) => Ok(true),
            other => Err(Self::wrong(key, "a flag", other)),
        }
    }

    /// A flag with a default when absent.
    pub fn flag_or(&self, key: &str, default: bool) -> Result<bool, SdkError> {
        if self.contains(key) {
            self.flag(key)
        } else {
            Ok(default)
        }
    }

    /// A name setting.
    pub fn name(&self, key: &str) -> Result<&str, SdkError> {
        match self.required(key)? {
            Value::Name(s) => Ok(s),
            other => Err(Self::wrong(key, "a name", other)),
        }
    }

    /// A name setting with a default when absent.
    pub fn name_or<'a>(&'a self, key: &str, default: &'a str) -> Result<&'a str, SdkError> {
        if self.contains(key) {
            self.name(key)
        } else {
            Ok(default)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_equal_by_their_token() {
        assert_eq!(Value::Int(1), Value::Float(1.0));
        assert_eq!(Value::Bool(true), Value::Int(1));
        assert_ne!(Value::Float(0.75), Value::Float(0.5));
        assert_eq!(Value::Float(0.75).token(), "0.75");
    }

    #[test]
    fn typed_accessors_name_the_key() {
        let s = Settings::new().with("k", 3i64).with("act", "swish");
        assert_eq!(s.int("k").unwrap(), 3);
        assert_eq!(s.name("act").unwrap(), "swish");
        let err = s.int("act").unwrap_err().to_string();
        assert!(err.contains("`act`") && err.contains("integer"), "{err}");
        assert!(s.int("e").unwrap_err().to_string().contains("missing setting `e`"));
    }

    #[test]
    fn json_uses_plain_values() {
        let s = Settings::new().with("se", true).with("w", 0.75).with("k", 5i64);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, r#"{"k":5,"se":true,"w":0.75}"#);
        let back: Settings = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
    }
}
