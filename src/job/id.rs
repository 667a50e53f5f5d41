//! Identifiers and validated names: [`JobId`], [`TenantId`], [`JobType`].

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use ulid::Ulid;

use crate::Error;

/// A job's id: a ULID, so ids sort by creation time.
///
/// Its text form is the 26-character ULID. [`FromStr`] also accepts the same 128 bits
/// written as a UUID (`01938f6c-...`), which some clients prefer.
///
/// ```
/// use jobworks::JobId;
/// let id: JobId = "01JD8X7Z3K4M5N6P7Q8R9S0T1V".parse().unwrap();
/// let same: JobId = id.to_uuid_string().parse().unwrap();
/// assert_eq!(id, same);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId(Ulid);

impl JobId {
    /// A fresh id for the current time. Ids minted by one process strictly increase, so
    /// newest-first listings follow submit order even within a millisecond.
    pub fn new() -> Self {
        static GENERATOR: Mutex<ulid::Generator> = Mutex::new(ulid::Generator::new());
        let mut generator = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
        JobId(generator.generate().unwrap_or_else(|_| Ulid::new()))
    }

    /// The id's 128 bits.
    pub fn to_u128(self) -> u128 {
        self.0.0
    }

    /// Builds an id from its 128 bits.
    pub fn from_u128(bits: u128) -> Self {
        JobId(Ulid(bits))
    }

    /// The id written as a hyphenated lowercase UUID.
    pub fn to_uuid_string(self) -> String {
        uuid::Uuid::from_u128(self.0.0).hyphenated().to_string()
    }

    /// Milliseconds since the Unix epoch at which the id was minted.
    pub fn timestamp_ms(self) -> u64 {
        self.0.timestamp_ms()
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; ulid::ULID_LEN];
        f.write_str(self.0.array_to_str(&mut buf))
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobId({self})")
    }
}

/// The text was neither a ULID nor a UUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a job id (expected a ULID or a UUID)")]
pub struct ParseJobIdError;

impl FromStr for JobId {
    type Err = ParseJobIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() == ulid::ULID_LEN {
            // 26 base-32 digits hold 130 bits; a first digit above 7 does not fit in 128,
            // and must not be read as some other id.
            if !s.starts_with(|c: char| ('0'..='7').contains(&c)) {
                return Err(ParseJobIdError);
            }
            return Ulid::from_string(s).map(JobId).map_err(|_| ParseJobIdError);
        }
        // Only the hyphenated and the plain 32-digit forms; no braces or URNs.
        if s.len() != 36 && s.len() != 32 {
            return Err(ParseJobIdError);
        }
        uuid::Uuid::try_parse(s)
            .map(|u| JobId(Ulid(u.as_u128())))
            .map_err(|_| ParseJobIdError)
    }
}

impl Serialize for JobId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for JobId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Defines an id of 128 bits written like a job's: a ULID, or the same bits as a UUID.
macro_rules! ulid_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name($crate::JobId);

        impl $name {
            /// A fresh id for the current time.
            pub fn new() -> Self {
                $name($crate::JobId::new())
            }

            /// The id's 128 bits.
            pub fn to_u128(self) -> u128 {
                self.0.to_u128()
            }

            /// Builds an id from its 128 bits.
            pub fn from_u128(bits: u128) -> Self {
                $name($crate::JobId::from_u128(bits))
            }

            /// The id written as a hyphenated lowercase UUID.
            pub fn to_uuid_string(self) -> String {
                self.0.to_uuid_string()
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Display::fmt(&self.0, f)
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::ParseJobIdError;

            /// A ULID or the same 128 bits as a UUID.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map($name)
            }
        }
    };
}

pub(crate) use ulid_type;

ulid_type!(
    /// A workflow's id: a ULID like a job's, written and parsed the same two ways.
    WorkflowId
);

ulid_type!(
    /// A schedule's id: a ULID like a job's, written and parsed the same two ways.
    ScheduleId
);

/// Defines a validated, cheaply cloned string newtype.
macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:literal, $valid:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Validates and wraps a name.
            ///
            /// # Errors
            /// [`Error::Invalid`] when the name is empty, too long or has characters
            /// outside the allowed set.
            pub fn new(name: impl AsRef<str>) -> Result<Self, Error> {
                let name = name.as_ref();
                if name.is_empty() || name.len() > $max {
                    return Err(Error::invalid(
                        $field,
                        concat!("must be 1 to ", $max, " characters long"),
                    ));
                }
                let valid: fn(&str) -> bool = $valid;
                if !valid(name) {
                    return Err(Error::invalid(
                        $field,
                        format!("{name:?} has characters that are not allowed"),
                    ));
                }
                Ok($name(name.into()))
            }

            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The name's shared text (a reference count, no copy).
            #[allow(dead_code)] // metric labels use it; not every name is one
            pub(crate) fn shared(&self) -> Arc<str> {
                Arc::clone(&self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), &*self.0)
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                Self::new(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_type!(
    /// The scope that owns a job: an organisation, a workspace, a project.
    ///
    /// 1 to 128 characters from `A-Z a-z 0-9 _ - . :`, starting with a letter or digit
    /// (no `/`: tenants name storage prefixes). Compose nested scopes with `:`, as in
    /// `acme:ws1:proj7`.
    TenantId,
    "tenant",
    128,
    |s| {
        s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b))
    }
);

