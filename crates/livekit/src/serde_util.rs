//! Lenient protobuf-JSON helpers: numbers that may come as strings, enums that may come as
//! names or numbers, and LiveKit's way of writing them back (int64 as strings, zero omitted).

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serializer};

/// Deserializes an integer written as a JSON number, a string (`"123"`, protojson's int64),
/// or `null` (→ 0).
pub(crate) fn lenient_int<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i128> + Default,
{
    struct V<T>(std::marker::PhantomData<T>);
    impl<T: TryFrom<i128> + Default> Visitor<'_> for V<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an integer or a string holding one")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
            T::try_from(v as i128).map_err(|_| E::custom("integer out of range"))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
            T::try_from(v as i128).map_err(|_| E::custom("integer out of range"))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
            if v.fract() != 0.0 {
                return Err(E::custom("not an integer"));
            }
            T::try_from(v as i128).map_err(|_| E::custom("integer out of range"))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            let v = v.trim();
            if v.is_empty() {
                return Ok(T::default());
            }
            let n = i128::from_str(v)
                .or_else(|_| f64::from_str(v).map(|f| f as i128))
                .map_err(|_| E::custom(format!("not an integer: {v:?}")))?;
            T::try_from(n).map_err(|_| E::custom("integer out of range"))
        }
        fn visit_unit<E: de::Error>(self) -> Result<T, E> {
            Ok(T::default())
        }
    }
    d.deserialize_any(V(std::marker::PhantomData))
}

/// An enum value kept as a string: a name stays as it is, a number becomes its decimal string
/// (protojson writes names, but an unknown value may come as its number); `null` → `zero`, the
/// name of the zero value that protojson omits.
pub(crate) fn enum_string_or<'de, D: Deserializer<'de>>(
    d: D,
    zero: &'static str,
) -> Result<String, D::Error> {
    let v = Option::<EnumValue>::deserialize(d)?;
    Ok(v.map(|v| v.0).unwrap_or_else(|| zero.to_owned()))
}

/// A list of enum values, each kept as a string.
pub(crate) fn enum_strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of enum values")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(v) = seq.next_element::<EnumValue>()? {
                out.push(v.0);
            }
            Ok(out)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
    }
    d.deserialize_any(V)
}

struct EnumValue(String);

impl<'de> Deserialize<'de> for EnumValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = EnumValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an enum name or number")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EnumValue, E> {
                Ok(EnumValue(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<EnumValue, E> {
                Ok(EnumValue(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<EnumValue, E> {
                Ok(EnumValue(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Writes an int64 as protojson does: a decimal string.
pub(crate) fn int64_as_string<S: Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

pub(crate) fn is_zero<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}
