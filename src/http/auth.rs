//! Who may do what: people from the configuration with Argon2-hashed
//! passwords, sessions in an HttpOnly cookie (only the token's SHA-256 is
//! stored), a CSRF token per session for every request that changes something,
//! three roles, and sign-in attempts rate-limited per name and in all.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use axum::extract::FromRequestParts;
use axum::http::Method;
use axum::http::request::Parts;
use axum_extra::extract::CookieJar;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::App;
use super::error::ApiError;
use crate::config::HttpSettings;
use crate::location::Located;
use crate::store::SessionRow;

/// The session cookie.
pub const COOKIE: &str = "tandem_session";
/// The header that carries the CSRF token on requests that change something.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// What a person may do. Each role may do everything the ones below it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything, changes nothing.
    Viewer,
    /// Resolves conflicts and retries dead letters.
    Support,
    /// Everything: policies, discarding dead letters.
    Admin,
}

impl Role {
    /// The role named so in configuration.
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "viewer" => Some(Role::Viewer),
            "support" => Some(Role::Support),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Support => "support",
            Role::Admin => "admin",
        }
    }
}

/// The people who may sign in.
pub struct Users {
    by_name: BTreeMap<String, (Role, String)>,
    /// Verified against when a name is unknown, so that the answer takes as long.
    decoy: String,
}

impl Users {
    /// Read every user's password hash; `file` is the config, for messages.
    pub fn new(settings: &HttpSettings, file: &std::path::Path) -> Result<Users, Located> {
        let mut by_name = BTreeMap::new();
        for user in &settings.users {
            let hash = user.password_hash.read()?;
            if let Err(e) = PasswordHash::new(&hash) {
                let at = match &user.password_hash {
                    crate::config::PasswordHash::Secret(c) => c.at.clone(),
                    crate::config::PasswordHash::Inline(_) => Located::file(file, String::new()),
                };
                return Err(Located {
                    message: format!(
                        "http.users `{}`: the password hash is not a PHC string: {e}",
                        user.name
                    ),
                    ..at
                });
            }
            let role = Role::parse(&user.role).expect("roles are checked with the config");
            by_name.insert(user.name.clone(), (role, hash));
        }
        let decoy = by_name
            .values()
            .next()
            .map(|(_, hash)| hash.clone())
            .unwrap_or_default();
        Ok(Users { by_name, decoy })
    }

    /// Whether anyone may sign in.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The role of `name` if `password` is theirs. Slow on purpose.
    pub fn verify(&self, name: &str, password: &str) -> Option<Role> {
        let (role, hash) = match self.by_name.get(name) {
            Some((role, hash)) => (Some(*role), hash.as_str()),
            None => (None, self.decoy.as_str()),
        };
        let parsed = PasswordHash::new(hash).ok()?;
        let good = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        role.filter(|_| good)
    }
}

/// An Argon2id hash of `password` with the default (OWASP) cost, as a PHC string.
pub fn hash_password(password: &str) -> String {
    Argon2::default()
        .hash_password(password.as_bytes())
        .expect("hashing with a random salt")
        .to_string()
}

/// An Argon2id hash at a low cost, for tests and the demo's throwaway passwords.
pub fn hash_password_cheaply(password: &str) -> String {
    let params = argon2::Params::new(1024, 1, 1, None).expect("valid parameters");
    Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password(password.as_bytes())
        .expect("hashing with a random salt")
        .to_string()
}

/// Sign-in attempts allowed: per name, and in all.
pub struct SignInLimits {
    per_name: DefaultKeyedRateLimiter<String>,
    overall: DefaultDirectRateLimiter,
}

impl SignInLimits {
    /// 5 attempts a minute per name, 60 a minute in all.
    pub fn new() -> SignInLimits {
        let per_minute = |n| Quota::per_minute(NonZeroU32::new(n).expect("non-zero"));
        SignInLimits {
            per_name: DefaultKeyedRateLimiter::keyed(per_minute(5)),
            overall: DefaultDirectRateLimiter::direct(per_minute(60)),
        }
    }

    /// Take one attempt for `name`, or say how long to wait.
    pub fn check(&self, name: &str) -> Result<(), Duration> {
        let clock = governor::clock::DefaultClock::default();
        use governor::clock::Clock;
        let wait = |not_until: governor::NotUntil<_>| not_until.wait_time_from(clock.now());
        self.per_name
            .check_key(&name.to_lowercase())
            .map_err(wait)?;
        self.overall.check().map_err(wait)
    }
}

