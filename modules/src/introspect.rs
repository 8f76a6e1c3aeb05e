//! A module's accepted parameters, read from its serde parameter struct, so
//! that they are declared once (the struct) and cannot drift from a second
//! list.
//!
//! Names: serde's derive hands the field names (renames applied, aliases
//! included) to `Deserializer::deserialize_struct(name, FIELDS, visitor)`;
//! [`FieldNames`] is a deserializer that records them and stops (the trick
//! of `serde-aux`'s `serde_introspect`). A struct with `#[serde(flatten)]`
//! asks for a map instead and has no such list: it is refused.
//!
//! Required: a field is required when serde refuses the struct without it.
//! [`Sample`] offers the struct a mapping of the fields found required so
//! far, each with a sample value of whatever type the field asks for; serde
//! names the first missing required field (`Error::missing_field`), which
//! joins the mapping, until serde accepts it. Fields with `default`, and
//! plain `Option`s, are optional, exactly as serde treats them.
//!
//! Both depend only on the type, never on input: if a struct cannot be read
//! this way, [`specs`] panics the first time the module is asked for its
//! parameters, and the test over every module in the registry finds it.

use std::fmt;

use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};

use crate::ParamSpec;

/// The parameters `T` accepts, in declaration order. Panics if `T` is not a
/// struct with named fields or a field cannot be sampled (see the module
/// documentation); both are properties of the type, checked by tests.
pub(crate) fn specs<T: DeserializeOwned>() -> Vec<ParamSpec> {
    let fields = field_names::<T>().unwrap_or_else(|| {
        panic!(
            "{} is not a struct with named fields (serde(flatten)?)",
            std::any::type_name::<T>()
        )
    });
    let required = required_fields::<T>().unwrap_or_else(|e| {
        panic!(
            "cannot tell which fields of {} are required: {e}",
            std::any::type_name::<T>()
        )
    });
    fields
        .iter()
        .map(|&name| ParamSpec {
            name,
            required: required.contains(&name),
        })
        .collect()
}

/// The names serde's derive accepts for `T`'s fields, if `T` is a struct.
pub(crate) fn field_names<T: DeserializeOwned>() -> Option<&'static [&'static str]> {
    match T::deserialize(FieldNames) {
        Err(Found::Fields(fields)) => Some(fields),
        _ => None,
    }
}

/// The fields serde will not do without, in the order serde reports them.
fn required_fields<T: DeserializeOwned>() -> Result<Vec<&'static str>, Found> {
    let mut required = Vec::new();
    loop {
        match T::deserialize(Sample::of(&required)) {
            Ok(_) => return Ok(required),
            Err(Found::Missing(name)) if !required.contains(&name) => required.push(name),
            Err(other) => return Err(other),
        }
    }
}

/// Whether serde accepts `T` from a mapping of exactly `keys`, each with a
/// sample value: `Err(Found::Unknown(key))` when serde refuses a key.
#[cfg(test)]
pub(crate) fn accepts<T: DeserializeOwned>(keys: &[&'static str]) -> Result<(), Found> {
    T::deserialize(Sample::of(keys)).map(|_| ())
}

/// What a probing deserialization ended with.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Found {
    /// The struct's field names.
    Fields(&'static [&'static str]),
    /// serde needs this field.
    Missing(&'static str),
    /// serde refused this key (`deny_unknown_fields`).
    Unknown(String),
    /// Anything else serde said.
    Other(String),
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Found::Fields(fields) => write!(f, "fields {fields:?}"),
            Found::Missing(name) => write!(f, "missing field `{name}`"),
            Found::Unknown(name) => write!(f, "unknown field `{name}`"),
            Found::Other(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for Found {}

impl de::Error for Found {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Found::Other(msg.to_string())
    }
    fn missing_field(field: &'static str) -> Self {
        Found::Missing(field)
    }
    fn unknown_field(field: &str, _expected: &'static [&'static str]) -> Self {
        Found::Unknown(field.to_string())
    }
}

/// Records the field names a struct's derive passes to `deserialize_struct`.
struct FieldNames;

