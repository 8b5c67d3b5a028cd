//! Authorization rules: an ordered list read from a TOML file in `conf/` (like Puppet's
//! `auth.conf`). The first rule whose path and method match a request decides; a caller
//! in its `deny` list is refused, one in its `allow` list admitted, anyone else refused.
//! A request no rule matches is refused.
//!
//! `conf/auth.toml` documents the format and holds the shipped defaults (the roles of
//! `manual::api`, and Puppet's defaults for `/puppet-ca/v1`); they are also compiled in, and
//! used when `[authz] rules` names no file.

use std::fmt;

use regex::Regex;
use serde::Deserialize;
use thiserror::Error;
use toml::Spanned;

use super::{Identity, Role};
use crate::ca::{Certname, EnvName};

/// The shipped rules, compiled in.
const BUILTIN: &str = include_str!("../../conf/auth.toml");

/// Why a rules file cannot be used.
#[derive(Debug, Error)]
pub enum AuthzError {
    /// The file is malformed: bad TOML, an unknown key, or a value certd cannot use.
    #[error("{origin}:{line}: {message}")]
    Rules {
        /// Where the rules came from (a path).
        origin: String,
        /// The 1-based line of the offending value.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// A validated, ordered rule list.
#[derive(Debug, Clone)]
pub struct Rules {
    rules: Vec<Rule>,
}

/// How far the rights reach that the rules give a certificate by naming it
/// ([`Rules::singles_out`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Within the environment whose CA issued it.
    Environment,
    /// Beyond it: a certificate from any environment's CA is admitted.
    Everywhere,
}

#[derive(Debug, Clone)]
struct Rule {
    name: String,
    path: PathMatch,
    /// Upper-case method names; `None` matches every method.
    methods: Option<Vec<String>>,
    environment: Option<Template>,
    allow: Vec<Who>,
    deny: Vec<Who>,
}

#[derive(Debug, Clone)]
enum PathMatch {
    Prefix(String),
    Regex(Regex),
}

/// A literal, or a reference to a capture of the rule's regex (`$env`, `$1`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Template {
    Literal(String),
    Capture(String),
}

/// Who a rule speaks of.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Who {
    Anyone,
    Anonymous,
    AnonymousWhereAllowed,
    Authenticated,
    Members,
    Admins,
    GlobalAdmins,
    Certname(Template),
    Member(Template),
    Extension { oid: String, value: String },
}

/// What the rules need to know about the environment a rule speaks of.
#[derive(Debug, Clone, Copy)]
pub struct EnvFacts<'a> {
    /// The environment.
    pub name: &'a EnvName,
    /// Its own administrators (with a certificate from its CA).
    pub admins: &'a [Certname],
    /// Whether an anonymous caller may submit a CSR there.
    pub allow_anonymous_csr: bool,
}

/// The rule that matched a request, with its captures.
#[derive(Debug)]
pub struct Matched<'r> {
    rule: &'r Rule,
    captures: Vec<(String, String)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Spanned<String>,
    path: Option<Spanned<String>>,
    regex: Option<Spanned<String>>,
    methods: Option<Vec<Spanned<String>>>,
    environment: Option<Spanned<String>>,
    #[serde(default)]
    allow: Vec<Spanned<String>>,
    #[serde(default)]
    deny: Vec<Spanned<String>>,
}

const METHODS: &[&str] = &["GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"];

