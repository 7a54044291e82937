//! Names of environment variables that make a trusted program run code of someone else's choosing
//! (`LD_PRELOAD`, `BASH_ENV`, `NODE_OPTIONS`, `GIT_CONFIG_*`, ...) or read configuration from a
//! path someone else picked (`AWS_CONFIG_FILE`, `PGPASSFILE`, ...). One list for both places a name
//! can come from: the caller's environment ([`crate::plan::env`] drops them) and the secrets on
//! `--secrets-fd` ([`crate::secrets`] refuses them unless the policy delivers that secret as a
//! file, where the variable holds sbx-exec's own path).

/// Prefixes of names never taken from the caller.
const DENY_PREFIXES: &[&str] = &[
    "LD_",
    "GCONV_",
    "DYLD_",
    "MALLOC_",
    // bash imports functions from `BASH_FUNC_name%%` variables.
    "BASH_FUNC_",
    // GIT_CONFIG_GLOBAL/SYSTEM/COUNT/KEY_n/VALUE_n/PARAMETERS: any git setting, core.sshCommand too.
    "GIT_CONFIG_",
];
/// Names never taken from the caller.
const DENY_NAMES: &[&str] = &[
    "BASH_ENV",
    "ENV",
    "SHELLOPTS",
    "BASHOPTS",
    "PS4",
    "PROMPT_COMMAND",
    "ZDOTDIR",
    "IFS",
    "CDPATH",
    "GLOBIGNORE",
    "PYTHONSTARTUP",
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONINSPECT",
    "NODE_OPTIONS",
    "NODE_PATH",
    "NODE_REPL_EXTERNAL_MODULE",
    "PERL5OPT",
    "PERL5LIB",
    "PERLLIB",
    "PERL5DB",
    "RUBYOPT",
    "RUBYLIB",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "GIT_SSH",
    "GIT_SSH_COMMAND",
    "GIT_EXEC_PATH",
    "GIT_ASKPASS",
    "GIT_EDITOR",
    "GIT_PAGER",
    "GIT_EXTERNAL_DIFF",
    "GIT_PROXY_COMMAND",
    "GIT_CONFIG",
    "GIT_TEMPLATE_DIR",
    "SSH_ASKPASS",
    "EDITOR",
    "VISUAL",
    "PAGER",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CA_BUNDLE",
    "AWS_PROFILE",
    "PGPASSFILE",
    "PGSERVICEFILE",
    "PGSYSCONFDIR",
    "PGSSLROOTCERT",
    "TF_CLI_CONFIG_FILE",
    "TF_PLUGIN_CACHE_DIR",
    "KUBECONFIG",
    "DOCKER_CONFIG",
    "NPM_CONFIG_USERCONFIG",
    "NPM_CONFIG_GLOBALCONFIG",
    "CURL_HOME",
    "WGETRC",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "HOSTALIASES",
    "LOCALDOMAIN",
    "RES_OPTIONS",
    "PSQL_PAGER",
    "PSQLRC",
    "GIT_DIR",
    "GIT_COMMON_DIR",
    "GIT_WORK_TREE",
    "GIT_SEQUENCE_EDITOR",
    "GIT_SSH_VARIANT",
    "PYTHONUSERBASE",
    "PYTHONBREAKPOINT",
    "PYTHONWARNINGS",
    "PYTHONPLATLIBDIR",
    "AWS_DATA_PATH",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "BOTO_CONFIG",
    "PGSSLCERT",
    "PGSSLKEY",
    "PGSSLCRL",
    "OPENSSL_CONF",
    "OPENSSL_ENGINES",
    "SSLKEYLOGFILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "LESSOPEN",
    "LESSCLOSE",
    "MANPAGER",
    "BROWSER",
];

/// Is `name` one that is never inherited from the caller nor accepted as a secret variable?
pub fn is_denied(name: &str) -> bool {
    DENY_NAMES.contains(&name) || DENY_PREFIXES.iter().any(|p| name.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_and_config_injection_names_are_denied() {
        for name in [
            "LD_PRELOAD",
            "LD_AUDIT",
            "BASH_ENV",
            "ENV",
            "BASH_FUNC_ls%%",
            "NODE_OPTIONS",
            "PYTHONSTARTUP",
            "PERL5OPT",
            "GIT_CONFIG",
            "GIT_CONFIG_GLOBAL",
            "GIT_CONFIG_COUNT",
            "GIT_CONFIG_KEY_0",
            "GIT_CONFIG_VALUE_0",
            "GIT_CONFIG_PARAMETERS",
            "GIT_SSH_COMMAND",
            "GIT_EXEC_PATH",
        ] {
            assert!(is_denied(name), "{name}");
        }
        for name in [
            "PATH",
            "HOME",
            "GIT_AUTHOR_NAME",
            "AWS_SECRET_ACCESS_KEY",
            "PGPASSWORD",
        ] {
            assert!(!is_denied(name), "{name}");
        }
    }
}
