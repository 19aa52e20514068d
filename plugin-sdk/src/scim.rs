//! Typed read access to SCIM resources as plugins receive them.

use serde_json::Value;

/// The enterprise User extension's schema URN.
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// A SCIM user as the IdP sent it (canonical attribute names).
///
/// ```
/// use mapwright_plugin_sdk::User;
/// let u = User::from_json(r#"{
///     "userName": "jane.doe@acme.com",
///     "name": {"givenName": "Jane", "familyName": "Doe"},
///     "emails": [{"value": "jane@home.org", "type": "home"}, {"value": "jane.doe@acme.com", "type": "work", "primary": true}],
///     "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Engineering"}
/// }"#).unwrap();
/// assert_eq!(u.user_name(), "jane.doe@acme.com");
/// assert_eq!(u.given_name(), Some("Jane"));
/// assert_eq!(u.primary_email(), Some("jane.doe@acme.com"));
/// assert_eq!(u.enterprise("department"), Some("Engineering"));
/// assert_eq!(u.get("name.familyName").and_then(|v| v.as_str()), Some("Doe"));
/// ```
#[derive(Debug, Clone)]
pub struct User {
    /// The JSON text, parsed on first use: a hook that never looks at the user (a default
    /// group for everyone) does not pay for parsing it.
    text: String,
    parsed: std::cell::OnceCell<Value>,
}

impl PartialEq for User {
    fn eq(&self, other: &User) -> bool {
        self.json() == other.json()
    }
}

impl User {
    /// Parses a user from SCIM JSON.
    pub fn from_json(text: &str) -> Result<User, serde_json::Error> {
        Ok(User::from_value(serde_json::from_str(text)?))
    }

    /// Wraps an already-parsed SCIM JSON value.
    pub fn from_value(json: Value) -> User {
        User { text: String::new(), parsed: std::cell::OnceCell::from(json) }
    }

    /// A user the host sent: its JSON is parsed when first needed (the host only sends
    /// valid JSON; were it not, the user would read as empty).
    pub(crate) fn lazy(text: String) -> User {
        User { text, parsed: std::cell::OnceCell::new() }
    }

    /// The whole resource.
    pub fn json(&self) -> &Value {
        self.parsed.get_or_init(|| serde_json::from_str(&self.text).unwrap_or(Value::Null))
    }

    /// `userName` (empty if absent).
    pub fn user_name(&self) -> &str {
        self.str("userName").unwrap_or_default()
    }

    /// `externalId`.
    pub fn external_id(&self) -> Option<&str> {
        self.str("externalId")
    }

    /// `displayName`.
    pub fn display_name(&self) -> Option<&str> {
        self.str("displayName")
    }

    /// `name.givenName`.
    pub fn given_name(&self) -> Option<&str> {
        self.get("name.givenName").and_then(Value::as_str)
    }

    /// `name.familyName`.
    pub fn family_name(&self) -> Option<&str> {
        self.get("name.familyName").and_then(Value::as_str)
    }

    /// `active` (true if absent, as SCIM defaults it).
    pub fn active(&self) -> bool {
        self.json().get("active").and_then(Value::as_bool).unwrap_or(true)
    }

    /// All email addresses, in order.
    pub fn emails(&self) -> impl Iterator<Item = &str> {
        self.multi("emails").filter_map(|e| e.get("value").and_then(Value::as_str))
    }

    /// The primary email, else the `work` one, else the first.
    pub fn primary_email(&self) -> Option<&str> {
        let pick = |pred: &dyn Fn(&Value) -> bool| self.multi("emails").find(|e| pred(e)).and_then(|e| e.get("value")).and_then(Value::as_str);
        pick(&|e| e.get("primary").and_then(Value::as_bool) == Some(true))
            .or_else(|| pick(&|e| e.get("type").and_then(Value::as_str) == Some("work")))
            .or_else(|| self.emails().next())
    }

    /// An attribute of the enterprise extension (`department`, `costCenter`, ...); for
    /// `manager` this is the manager's id.
    pub fn enterprise(&self, attr: &str) -> Option<&str> {
        let ext = self.json().get(ENTERPRISE)?;
        match ext.get(attr)? {
            Value::String(s) => Some(s),
            Value::Object(o) => o.get("value").and_then(Value::as_str),
            _ => None,
        }
    }

    /// Any attribute by path: `title`, `name.givenName`, `emails` (the array),
    /// or a URN-qualified path such as `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department`
    /// (also for custom extensions the server does not know).
    pub fn get(&self, path: &str) -> Option<&Value> {
        get_path(self.json(), path)
    }

    fn str(&self, key: &str) -> Option<&str> {
        self.json().get(key).and_then(Value::as_str)
    }

    fn multi(&self, key: &str) -> impl Iterator<Item = &Value> {
        self.json().get(key).and_then(Value::as_array).into_iter().flatten()
    }
}

/// Resolves `a.b`, or `urn:...:Schema:attr.sub`, in a JSON object.
pub(crate) fn get_path<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    let (container, rest) = if path.len() > 4 && path.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:")) {
        let i = path.rfind(':')?;
        (root.get(&path[..i])?, &path[i + 1..])
    } else {
        (root, path)
    };
    rest.split('.').try_fold(container, |v, k| v.get(k))
}

/// An IdP group, as the groups hook receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// The group's id in this server.
    pub id: String,
    /// The IdP's display name.
    pub display_name: String,
    /// The IdP's own identifier for the group.
    pub external_id: Option<String>,
}