impl<'de> de::Deserializer<'de> for FieldNames {
    type Error = Found;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Found> {
        Err(Found::Other("not a struct with named fields".into()))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Found> {
        Err(Found::Fields(fields))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// A mapping of `keys`, each with a [`SampleValue`].
struct Sample<'a> {
    keys: std::slice::Iter<'a, &'static str>,
}

impl<'a> Sample<'a> {
    fn of(keys: &'a [&'static str]) -> Self {
        Self { keys: keys.iter() }
    }
}

impl<'de> de::Deserializer<'de> for Sample<'_> {
    type Error = Found;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Found> {
        visitor.visit_map(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

impl<'de> de::MapAccess<'de> for Sample<'_> {
    type Error = Found;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Found> {
        match self.keys.next() {
            Some(key) => seed.deserialize((*key).into_deserializer()).map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Found> {
        seed.deserialize(SampleValue)
    }
}

/// A value of whatever type is asked for: zero, false, `"0"` (which the
/// lenient readers of `params` take as a number, a boolean, a mode or a
/// string), an empty list or mapping, an enum's first variant.
struct SampleValue;

/// An empty list or mapping.
struct Empty;

impl<'de> de::SeqAccess<'de> for Empty {
    type Error = Found;
    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        _seed: T,
    ) -> Result<Option<T::Value>, Found> {
        Ok(None)
    }
}

impl<'de> de::MapAccess<'de> for Empty {
    type Error = Found;
    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        _seed: K,
    ) -> Result<Option<K::Value>, Found> {
        Ok(None)
    }
    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        _seed: V,
    ) -> Result<V::Value, Found> {
        Err(Found::Other("an empty mapping has no values".into()))
    }
}

impl<'de> de::Deserializer<'de> for SampleValue {
    type Error = Found;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Found> {
        visitor.visit_str("0")
    }
    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Found> {
        visitor.visit_bool(false)
    }
    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Found> {
        visitor.visit_i64(0)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Found> {
        visitor.visit_u64(0)
    }
    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Found> {
        visitor.visit_f64(0.0)
    }
    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Found> {
        visitor.visit_bytes(b"")
    }
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Found> {
        visitor.visit_some(self)
    }
    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Found> {
        visitor.visit_unit()
    }
    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Found> {
        visitor.visit_unit()
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Found> {
        visitor.visit_newtype_struct(self)
    }
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Found> {
        visitor.visit_seq(Empty)
    }
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Found> {
        visitor.visit_map(Empty)
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Found> {
        visitor.visit_map(Empty)
    }
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Found> {
        let first = variants
            .first()
            .ok_or_else(|| Found::Other("an enum without variants".into()))?;
        visitor.visit_enum((*first).into_deserializer())
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i128 u8 u16 u32 u128 f32 char str string byte_buf tuple
        tuple_struct identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct P {
        path: String,
        #[serde(rename = "type")]
        kind: Kind,
        #[serde(default)]
        owner: Option<String>,
        plain: Option<u32>,
        #[serde(deserialize_with = "crate::params::string_list")]
        names: Vec<String>,
        #[serde(default, deserialize_with = "crate::params::opt_bool")]
        create: Option<bool>,
        #[serde(default)]
        env: std::collections::BTreeMap<String, String>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Kind {
        File,
    }

    #[test]
    fn names_and_required_come_from_the_struct() {
        let got: Vec<(&str, bool)> = specs::<P>().iter().map(|s| (s.name, s.required)).collect();
        assert_eq!(
            got,
            [
                ("path", true),
                ("type", true),
                ("owner", false),
                ("plain", false),
                ("names", true),
                ("create", false),
                ("env", false),
            ]
        );
        assert_eq!(accepts::<P>(&["path", "type", "names", "env"]), Ok(()));
        assert_eq!(
            accepts::<P>(&["path", "type", "names", "kind"]),
            Err(Found::Unknown("kind".into()))
        );
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Flat {
        #[serde(flatten)]
        rest: std::collections::BTreeMap<String, String>,
    }

    #[test]
    fn flattened_structs_have_no_field_list() {
        assert_eq!(field_names::<Flat>(), None);
        assert!(std::panic::catch_unwind(specs::<Flat>).is_err());
    }
}