impl Rules {
    /// The shipped defaults (`conf/auth.toml`, compiled in).
    #[allow(
        clippy::expect_used,
        reason = "the shipped rules are compiled in; a unit test parses them"
    )]
    pub fn builtin() -> Rules {
        Rules::parse(BUILTIN, "conf/auth.toml (built in)").expect("the shipped rules are valid")
    }

    /// Parses and validates rules text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Rules, AuthzError> {
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let err = |offset: usize, message: String| AuthzError::Rules {
            origin: origin.to_owned(),
            line: line_of(offset),
            message,
        };
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let offset = e.span().map(|s| s.start).unwrap_or(0);
            err(offset, e.message().to_owned())
        })?;
        if raw.rule.is_empty() {
            return Err(err(0, "no [[rule]]: every request would be refused".into()));
        }
        let mut rules: Vec<Rule> = Vec::with_capacity(raw.rule.len());
        for spanned in raw.rule {
            let at = spanned.span().start;
            let r = spanned.into_inner();
            let name = r.name.get_ref().trim().to_owned();
            if name.is_empty() {
                return Err(err(r.name.span().start, "a rule's name is empty".into()));
            }
            if rules.iter().any(|x| x.name == name) {
                return Err(err(
                    r.name.span().start,
                    format!("two rules are named {name:?}; denials are logged by name"),
                ));
            }
            let (path, groups) = match (&r.path, &r.regex) {
                (Some(p), None) => {
                    if !p.get_ref().starts_with('/') {
                        return Err(err(p.span().start, "a path prefix starts with /".into()));
                    }
                    (PathMatch::Prefix(p.get_ref().clone()), Vec::new())
                }
                (None, Some(re)) => {
                    let compiled = regex::RegexBuilder::new(re.get_ref())
                        .size_limit(1 << 20)
                        .build()
                        .map_err(|e| err(re.span().start, format!("bad regex: {e}")))?;
                    let mut groups: Vec<String> = (1..compiled.captures_len())
                        .map(|i| i.to_string())
                        .collect();
                    groups.extend(compiled.capture_names().flatten().map(str::to_owned));
                    (PathMatch::Regex(compiled), groups)
                }
                _ => {
                    return Err(err(
                        at,
                        format!("rule {name:?} needs exactly one of path and regex"),
                    ))
                }
            };
            let template = |s: &Spanned<String>| {
                template_of(s.get_ref(), &groups).map_err(|m| err(s.span().start, m))
            };
            let methods = match &r.methods {
                None => None,
                Some(list) => {
                    let mut out = Vec::new();
                    for m in list {
                        let upper = m.get_ref().to_ascii_uppercase();
                        if !METHODS.contains(&upper.as_str()) {
                            return Err(err(
                                m.span().start,
                                format!("unknown method {:?}", m.get_ref()),
                            ));
                        }
                        out.push(upper);
                    }
                    Some(out)
                }
            };
            let environment = match &r.environment {
                None => None,
                Some(e) => {
                    let t = template(e)?;
                    if let Template::Literal(l) = &t {
                        EnvName::parse(l).map_err(|x| err(e.span().start, x.to_string()))?;
                    }
                    Some(t)
                }
            };
            let who = |list: &[Spanned<String>]| -> Result<Vec<Who>, AuthzError> {
                list.iter()
                    .map(|w| parse_who(w.get_ref(), &groups).map_err(|m| err(w.span().start, m)))
                    .collect()
            };
            let allow = who(&r.allow)?;
            let deny = who(&r.deny)?;
            let env_scoped = allow.iter().chain(&deny).any(|w| {
                matches!(
                    w,
                    Who::Members | Who::Member(_) | Who::AnonymousWhereAllowed
                )
            });
            if env_scoped && environment.is_none() {
                return Err(err(
                    at,
                    format!(
                        "rule {name:?} speaks of members but names no environment \
                         (environment = \"NAME\" or \"$group\")"
                    ),
                ));
            }
            rules.push(Rule {
                name,
                path,
                methods,
                environment,
                allow,
                deny,
            });
        }
        Ok(Rules { rules })
    }

    /// How far the rights reach that some rule's allow list gives a certificate of
    /// environment `env` for `name`, or one carrying one of `extensions` (dotted OID,
    /// text), by naming it: `member:NAME` (where the rule's environment is `env`, is
    /// taken from the path, or is absent) within the certificate's own environment (a
    /// member is a certificate of the environment the rule speaks of);
    /// `certname:NAME` and `extension:NAME=VALUE` everywhere, for they admit a
    /// certificate from any of certd's CAs. `None` when no rule names it.
    pub fn singles_out(
        &self,
        env: &str,
        name: &str,
        extensions: &[(String, String)],
    ) -> Option<Reach> {
        let mut reach = None;
        for r in &self.rules {
            let here = match &r.environment {
                Some(Template::Literal(e)) => e == env,
                _ => true,
            };
            for w in &r.allow {
                match w {
                    Who::Certname(Template::Literal(n)) if n == name => {
                        return Some(Reach::Everywhere)
                    }
                    Who::Extension { oid, value }
                        if extensions.iter().any(|(o, v)| o == oid && v == value) =>
                    {
                        return Some(Reach::Everywhere)
                    }
                    Who::Member(Template::Literal(n)) if here && n == name => {
                        reach = Some(Reach::Environment)
                    }
                    _ => {}
                }
            }
        }
        reach
    }

    /// The first rule matching `method` and `path` (the request path as routed: no query,
    /// percent-decoded except `%2F`, `%25` and `%2B`), if any.
    pub fn find(&self, method: &str, path: &str) -> Option<Matched<'_>> {
        for rule in &self.rules {
            if let Some(methods) = &rule.methods {
                if !methods.iter().any(|m| m.eq_ignore_ascii_case(method)) {
                    continue;
                }
            }
            match &rule.path {
                PathMatch::Prefix(p) => {
                    if path.starts_with(p.as_str()) {
                        return Some(Matched {
                            rule,
                            captures: Vec::new(),
                        });
                    }
                }
                PathMatch::Regex(re) => {
                    if let Some(caps) = re.captures(path) {
                        let mut captures = Vec::new();
                        for (i, name) in re.capture_names().enumerate().skip(1) {
                            if let Some(m) = caps.get(i) {
                                captures.push((i.to_string(), m.as_str().to_owned()));
                                if let Some(n) = name {
                                    captures.push((n.to_owned(), m.as_str().to_owned()));
                                }
                            }
                        }
                        return Some(Matched { rule, captures });
                    }
                }
            }
        }
        None
    }

    /// How many rules there are.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are none (never, for parsed rules).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// A literal, or `$group` naming one of `groups` (the regex's captures).
