//! Enums stored as `TEXT` (with a `CHECK` constraint in the schema) and sent as
//! lowercase JSON strings.

/// Declares such an enum with its diesel `Text` mapping and serde names.
macro_rules! text_enum {
    ($(#[$meta:meta])* pub enum $name:ident {
        $($(#[$variant_meta:meta])* $variant:ident = $text:literal),+ $(,)?
    }) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash,
            serde::Serialize, serde::Deserialize,
            diesel::expression::AsExpression, diesel::deserialize::FromSqlRow,
        )]
        #[diesel(sql_type = diesel::sql_types::Text)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        // utoipa does not see the per-variant names below (they come through a macro
        // fragment), but it does read this: the texts are the variants in snake case, and
        // the OpenAPI test holds the document to `as_str`.
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$variant_meta])* #[serde(rename = $text)] $variant,)+
        }

        impl $name {
            /// Every value, in the order declared.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }
        }

        impl diesel::serialize::ToSql<diesel::sql_types::Text, diesel::pg::Pg> for $name {
            fn to_sql<'b>(
                &'b self,
                out: &mut diesel::serialize::Output<'b, '_, diesel::pg::Pg>,
            ) -> diesel::serialize::Result {
                std::io::Write::write_all(out, self.as_str().as_bytes())?;
                Ok(diesel::serialize::IsNull::No)
            }
        }

        impl diesel::deserialize::FromSql<diesel::sql_types::Text, diesel::pg::Pg> for $name {
            fn from_sql(value: diesel::pg::PgValue<'_>) -> diesel::deserialize::Result<Self> {
                match std::str::from_utf8(value.as_bytes()) {
                    $(Ok($text) => Ok(Self::$variant),)+
                    _ => Err(format!(
                        concat!("unknown ", stringify!($name), " {:?}"),
                        String::from_utf8_lossy(value.as_bytes())
                    )
                    .into()),
                }
            }
        }
    };
}

pub(crate) use text_enum;
