//! Enums written by name: one list gives the variants, their wire values
//! and their names, and `ALL`, `as_str`, `from_name` and `from_u8` come from
//! it, so a name is spelled once.

/// Defines a `#[repr(u8)]` enum whose variants each have a wire value and a
/// name:
///
/// ```
/// pitap_wire::named_enum! {
///     /// A colour.
///     #[derive(Clone, Copy, Debug, PartialEq, Eq)]
///     pub enum Colour {
///         Red = 0 => "red",
///         Green = 1 => "green",
///     }
/// }
/// assert_eq!(Colour::from_name("green"), Some(Colour::Green));
/// assert_eq!(Colour::from_u8(0).map(Colour::as_str), Some("red"));
/// ```
#[macro_export]
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal => $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[repr(u8)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant = $value, )+
        }

        impl $name {
            /// Every value, in the order of their wire values.
            pub const ALL: [$name; [$($value),+].len()] = [$($name::$variant),+];

            /// The name it is written and read as.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }

            /// The value written as `name`.
            pub fn from_name(name: &str) -> Option<Self> {
                Self::ALL.into_iter().find(|v| v.as_str() == name)
            }

            /// The value of a wire byte.
            pub fn from_u8(v: u8) -> Option<Self> {
                Self::ALL.into_iter().find(|x| *x as u8 == v)
            }
        }
    };
}