impl Default for SignInLimits {
    fn default() -> Self {
        SignInLimits::new()
    }
}

/// The SHA-256 of a session token, hex: what the store keeps.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random token (244 random bits).
pub fn random_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Open a session for `user`: the cookie's token and the session.
pub fn new_session(user: &str, role: Role, lasts: Duration, now: i64) -> (String, SessionRow) {
    let session = SessionRow {
        user: user.to_string(),
        role: role.as_str().to_string(),
        csrf: uuid::Uuid::new_v4().simple().to_string(),
        expires_at: now + lasts.as_millis() as i64,
    };
    (random_token(), session)
}

/// A signed-in person, for a request.
#[derive(Debug, Clone)]
pub struct Person {
    /// The name.
    pub user: String,
    /// The role.
    pub role: Role,
    /// The session's CSRF token.
    pub csrf: String,
    /// The SHA-256 of the session token.
    pub token_hash: String,
}

impl Person {
    /// Refuse with 403 unless the person has at least `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this needs the {} role; {} is {}",
                role.as_str(),
                self.user,
                self.role.as_str()
            )))
        }
    }

    /// Whether `token` is this session's CSRF token.
    pub fn csrf_matches(&self, token: &str) -> bool {
        bool::from(self.csrf.as_bytes().ct_eq(token.as_bytes()))
    }
}

/// The person a session cookie names, or 401.
pub async fn person_of(app: &App, jar: &CookieJar) -> Result<Person, ApiError> {
    let token = jar
        .get(COOKIE)
        .map(|c| c.value().to_string())
        .ok_or(ApiError::Unauthorized)?;
    let hash = token_hash(&token);
    let now = app.engine.clock().now();
    let found = {
        let hash = hash.clone();
        app.engine
            .store()
            .call(move |s| s.session(&hash, now))
            .await?
    };
    let session = found.ok_or(ApiError::Unauthorized)?;
    Ok(Person {
        user: session.user,
        role: Role::parse(&session.role).ok_or(ApiError::Unauthorized)?,
        csrf: session.csrf,
        token_hash: hash,
    })
}

/// A signed-in person of an API request. A request that changes something must
/// carry the session's CSRF token in the `X-CSRF-Token` header.
pub struct ApiPerson(pub Person);

impl FromRequestParts<Arc<App>> for ApiPerson {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &Arc<App>,
    ) -> Result<Self, Self::Rejection> {
        let jar = CookieJar::from_headers(&parts.headers);
        let person = person_of(app, &jar).await?;
        if !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if !person.csrf_matches(sent) {
                return Err(ApiError::Forbidden(
                    "the X-CSRF-Token header is missing or not this session's".into(),
                ));
            }
        }
        Ok(ApiPerson(person))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PasswordHash as Hash, UserSettings};

    fn settings(users: Vec<UserSettings>) -> HttpSettings {
        HttpSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            public_url: "http://127.0.0.1".into(),
            session: Duration::from_secs(3600),
            users,
        }
    }

    #[test]
    fn a_hashed_password_signs_in_with_its_role_and_nothing_else_does() {
        let user = |name: &str, role: &str, hash: String| UserSettings {
            name: name.into(),
            role: role.into(),
            password_hash: Hash::Inline(hash),
        };
        let users = Users::new(
            &settings(vec![
                user("ada", "admin", hash_password("correct horse battery")),
                user("sam", "support", hash_password_cheaply("staple of support")),
            ]),
            std::path::Path::new("tandem.toml"),
        )
        .unwrap();
        assert_eq!(
            users.verify("ada", "correct horse battery"),
            Some(Role::Admin)
        );
        assert_eq!(
            users.verify("sam", "staple of support"),
            Some(Role::Support)
        );
        assert_eq!(users.verify("ada", "staple of support"), None);
        assert_eq!(users.verify("nobody", "correct horse battery"), None);
        assert!(hash_password("x").starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));

        let broken = Users::new(
            &settings(vec![user("eve", "viewer", "$argon2id$nonsense".into())]),
            std::path::Path::new("tandem.toml"),
        );
        assert!(broken.err().unwrap().message.contains("not a PHC string"));
    }

    #[test]
    fn roles_are_ordered_and_sign_in_attempts_are_limited_per_name() {
        assert!(Role::Admin > Role::Support && Role::Support > Role::Viewer);
        let limits = SignInLimits::new();
        for _ in 0..5 {
            assert!(limits.check("Ada").is_ok());
        }
        let wait = limits.check("ada").unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(12),
            "{wait:?}"
        );
        assert!(limits.check("grace").is_ok());
    }
}
