//! Suffixes many owners share, from the Public Suffix List (`public_suffix_list.dat`, MPL-2.0,
//! rules only): `com`, `co.uk`, and the private section's hosting suffixes (`s3.amazonaws.com`,
//! `execute-api.us-east-1.amazonaws.com`, `workers.dev`, `herokuapp.com`...), under each of which
//! anyone can have a name. A secret bound to `*.D` reaches every name under D, so D must not be,
//! or hold below it, such a suffix ([`crate::model::bind`]).

/// The list's rules, one per line (`//` lines are comments).
const LIST: &str = include_str!("public_suffix_list.dat");

/// A rule of the list that is `domain` or lies below it, if any (`*.` and `!` prefixes taken
/// off): proof that names under `domain` belong to more than one owner.
pub fn shared_under(domain: &str) -> Option<&'static str> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    LIST.lines()
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .map(|l| l.trim_start_matches('!').trim_start_matches("*."))
        .find(|rule| {
            *rule == domain
                || rule
                    .strip_suffix(domain.as_str())
                    .is_some_and(|head| head.ends_with('.'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_suffixes_are_found_at_or_below_a_domain() {
        for shared in [
            "amazonaws.com",
            "us-east-1.amazonaws.com",
            "execute-api.us-east-1.amazonaws.com",
            "s3.amazonaws.com",
            "cloudfront.net",
            "herokuapp.com",
            "workers.dev",
            "appspot.com",
            "azurewebsites.net",
            "com",
            "co.uk",
        ] {
            assert!(shared_under(shared).is_some(), "{shared}");
        }
        for own in [
            "anthropic.com",
            "example.com",
            "api.github.com",
            "openai.com",
        ] {
            assert_eq!(shared_under(own), None, "{own}");
        }
    }
}
