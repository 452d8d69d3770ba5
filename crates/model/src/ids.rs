//! Ids, one type per kind of row, so that a session id is never passed where a user id
//! is meant (both are `BIGINT`s), nor an event's id where a revision is. Each is stored as
//! a `BIGINT` and sent as a JSON integer.

/// Declares an id type over `i64`, with its diesel `BigInt` mapping.
macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash,
            serde::Serialize, serde::Deserialize,
            diesel::expression::AsExpression, diesel::deserialize::FromSqlRow,
        )]
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        #[serde(transparent)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        pub struct $name(pub i64);

        impl diesel::serialize::ToSql<diesel::sql_types::BigInt, diesel::pg::Pg> for $name {
            fn to_sql<'b>(
                &'b self,
                out: &mut diesel::serialize::Output<'b, '_, diesel::pg::Pg>,
            ) -> diesel::serialize::Result {
                diesel::serialize::ToSql::<diesel::sql_types::BigInt, diesel::pg::Pg>::to_sql(
                    &self.0,
                    &mut out.reborrow(),
                )
            }
        }

        impl diesel::deserialize::FromSql<diesel::sql_types::BigInt, diesel::pg::Pg> for $name {
            fn from_sql(value: diesel::pg::PgValue<'_>) -> diesel::deserialize::Result<Self> {
                <i64 as diesel::deserialize::FromSql<diesel::sql_types::BigInt, diesel::pg::Pg>>::from_sql(value)
                    .map(Self)
            }
        }

        impl std::str::FromStr for $name {
            type Err = std::num::ParseIntError;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                text.parse().map(Self)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// A user (`users.id`).
    UserId
);

id_type!(
    /// A session (`sessions.id`): one login of one user.
    SessionId
);

id_type!(
    /// A transition's row in the outbox (`presence_events.id`): the order one user's
    /// transitions happened in.
    EventId
);

id_type!(
    /// A transition's place in the order transitions are published in
    /// (`presence_events.revision`): what a stream's `Last-Event-ID` counts.
    Revision
);

impl Default for Revision {
    /// Before the first revision: a stream that resumes from it misses nothing.
    fn default() -> Self {
        Self(0)
    }
}
