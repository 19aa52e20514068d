//! The SCIM schemas this server implements (RFC 7643 §4 and §8.7), as data.
//!
//! One table serves three purposes so they cannot drift apart: validating and canonicalising
//! incoming resources, typing filter comparisons (caseExact, multi-valued), and the `/Schemas`
//! discovery document.

use serde_json::{Map, Value, json};

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    String,
    Boolean,
    Decimal,
    Integer,
    DateTime,
    Binary,
    Reference,
    Complex,
}

impl AttrType {
    pub fn as_str(self) -> &'static str {
        match self {
            AttrType::String => "string",
            AttrType::Boolean => "boolean",
            AttrType::Decimal => "decimal",
            AttrType::Integer => "integer",
            AttrType::DateTime => "dateTime",
            AttrType::Binary => "binary",
            AttrType::Reference => "reference",
            AttrType::Complex => "complex",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    ReadOnly,
    ReadWrite,
    Immutable,
    WriteOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    Always,
    Default,
    Never,
}

/// One attribute definition.
#[derive(Debug)]
pub struct AttrDef {
    pub name: &'static str,
    pub ty: AttrType,
    pub multi: bool,
    pub required: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub returned: Returned,
    /// `server` uniqueness (RFC 7643 §7); everything else is `none`.
    pub unique: bool,
    pub canonical: &'static [&'static str],
    pub reference_types: &'static [&'static str],
    pub sub: &'static [AttrDef],
    pub description: &'static str,
}

const fn base(name: &'static str, ty: AttrType, description: &'static str) -> AttrDef {
    AttrDef {
        name,
        ty,
        multi: false,
        required: false,
        case_exact: false,
        mutability: Mutability::ReadWrite,
        returned: Returned::Default,
        unique: false,
        canonical: &[],
        reference_types: &[],
        sub: &[],
        description,
    }
}
const fn s(name: &'static str, d: &'static str) -> AttrDef {
    base(name, AttrType::String, d)
}
const fn b(name: &'static str, d: &'static str) -> AttrDef {
    base(name, AttrType::Boolean, d)
}
const fn complex(name: &'static str, sub: &'static [AttrDef], d: &'static str) -> AttrDef {
    AttrDef { sub, ..base(name, AttrType::Complex, d) }
}
const fn multi(name: &'static str, sub: &'static [AttrDef], d: &'static str) -> AttrDef {
    AttrDef { multi: true, sub, ..base(name, AttrType::Complex, d) }
}
const fn typed(canonical: &'static [&'static str]) -> AttrDef {
    AttrDef { canonical, ..s("type", "A label indicating the attribute's function.") }
}
const fn read_only(a: AttrDef) -> AttrDef {
    AttrDef { mutability: Mutability::ReadOnly, ..a }
}

const VALUE: AttrDef = s("value", "The attribute's value.");
const DISPLAY: AttrDef = s("display", "A human-readable name, primarily used for display purposes.");
const PRIMARY: AttrDef = b("primary", "Whether this is the preferred value of the attribute.");

const EMAIL_SUB: &[AttrDef] = &[VALUE, DISPLAY, typed(&["work", "home", "other"]), PRIMARY];
const PHONE_SUB: &[AttrDef] =
    &[VALUE, DISPLAY, typed(&["work", "home", "mobile", "fax", "pager", "other"]), PRIMARY];
const IM_SUB: &[AttrDef] =
    &[VALUE, DISPLAY, typed(&["aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"]), PRIMARY];
