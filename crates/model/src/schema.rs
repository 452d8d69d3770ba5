// @generated automatically by Diesel CLI.

diesel::table! {
    activity_flushes (replica) {
        replica -> Text,
        flushed_through -> Timestamptz,
        reported_at -> Timestamptz,
    }
}

diesel::table! {
    event_partitions (name) {
        name -> Text,
        starts -> Timestamptz,
        ends -> Timestamptz,
        condemned_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    event_publication (singleton) {
        singleton -> Bool,
        sent_through -> Int8,
        dropped_through -> Int8,
    }
}

diesel::table! {
    presence_events (id) {
        id -> Int8,
        user_id -> Int8,
        from_status -> Text,
        to_status -> Text,
        reason -> Text,
        at -> Timestamptz,
        recorded_at -> Timestamptz,
        revision_at -> Nullable<Timestamptz>,
        last_seen -> Nullable<Timestamptz>,
        revision -> Nullable<Int8>,
        details -> Nullable<Jsonb>,
    }
}

diesel::table! {
    presence_samples (at) {
        at -> Timestamptz,
        online -> Int4,
        away -> Int4,
        dnd -> Int4,
        sweep_ms -> Int4,
        swept -> Int4,
        publish_lag_ms -> Int4,
        streams_open -> Nullable<Int4>,
        published_through -> Int8,
        transitions_login -> Int4,
        transitions_logout -> Int4,
        transitions_heartbeat -> Int4,
        transitions_activity -> Int4,
        transitions_idle -> Int4,
        transitions_manual -> Int4,
        transitions_expiry -> Int4,
        transitions_sweep -> Int4,
        transitions_status_text -> Int4,
    }
}

diesel::table! {
    sessions (id) {
        id -> Int8,
        user_id -> Int8,
        token_hash -> Bytea,
        created_at -> Timestamptz,
        last_seen -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
        active_at -> Timestamptz,
    }
}

diesel::table! {
    settings (name) {
        name -> Text,
        value -> Text,
    }
}

diesel::table! {
    sweep_runs (id) {
        id -> Int8,
        tick_at -> Timestamptz,
        started_at -> Timestamptz,
        finished_at -> Nullable<Timestamptz>,
        users_marked_offline -> Nullable<Int4>,
        swept_by -> Nullable<Text>,
    }
}

diesel::table! {
    users (id) {
        id -> Int8,
        username -> Text,
        password_hash -> Text,
        is_admin -> Bool,
        online_status -> Text,
        last_seen -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        changed_at -> Timestamptz,
        active_at -> Nullable<Timestamptz>,
        availability -> Text,
        availability_until -> Nullable<Timestamptz>,
        invisible_since -> Nullable<Timestamptz>,
        status_text -> Nullable<Text>,
        status_emoji -> Nullable<Text>,
        status_expires_at -> Nullable<Timestamptz>,
        published_presence -> Text,
        published_details -> Nullable<Jsonb>,
    }
}

diesel::joinable!(presence_events -> users (user_id));
diesel::joinable!(sessions -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(
    activity_flushes,
    event_partitions,
    event_publication,
    presence_events,
    presence_samples,
    sessions,
    settings,
    sweep_runs,
    users,
);