fn template_of(value: &str, groups: &[String]) -> Result<Template, String> {
    match value.strip_prefix('$') {
        Some(group) if groups.iter().any(|g| g == group) => Ok(Template::Capture(group.to_owned())),
        Some(group) => Err(format!(
            "${group} is not a capture group of this rule's regex"
        )),
        None => Ok(Template::Literal(value.to_owned())),
    }
}

fn parse_who(text: &str, groups: &[String]) -> Result<Who, String> {
    let simple = match text {
        "anyone" => Some(Who::Anyone),
        "anonymous" => Some(Who::Anonymous),
        "anonymous_where_allowed" => Some(Who::AnonymousWhereAllowed),
        "authenticated" => Some(Who::Authenticated),
        "members" => Some(Who::Members),
        "admins" => Some(Who::Admins),
        "global_admins" => Some(Who::GlobalAdmins),
        _ => None,
    };
    if let Some(w) = simple {
        return Ok(w);
    }
    let named = |value: &str| -> Result<Template, String> {
        let t = template_of(value, groups)?;
        if let Template::Literal(l) = &t {
            Certname::parse(l).map_err(|e| e.to_string())?;
        }
        Ok(t)
    };
    if let Some(v) = text.strip_prefix("certname:") {
        return named(v).map(Who::Certname);
    }
    if let Some(v) = text.strip_prefix("member:") {
        return named(v).map(Who::Member);
    }
    if let Some(v) = text.strip_prefix("extension:") {
        let (name, value) = v
            .split_once('=')
            .ok_or_else(|| format!("{text:?}: write extension:NAME=VALUE"))?;
        let oid = match crate::ca::puppet_oid(name) {
            Some(oid) => oid.to_owned(),
            None if is_dotted_oid(name) => name.to_owned(),
            None => {
                return Err(format!(
                    "{name:?} is neither a Puppet extension short name nor a dotted OID"
                ))
            }
        };
        return Ok(Who::Extension {
            oid,
            value: value.to_owned(),
        });
    }
    Err(format!(
        "unknown caller {text:?} (anyone, anonymous, anonymous_where_allowed, \
         authenticated, members, admins, global_admins, certname:NAME, member:NAME, \
         extension:NAME=VALUE)"
    ))
}

fn is_dotted_oid(s: &str) -> bool {
    let arcs: Vec<&str> = s.split('.').collect();
    arcs.len() >= 2
        && arcs
            .iter()
            .all(|a| !a.is_empty() && a.len() <= 20 && a.bytes().all(|b| b.is_ascii_digit()))
}

