//! The id-newtype macro: every vendor id is a `#[serde(transparent)]` newtype (STYLE.md, "Typed
//! IDs"). Defined here, once, for every crate of the workspace.

/// Declares typed id newtypes, string-backed or numeric.
///
/// A string id (`Name(String)`) gets `new`, `as_str`, `Display`, `FromStr` (infallible),
/// `From<&str>`, `From<String>` and `AsRef<str>`. A numeric id (`Name(u64)`, or any integer type)
/// is `Copy` and gets `const fn new`, `const fn get`, `Display`, `FromStr` (the integer's parse
/// error) and `From<u64>`. Both derive `Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord` and
/// serde's traits with `#[serde(transparent)]`, so the calling crate needs `serde` (with `derive`)
/// among its dependencies.
///
/// ```
/// connector_transport::id_newtype! {
///     /// A customer (`cus_…`).
///     pub struct CustomerId(String);
///     /// A patient's database key.
///     pub struct PatNum(u64);
/// }
///
/// let c = CustomerId::new("cus_1");
/// assert_eq!(c.to_string(), "cus_1");
/// assert_eq!(serde_json::to_string(&c).unwrap(), r#""cus_1""#);
/// let p: PatNum = "42".parse().unwrap();
/// assert_eq!(p.get(), 42);
/// assert_eq!(serde_json::to_string(&p).unwrap(), "42");
/// ```
#[macro_export]
macro_rules! id_newtype {
    () => {};
    ($(#[$meta:meta])* $vis:vis struct $name:ident(String); $($rest:tt)*) => {
        $(#[$meta])*
        #[derive(
            Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
            ::serde::Serialize, ::serde::Deserialize,
        )]
        #[serde(transparent)]
        $vis struct $name(::std::string::String);

        impl $name {
            /// Wraps a raw id.
            pub fn new(id: impl ::std::convert::Into<::std::string::String>) -> Self {
                Self(id.into())
            }

            /// The raw id, as the vendor spells it.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = ::std::convert::Infallible;
            fn from_str(s: &str) -> ::std::result::Result<Self, Self::Err> {
                Ok(Self(s.to_owned()))
            }
        }

        impl ::std::convert::From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl ::std::convert::From<::std::string::String> for $name {
            fn from(s: ::std::string::String) -> Self {
                Self(s)
            }
        }

        impl ::std::convert::AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        $crate::id_newtype! { $($rest)* }
    };
    ($(#[$meta:meta])* $vis:vis struct $name:ident($int:ty); $($rest:tt)*) => {
        $(#[$meta])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
            ::serde::Serialize, ::serde::Deserialize,
        )]
        #[serde(transparent)]
        $vis struct $name($int);

        impl $name {
            /// Wraps a raw key.
            pub const fn new(id: $int) -> Self {
                Self(id)
            }

            /// The raw key.
            pub const fn get(self) -> $int {
                self.0
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Display::fmt(&self.0, f)
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = <$int as ::std::str::FromStr>::Err;
            fn from_str(s: &str) -> ::std::result::Result<Self, Self::Err> {
                s.trim().parse().map(Self)
            }
        }

        impl ::std::convert::From<$int> for $name {
            fn from(id: $int) -> Self {
                Self(id)
            }
        }

        $crate::id_newtype! { $($rest)* }
    };
}

#[cfg(test)]
#[allow(unreachable_pub, dead_code)]
mod tests {
    crate::id_newtype! {
        /// A string id for the tests.
        pub(crate) struct SampleId(String);
        /// A numeric id for the tests.
        pub(crate) struct SampleNum(u64);
    }

    #[test]
    fn a_string_id_displays_and_serializes_as_its_bare_text_and_reads_back() {
        // Arrange
        let id = SampleId::new("tx-42");

        // Act
        let json = serde_json::to_string(&id).unwrap();
        let back: SampleId = serde_json::from_str(&json).unwrap();

        // Assert
        assert_eq!(id.to_string(), "tx-42");
        assert_eq!(json, r#""tx-42""#);
        assert_eq!(back, id);
        assert_eq!("tx-42".parse::<SampleId>(), Ok(id.clone()));
        assert_eq!(SampleId::from("tx-42"), id);
    }

    #[test]
    fn a_numeric_id_displays_and_serializes_as_a_bare_number_and_refuses_text() {
        // Arrange
        let id = SampleNum::new(7);

        // Act
        let json = serde_json::to_string(&id).unwrap();
        let back: SampleNum = serde_json::from_str(&json).unwrap();

        // Assert
        assert_eq!(id.to_string(), "7");
        assert_eq!(json, "7");
        assert_eq!(back.get(), 7);
        assert_eq!(" 7 ".parse::<SampleNum>(), Ok(id));
        assert!("seven".parse::<SampleNum>().is_err());
        assert!(serde_json::from_str::<SampleNum>(r#""7""#).is_err());
    }
}
