//! The words of presence, with no query behind them: what a user is shown (`Presence`),
//! the manual status they set (`Availability`), the stored connection flag
//! (`OnlineStatus`), what caused a transition (`ChangeReason`) and what a request counts as
//! (`CountsAs`). Everything else in the crate is said in these.

crate::text_enum::text_enum! {
    /// A user's presence as shown.
    pub enum Presence {
        Online = "online",
        Away = "away",
        Dnd = "dnd",
        Offline = "offline",
    }
}

impl Presence {
    /// What clients that know only online and offline are shown: online while connected.
    pub fn online_status(self) -> OnlineStatus {
        match self {
            Self::Offline => OnlineStatus::Offline,
            Self::Online | Self::Away | Self::Dnd => OnlineStatus::Online,
        }
    }
}

crate::text_enum::text_enum! {
    /// The manual status a user sets; `auto` leaves presence to their activity.
    pub enum Availability {
        Auto = "auto",
        Away = "away",
        Dnd = "dnd",
        Invisible = "invisible",
    }
}

crate::text_enum::text_enum! {
    /// Connected or not: the stored flag, and what clients that know two states are shown.
    pub enum OnlineStatus {
        Online = "online",
        Offline = "offline",
    }
}

crate::text_enum::text_enum! {
    /// What caused a transition.
    pub enum ChangeReason {
        Login = "login",
        Logout = "logout",
        Heartbeat = "heartbeat",
        Activity = "activity",
        /// No real use of the app for the away timeout.
        Idle = "idle",
        /// The user set their availability.
        Manual = "manual",
        /// A manual status or a custom status reached its end.
        Expiry = "expiry",
        Sweep = "sweep",
        /// The user changed their custom status (text or emoji) only.
        StatusText = "status_text",
    }
}

/// What an authenticated request counts as, declared by its route: the one rule of what
/// is activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountsAs {
    /// The app's periodic heartbeat: connection, and use unless its body says the page
    /// is idle; recorded as `heartbeat`.
    Heartbeat,
    /// Any other use of the app: activity, recorded as `activity`.
    Activity,
    /// Ends the session (logout): never activity, so it can never bring a user online, and
    /// a user the sweep took offline who logs out makes no transition at all.
    Nothing,
}

impl CountsAs {
    /// What a transition caused by this request is recorded as; `None` when the request is
    /// not activity.
    pub fn reason(self) -> Option<ChangeReason> {
        match self {
            Self::Heartbeat => Some(ChangeReason::Heartbeat),
            Self::Activity => Some(ChangeReason::Activity),
            Self::Nothing => None,
        }
    }

    /// Whether the request is real use of the app (it keeps the user from being away):
    /// any activity but a heartbeat whose body says `{"active": false}`.
    pub fn is_use(self, declared_active: Option<bool>) -> bool {
        match self {
            Self::Heartbeat => declared_active.unwrap_or(true),
            Self::Activity => true,
            Self::Nothing => false,
        }
    }
}