impl Matched<'_> {
    /// The rule's name (logged with a denial).
    pub fn name(&self) -> &str {
        &self.rule.name
    }

    /// The environment the rule speaks of, when it names one that is a valid name.
    pub fn environment(&self) -> Option<EnvName> {
        self.rule
            .environment
            .as_ref()
            .and_then(|t| self.resolve(t))
            .and_then(|s| EnvName::parse(&s).ok())
    }

    fn resolve(&self, t: &Template) -> Option<String> {
        match t {
            Template::Literal(l) => Some(l.clone()),
            Template::Capture(g) => self
                .captures
                .iter()
                .find(|(n, _)| n == g)
                .map(|(_, v)| v.clone()),
        }
    }

    /// Whether the rule admits `who`; `env` describes [`Matched::environment`] when it
    /// exists (`None`: no environment, or one certd does not serve).
    pub fn permits(&self, who: &Identity, env: Option<&EnvFacts<'_>>) -> bool {
        let holds = |w: &Who| self.holds(w, who, env);
        if self.rule.deny.iter().any(holds) {
            return false;
        }
        self.rule.allow.iter().any(holds)
    }

    fn holds(&self, w: &Who, who: &Identity, env: Option<&EnvFacts<'_>>) -> bool {
        let authenticated = who.role != Role::Anonymous;
        let member = authenticated && env.is_some_and(|e| who.environment.as_ref() == Some(e.name));
        let named = |t: &Template| {
            let wanted = self.resolve(t);
            who.certname.as_ref().map(|c| c.as_str()) == wanted.as_deref()
        };
        match w {
            Who::Anyone => true,
            Who::Anonymous => !authenticated,
            Who::AnonymousWhereAllowed => {
                !authenticated && env.is_some_and(|e| e.allow_anonymous_csr)
            }
            Who::Authenticated => authenticated,
            Who::Members => member,
            Who::GlobalAdmins => who.role == Role::Admin,
            Who::Admins => {
                who.role == Role::Admin
                    || (member
                        && env.is_some_and(|e| {
                            who.certname.as_ref().is_some_and(|c| e.admins.contains(c))
                        }))
            }
            Who::Certname(t) => authenticated && named(t),
            Who::Member(t) => member && named(t),
            Who::Extension { oid, value } => {
                authenticated && who.extensions.iter().any(|(o, v)| o == oid && v == value)
            }
        }
    }
}

impl fmt::Display for Matched<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rule.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(name: &str, env: &str, extensions: &[(&str, &str)]) -> Identity {
        Identity {
            role: Role::Agent,
            certname: Some(Certname::parse(name).unwrap()),
            environment: Some(EnvName::parse(env).unwrap()),
            serial: None,
            not_after: None,
            extensions: extensions
                .iter()
                .map(|(o, v)| (o.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn decide(rules: &Rules, who: &Identity, method: &str, path: &str) -> Option<(bool, String)> {
        let dev = EnvName::parse("dev").unwrap();
        let facts = EnvFacts {
            name: &dev,
            admins: &[],
            allow_anonymous_csr: false,
        };
        let m = rules.find(method, path)?;
        let env = m.environment();
        let f = (env.as_ref() == Some(&dev)).then_some(&facts);
        Some((m.permits(who, f), m.name().to_owned()))
    }

    #[test]
    fn first_match_decides_and_deny_wins_within_a_rule() {
        let rules = Rules::parse(
            r#"
[[rule]]
name = "no web2"
regex = "^/(?<env>[^/]+)/thing$"
methods = ["get"]
environment = "$env"
allow = ["members"]
deny = ["certname:web2"]

[[rule]]
name = "catch all"
path = "/"
allow = ["anyone"]
"#,
            "t",
        )
        .unwrap();
        let web1 = agent("web1", "dev", &[]);
        let web2 = agent("web2", "dev", &[]);
        assert_eq!(
            decide(&rules, &web1, "GET", "/dev/thing"),
            Some((true, "no web2".into()))
        );
        assert_eq!(
            decide(&rules, &web2, "GET", "/dev/thing"),
            Some((false, "no web2".into()))
        );
        // Not a member of prod (unknown here): the first rule still decides.
        assert!(!decide(&rules, &web1, "GET", "/prod/thing").unwrap().0);
        // Another method skips the rule.
        assert_eq!(
            decide(&rules, &web2, "PUT", "/dev/thing"),
            Some((true, "catch all".into()))
        );
    }

    #[test]
    fn extension_values_and_captured_certnames() {
        let rules = Rules::parse(
            r#"
[[rule]]
name = "role"
regex = "^/role/(?<who>[^/]+)$"
allow = ["extension:pp_role=db", "extension:1.2.3.4=x", "certname:$who"]
"#,
            "t",
        )
        .unwrap();
        let db = agent("a", "dev", &[("1.3.6.1.4.1.34380.1.1.13", "db")]);
        let web = agent("b", "dev", &[("1.3.6.1.4.1.34380.1.1.13", "web")]);
        let x = agent("c", "dev", &[("1.2.3.4", "x")]);
        assert!(decide(&rules, &db, "GET", "/role/z").unwrap().0);
        assert!(!decide(&rules, &web, "GET", "/role/z").unwrap().0);
        assert!(decide(&rules, &x, "GET", "/role/z").unwrap().0);
        assert!(
            decide(&rules, &web, "GET", "/role/b").unwrap().0,
            "its own name"
        );
        assert!(
            !decide(&rules, &Identity::anonymous(), "GET", "/role/b")
                .unwrap()
                .0
        );
        assert_eq!(
            decide(&rules, &db, "GET", "/other"),
            None,
            "no rule matched"
        );
    }
}