const PHOTO_SUB: &[AttrDef] = &[
    AttrDef { reference_types: &["external"], case_exact: true, ..base("value", AttrType::Reference, "URL of a photo.") },
    DISPLAY,
    typed(&["photo", "thumbnail"]),
    PRIMARY,
];
const GENERIC_SUB: &[AttrDef] = &[VALUE, DISPLAY, s("type", "A label indicating the attribute's function."), PRIMARY];
const CERT_SUB: &[AttrDef] = &[
    AttrDef { case_exact: true, ..base("value", AttrType::Binary, "A DER-encoded X.509 certificate.") },
    DISPLAY,
    s("type", "A label indicating the attribute's function."),
    PRIMARY,
];
const ADDRESS_SUB: &[AttrDef] = &[
    s("formatted", "The full mailing address."),
    s("streetAddress", "The full street address component."),
    s("locality", "The city or locality component."),
    s("region", "The state or region component."),
    s("postalCode", "The zip code or postal code component."),
    s("country", "The country name component."),
    typed(&["work", "home", "other"]),
    PRIMARY,
];
const NAME_SUB: &[AttrDef] = &[
    s("formatted", "The full name, formatted for display."),
    s("familyName", "The family name of the User."),
    s("givenName", "The given name of the User."),
    s("middleName", "The middle name(s) of the User."),
    s("honorificPrefix", "The honorific prefix(es) of the User."),
    s("honorificSuffix", "The honorific suffix(es) of the User."),
];
const GROUP_REF_SUB: &[AttrDef] = &[
    read_only(VALUE),
    read_only(AttrDef { reference_types: &["Group"], case_exact: true, ..base("$ref", AttrType::Reference, "The URI of the Group.") }),
    read_only(DISPLAY),
    read_only(AttrDef { canonical: &["direct", "indirect"], ..s("type", "How the membership was derived.") }),
];

pub static USER_ATTRS: &[AttrDef] = &[
    AttrDef {
        required: true,
        unique: true,
        ..s("userName", "Unique identifier for the User, typically used to authenticate. Unique case-insensitively within an IdP connection.")
    },
    complex("name", NAME_SUB, "The components of the user's real name."),
    s("displayName", "The name of the User, suitable for display to end-users."),
    s("nickName", "The casual way to address the user."),
    AttrDef { reference_types: &["external"], ..base("profileUrl", AttrType::Reference, "A fully qualified URL to the User's online profile.") },
    s("title", "The user's title, such as \"Vice President\"."),
    s("userType", "Identifies the relationship between the organization and the user."),
    s("preferredLanguage", "The User's preferred written or spoken language."),
    s("locale", "The User's default location for localizing."),
    s("timezone", "The User's time zone in the Olson time zone database format."),
    b("active", "The User's administrative status."),
    multi("emails", EMAIL_SUB, "Email addresses for the user."),
    multi("phoneNumbers", PHONE_SUB, "Phone numbers for the User."),
    multi("ims", IM_SUB, "Instant messaging addresses for the User."),
    multi("photos", PHOTO_SUB, "URLs of photos of the User."),
    multi("addresses", ADDRESS_SUB, "A physical mailing address for this User."),
    read_only(multi("groups", GROUP_REF_SUB, "The groups of this IdP connection that the user belongs to.")),
    multi("entitlements", GENERIC_SUB, "A list of entitlements for the User."),
    multi("roles", GENERIC_SUB, "A list of roles for the User."),
    multi("x509Certificates", CERT_SUB, "A list of certificates issued to the User."),
];

const MANAGER_SUB: &[AttrDef] = &[
    s("value", "The id of the SCIM resource representing the User's manager."),
    AttrDef { reference_types: &["User"], case_exact: true, ..base("$ref", AttrType::Reference, "The URI of the manager.") },
    read_only(s("displayName", "The displayName of the User's manager.")),
];

pub static ENTERPRISE_ATTRS: &[AttrDef] = &[
    s("employeeNumber", "Numeric or alphanumeric identifier assigned to a person."),
    s("costCenter", "Identifies the name of a cost center."),
    s("organization", "Identifies the name of an organization."),
    s("division", "Identifies the name of a division."),
    s("department", "Identifies the name of a department."),
    complex("manager", MANAGER_SUB, "The User's manager."),
];

// RFC 7643 §8.7.1 defines no `display` for members: a member is its id, URI and type.
const MEMBER_SUB: &[AttrDef] = &[
    AttrDef { mutability: Mutability::Immutable, case_exact: true, ..s("value", "Identifier of the member of this Group.") },
    AttrDef { mutability: Mutability::Immutable, reference_types: &["User"], case_exact: true, ..base("$ref", AttrType::Reference, "The URI of the member.") },
    AttrDef { mutability: Mutability::Immutable, canonical: &["User"], ..s("type", "The type of member.") },
];