impl TenantId {
    /// A tenant of nested scopes: `["acme", "ws1", "proj7"]` is `acme:ws1:proj7`.
    ///
    /// Each part must be non-empty and must not contain the separator `:`, so different
    /// parts never make the same tenant (`a:b` + `c` and `a` + `b:c` would): compose
    /// tenants from untrusted path parts with this, never with `format!`.
    ///
    /// ```
    /// use jobworks::TenantId;
    /// let t = TenantId::from_parts(["acme", "main", "demo"])?;
    /// assert_eq!(t.as_str(), "acme:main:demo");
    /// assert!(TenantId::from_parts(["acme", "a:b", "c"]).is_err());
    /// # Ok::<(), jobworks::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Invalid`] for an empty part, a part with `:`, or a tenant that
    /// [`TenantId::new`] refuses.
    pub fn from_parts<I, S>(parts: I) -> Result<TenantId, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut joined = String::new();
        for (i, part) in parts.into_iter().enumerate() {
            let part = part.as_ref();
            if part.is_empty() || part.contains(':') {
                return Err(Error::invalid(
                    "tenant",
                    format!("part {} must be non-empty and without ':'", i + 1),
                ));
            }
            if i > 0 {
                joined.push(':');
            }
            joined.push_str(part);
        }
        TenantId::new(joined)
    }
}

name_type!(
    /// The name of a kind of job, such as `REPORT_GENERATION`; executors register for one.
    ///
    /// 1 to 64 characters from `A-Z a-z 0-9 _ - .`, starting with a letter.
    JobType,
    "type",
    64,
    |s| {
        s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
    }
);

name_type!(
    /// The queue a job waits in (`default` unless it names one). Engines subscribe to
    /// queues; each queue has stored settings (pause, concurrency limits, a rate limit)
    /// that every engine on the store obeys.
    ///
    /// 1 to 64 characters from `a-z 0-9 _ . -`.
    QueueName,
    "queue",
    64,
    |s| {
        s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b))
    }
);

impl QueueName {
    /// The name of the queue jobs go to unless they name another.
    pub const DEFAULT: &'static str = "default";
}

impl Default for QueueName {
    /// The `default` queue.
    fn default() -> Self {
        static DEFAULT: std::sync::LazyLock<QueueName> =
            std::sync::LazyLock::new(|| QueueName(QueueName::DEFAULT.into()));
        DEFAULT.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_are_lowercase_words() {
        assert_eq!(QueueName::default().as_str(), "default");
        for good in ["default", "emails", "ai.v2", "a-b_c", "0"] {
            assert!(QueueName::new(good).is_ok(), "{good}");
        }
        for bad in ["", "Emails", "a b", "a/b", &"q".repeat(65)] {
            assert!(QueueName::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn job_id_round_trips_as_ulid_and_uuid() {
        let id = JobId::new();
        assert_eq!(id.to_string().parse::<JobId>().unwrap(), id);
        assert_eq!(id.to_uuid_string().parse::<JobId>().unwrap(), id);
        let plain = id.to_uuid_string().replace('-', "");
        assert_eq!(plain.parse::<JobId>().unwrap(), id);
        // Platforms that write UUIDs in upper case reach the same id.
        assert_eq!(
            id.to_uuid_string().to_uppercase().parse::<JobId>().unwrap(),
            id
        );
        assert_eq!(plain.to_uppercase().parse::<JobId>().unwrap(), id);
        let upper = "2489E9AD-2EE2-8E00-8EC9-32D5F69181C0";
        let seed: JobId = upper.parse().unwrap();
        assert_eq!(seed.to_uuid_string(), upper.to_lowercase());
        let workflow = WorkflowId::new();
        let upper = workflow.to_uuid_string().to_uppercase();
        assert_eq!(upper.parse::<WorkflowId>().unwrap(), workflow);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<JobId>(&json).unwrap(), id);
    }

    #[test]
    fn job_id_rejects_garbage() {
        for bad in [
            "",
            "x",
            "01JD8X7Z3K4M5N6P7Q8R9S0T1",
            "not-a-uuid-at-all-not-a-uuid-at-all",
        ] {
            assert!(bad.parse::<JobId>().is_err(), "{bad:?}");
        }
        // Above 128 bits: `8…` would otherwise wrap around to the id `0…`.
        let id = JobId::new().to_string();
        for first in ['8', '9', 'A', 'Z', 'z'] {
            let overflow = format!("{first}{}", &id[1..]);
            assert!(overflow.parse::<JobId>().is_err(), "{overflow}");
        }
        assert!(format!("7{}", &id[1..]).parse::<JobId>().is_ok());
        assert!(
            "{01938f6c-0000-7000-8000-000000000000}"
                .parse::<JobId>()
                .is_err()
        );
    }

    #[test]
    fn tenants_from_parts_are_injective() {
        let a = TenantId::from_parts(["org", "a", "b.c"]).unwrap();
        let b = TenantId::from_parts(["org", "a.b", "c"]).unwrap();
        assert_ne!(a, b);
        for bad in [
            &["org", "a:b", "c"][..],
            &["org", "a", "b:c"],
            &["org", "", "c"],
            &["org", "a b", "c"],
        ] {
            assert!(TenantId::from_parts(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_are_validated() {
        assert!(TenantId::new("acme:ws1.proj-7_x").is_ok());
        for bad in ["", "..", ".a", "a/b", "a b", "é", &"x".repeat(129)] {
            assert!(TenantId::new(bad).is_err(), "{bad:?}");
        }
        assert!(JobType::new("REPORT_GENERATION").is_ok());
        for bad in ["", "1ABC", "A B", "_X", &"X".repeat(65)] {
            assert!(JobType::new(bad).is_err(), "{bad:?}");
        }
    }
}