pub static GROUP_ATTRS: &[AttrDef] = &[
    AttrDef { required: true, ..s("displayName", "A human-readable name for the Group.") },
    multi("members", MEMBER_SUB, "A list of members of the Group (users of the same IdP connection)."),
];

/// Attributes every resource has (RFC 7643 §3.1).
pub static COMMON_ATTRS: &[AttrDef] = &[
    AttrDef { case_exact: true, mutability: Mutability::ReadOnly, returned: Returned::Always, unique: true, ..s("id", "Server-assigned identifier.") },
    AttrDef { case_exact: true, ..s("externalId", "Identifier assigned by the provisioning client.") },
    read_only(complex(
        "meta",
        &[
            AttrDef { case_exact: true, ..s("resourceType", "") },
            base("created", AttrType::DateTime, ""),
            base("lastModified", AttrType::DateTime, ""),
            AttrDef { case_exact: true, ..base("location", AttrType::Reference, "") },
            AttrDef { case_exact: true, ..s("version", "") },
        ],
        "Resource metadata.",
    )),
];

/// The two resource types this server serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    User,
    Group,
}

impl ResourceKind {
    pub fn name(self) -> &'static str {
        match self {
            ResourceKind::User => "User",
            ResourceKind::Group => "Group",
        }
    }
    pub fn endpoint(self) -> &'static str {
        match self {
            ResourceKind::User => "Users",
            ResourceKind::Group => "Groups",
        }
    }
    pub fn core_schema(self) -> &'static str {
        match self {
            ResourceKind::User => USER_SCHEMA,
            ResourceKind::Group => GROUP_SCHEMA,
        }
    }
    pub fn core_attrs(self) -> &'static [AttrDef] {
        match self {
            ResourceKind::User => USER_ATTRS,
            ResourceKind::Group => GROUP_ATTRS,
        }
    }
    /// Extension schemas: (URN, attributes).
    pub fn extensions(self) -> &'static [(&'static str, &'static [AttrDef])] {
        static USER_EXTENSIONS: [(&str, &[AttrDef]); 1] = [(ENTERPRISE_SCHEMA, ENTERPRISE_ATTRS)];
        match self {
            ResourceKind::User => &USER_EXTENSIONS,
            ResourceKind::Group => &[],
        }
    }
}

/// Does `s` start with `urn:` (any case)? Safe on any UTF-8 input.
pub fn has_urn_prefix(s: &str) -> bool {
    s.len() > 4 && s.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:"))
}

/// Is `key` the URN of a schema this server knows (core or extension) for `kind`?
pub fn is_known_schema(kind: ResourceKind, key: &str) -> bool {
    key.eq_ignore_ascii_case(kind.core_schema()) || extension_urn(kind, key).is_some()
}

/// Does this URN name a whole resource extension (`urn:...:2.0:User`) rather than an
/// attribute inside one (`urn:...:2.0:User:department`)?
pub fn looks_like_extension(urn: &str) -> bool {
    let last = urn.rsplit(':').next().unwrap_or_default();
    last.eq_ignore_ascii_case("User") || last.eq_ignore_ascii_case("Group")
}

pub fn find<'a>(attrs: &'a [AttrDef], name: &str) -> Option<&'a AttrDef> {
    attrs.iter().find(|a| a.name.eq_ignore_ascii_case(name))
}

/// Where a top-level attribute lives: the core schema or an extension (by URN).
#[derive(Debug, Clone, Copy)]
pub struct Located {
    /// `None` for core and common attributes; the extension URN otherwise.
    pub extension: Option<&'static str>,
    pub def: &'static AttrDef,
}

/// Resolves a top-level attribute, optionally URN-qualified (`urn:...:User:userName`).
pub fn locate(kind: ResourceKind, urn: Option<&str>, name: &str) -> Option<Located> {
    match urn {
        // Unqualified: the core schema's, else the one extension that has it. IdPs write
        // `manager` for the enterprise extension's (Entra's PATCH paths do).
        None => find(COMMON_ATTRS, name).or_else(|| find(kind.core_attrs(), name)).map(|def| Located { extension: None, def }).or_else(|| {
            let mut found = kind.extensions().iter().filter_map(|(urn, attrs)| find(attrs, name).map(|def| Located { extension: Some(*urn), def }));
            let first = found.next();
            // Two extensions with that name: ambiguous, so the caller asks for the URN.
            if found.next().is_some() { None } else { first }
        }),
        Some(u) if u.eq_ignore_ascii_case(kind.core_schema()) => {
            find(COMMON_ATTRS, name).or_else(|| find(kind.core_attrs(), name)).map(|def| Located { extension: None, def })
        }
        Some(u) => kind
            .extensions()
            .iter()
            .find(|(urn, _)| urn.eq_ignore_ascii_case(u))
            .and_then(|(urn, attrs)| find(attrs, name).map(|def| Located { extension: Some(*urn), def })),
    }
}

/// The extension URN a key names, in canonical case (`None` if it is not an extension key).
pub fn extension_urn(kind: ResourceKind, key: &str) -> Option<&'static str> {
    kind.extensions().iter().map(|(u, _)| *u).find(|u| u.eq_ignore_ascii_case(key))
}

// ---------------------------------------------------------------------------------------------
// Discovery documents, generated from the tables above.

fn attr_json(a: &AttrDef) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), a.name.into());
    m.insert("type".into(), a.ty.as_str().into());
    m.insert("multiValued".into(), a.multi.into());
    m.insert("description".into(), a.description.into());
    m.insert("required".into(), a.required.into());
    if matches!(a.ty, AttrType::String | AttrType::Reference | AttrType::Binary) {
        m.insert("caseExact".into(), a.case_exact.into());
    }
    if !a.canonical.is_empty() {
        m.insert("canonicalValues".into(), json!(a.canonical));
    }
    if !a.reference_types.is_empty() {
        m.insert("referenceTypes".into(), json!(a.reference_types));
    }
    let mutability = match a.mutability {
        Mutability::ReadOnly => "readOnly",
        Mutability::ReadWrite => "readWrite",
        Mutability::Immutable => "immutable",
        Mutability::WriteOnly => "writeOnly",
    };
    m.insert("mutability".into(), mutability.into());
    let returned = match a.returned {
        Returned::Always => "always",
        Returned::Default => "default",
        Returned::Never => "never",
    };
    m.insert("returned".into(), returned.into());
    m.insert("uniqueness".into(), if a.unique { "server" } else { "none" }.into());
    if !a.sub.is_empty() {
        m.insert("subAttributes".into(), Value::Array(a.sub.iter().map(attr_json).collect()));
    }
    Value::Object(m)
}

fn schema_json(id: &str, name: &str, description: &str, attrs: &[AttrDef], base_url: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": id,
        "name": name,
        "description": description,
        "attributes": attrs.iter().map(attr_json).collect::<Vec<_>>(),
        "meta": { "resourceType": "Schema", "location": format!("{base_url}/Schemas/{id}") },
    })
}

/// All schema documents, in the order `/Schemas` lists them.
pub fn schema_documents(base_url: &str) -> Vec<Value> {
    vec![
        schema_json(USER_SCHEMA, "User", "User Account", USER_ATTRS, base_url),
        schema_json(ENTERPRISE_SCHEMA, "EnterpriseUser", "Enterprise User", ENTERPRISE_ATTRS, base_url),
        schema_json(GROUP_SCHEMA, "Group", "Group", GROUP_ATTRS, base_url),
    ]
}

pub fn resource_type_documents(base_url: &str) -> Vec<Value> {
    [ResourceKind::User, ResourceKind::Group]
        .into_iter()
        .map(|k| {
            let ext: Vec<Value> =
                k.extensions().iter().map(|(u, _)| json!({"schema": u, "required": false})).collect();
            let mut v = json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
                "id": k.name(),
                "name": k.name(),
                "endpoint": format!("/{}", k.endpoint()),
                "description": format!("{} resources provisioned by this IdP connection", k.name()),
                "schema": k.core_schema(),
                "meta": { "resourceType": "ResourceType", "location": format!("{base_url}/ResourceTypes/{}", k.name()) },
            });
            if !ext.is_empty()
                && let Some(o) = v.as_object_mut()
            {
                o.insert("schemaExtensions".into(), Value::Array(ext));
            }
            v
        })
        .collect()
}
