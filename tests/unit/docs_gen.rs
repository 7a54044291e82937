//! Generated documentation kept in the repository: the man pages of the command line (`man/`) and
//! the shell completions (`completions/`), both rendered from the clap definition in `cli.rs`.
//!
//! `cargo test generated_docs` fails when a checked-in file differs from what the code renders
//! (so CI catches a flag added without regenerating); `SBX_REGENERATE=1 cargo test generated_docs`
//! rewrites them. Everything here is test-only: `clap_mangen` and `clap_complete` are
//! dev-dependencies and never reach the (possibly setuid) binary.
//!
//! The output is deterministic: no dates, and the version is the crate version, not the git
//! revision that `--version` prints. New subcommands get their own page (`sbx-exec-NAME.1`)
//! automatically; every `--ctx` option (top level or in a subcommand) completes context names read
//! from `sbx-exec [--policy FILE] policy show` where the shell allows it.

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

/// One generated file: where it goes (relative to the crate root) and its bytes.
struct Generated {
    path: PathBuf,
    text: String,
}

/// The clap command, with the crate version instead of the git-stamped one (stable output).
fn command() -> clap::Command {
    <sbx_exec::cli::Cli as CommandFactory>::command().version(env!("CARGO_PKG_VERSION"))
}

/// Every generated file.
fn generate() -> Vec<Generated> {
    let mut out = Vec::new();
    // `help` is a clap built-in with nothing to document on a page of its own.
    let mut cmd = command().disable_help_subcommand(true);
    cmd.build();
    man_pages(&cmd, &mut out);
    out.extend(completions());
    out
}

/// `man/sbx-exec.1`, then one page per (visible) subcommand at any depth: `sbx-exec-policy.1`,
/// `sbx-exec-policy-check.1`, ...
fn man_pages(cmd: &clap::Command, out: &mut Vec<Generated>) {
    let name = cmd
        .get_display_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_string();
    let subs: Vec<String> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| format!("{name}-{}", s.get_name()))
        .collect();
    out.push(Generated {
        path: PathBuf::from(format!("man/{name}.1")),
        text: man_page(cmd, &name, &subs),
    });
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let mut sub = sub.clone().version(env!("CARGO_PKG_VERSION"));
        sub.build();
        man_pages(&sub, out);
    }
}

/// One page: clap_mangen's sections, the `after_help` text as EXAMPLES, and SEE ALSO.
fn man_page(cmd: &clap::Command, name: &str, subs: &[String]) -> String {
    let man = clap_mangen::Man::new(cmd.clone())
        .title(name.to_uppercase())
        .source(format!("sbx-exec {}", env!("CARGO_PKG_VERSION")))
        .manual("sbx-exec manual")
        .date("");
    let mut buf: Vec<u8> = Vec::new();
    let has_args = cmd.get_arguments().any(|a| !a.is_hide_set());
    let has_subs = cmd.get_subcommands().any(|s| !s.is_hide_set());
    man.render_title(&mut buf).unwrap();
    man.render_name_section(&mut buf).unwrap();
    man.render_synopsis_section(&mut buf).unwrap();
    man.render_description_section(&mut buf).unwrap();
    if has_args {
        man.render_options_section(&mut buf).unwrap();
    }
    if has_subs {
        man.render_subcommands_section(&mut buf).unwrap();
    }
    let mut text = String::from_utf8(buf).unwrap();
    if let Some(after) = cmd.get_after_long_help().or(cmd.get_after_help()) {
        text.push_str(".SH EXAMPLES\n");
        let after = after.to_string();
        // The help text's own "Examples:" heading is the section heading here.
        let body = after.strip_prefix("Examples:\n").unwrap_or(&after);
        text.push_str(&roff_preformatted(body));
    }
    let mut see_also = vec![
        format!("{}(1)", "sbx-exec"),
        "sbx-exec-policy(5)".to_string(),
    ];
    // Not the page itself; sbx-exec-policy(5), the file format, is another page than the
    // `policy` subcommand's sbx-exec-policy(1), and both pages name it.
    see_also.retain(|s| *s != format!("{name}(1)"));
    see_also.extend(subs.iter().map(|s| format!("{s}(1)")));
    text.push_str(".SH \"SEE ALSO\"\n");
    text.push_str(
        &see_also
            .iter()
            .map(|s| {
                let (page, sect) = s.trim_end_matches(')').split_once('(').unwrap();
                format!(".BR {page} ({sect})")
            })
            .collect::<Vec<_>>()
            .join(",\n"),
    );
    text.push('\n');
    // `man sbx-exec-policy` finds the subcommand's page (section 1 comes first): say how to
    // reach the reference.
    text.push_str(".PP\nThe policy file format, with every key, its default and meaning:\n.B man 5 sbx\\-exec\\-policy\n");
    if name.starts_with("sbx-exec-policy") {
        text.push_str("(without the 5,\n.B man sbx\\-exec\\-policy\nopens the page of the\n.B policy\nsubcommand).\n");
    }
    text
}

/// Text shown as is (no filling), with roff's special characters escaped.
fn roff_preformatted(text: &str) -> String {
    let mut out = String::from(".nf\n");
    for line in text.lines() {
        let escaped = line.replace('\\', "\\e").replace('-', "\\-");
        // A line starting with '.' or '\'' would be read as a request.
        if escaped.starts_with('.') || escaped.starts_with('\'') {
            out.push_str("\\&");
        }
        out.push_str(&escaped);
        out.push('\n');
    }
    out.push_str(".fi\n");
    out
}

/// Completions for bash, zsh and fish, each with context-name completion for `--ctx` added.
fn completions() -> Vec<Generated> {
    let mut out = Vec::new();
    for (shell, file) in [
        (Shell::Bash, "completions/sbx-exec.bash"),
        (Shell::Zsh, "completions/_sbx-exec"),
        (Shell::Fish, "completions/sbx-exec.fish"),
    ] {
        let mut cmd = command();
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd, "sbx-exec", &mut buf);
        let text = String::from_utf8(buf).unwrap();
        let text = match shell {
            Shell::Bash => {
                let text = bash_dispatch_fixed(&text);
                // clap's own completer, which ours wraps (its name depends on clap_complete).
                let clap_fn = text
                    .lines()
                    .find_map(|l| l.strip_suffix("() {"))
                    .expect("clap_complete's bash script defines a function");
                let wrapper = BASH_CONTEXTS
                    .replace("@CLAP_FN@", clap_fn)
                    .replace("@VALUE_OPTS@", &value_options(&cmd).join("|"));
                format!("{text}{wrapper}")
            }
            Shell::Zsh => zsh_with_contexts(&text),
            Shell::Fish => fish_with_contexts(&text),
            _ => unreachable!(),
        };
        out.push(Generated {
            path: PathBuf::from(file),
            text,
        });
    }
    out
}

/// clap_complete's bash script walks the words into states named after the subcommand path
/// (`sbx__exec`, `sbx__exec__subcmd__ctx`, ...), but for a binary whose name has a `-` it labels
/// the arms that complete each state differently (`sbx__subcmd__exec__subcmd__ctx`): no arm but
/// the top level's ever matched, so `sbx-exec ctx <TAB>` offered nothing. Each arm is renamed to
/// the state it stands for (the same path once the `__subcmd` separators are left out), and every
/// state must then have its arm.
fn bash_dispatch_fixed(text: &str) -> String {
    let states: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("cmd=\"")?.strip_suffix('"'))
        .filter(|s| !s.is_empty())
        .collect();
    let key = |name: &str| name.replace("__subcmd", "");
    let mut out = String::new();
    let mut in_arms = false;
    let mut arms = Vec::new();
    for line in text.lines() {
        if line.trim() == "case \"${cmd}\" in" {
            in_arms = true;
        }
        let label = line
            .strip_prefix("        ")
            .and_then(|l| l.strip_suffix(')'))
            .filter(|l| {
                in_arms
                    && !l.is_empty()
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            });
        match label {
            Some(label) => {
                let state = states
                    .iter()
                    .find(|s| key(s) == key(label))
                    .copied()
                    .unwrap_or(label);
                arms.push(state.to_string());
                out.push_str(&format!("        {state})"));
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    for state in &states {
        assert!(
            arms.iter().any(|a| a == state),
            "clap_complete's bash script has no arm for its state {state}: {arms:?}"
        );
    }
    out
}

/// The long options that take a value, anywhere in the command line (`--policy`, `--ctx`,
/// `--timeout`, ...): the bash wrapper skips their values when it looks for the subcommand.
fn value_options(cmd: &clap::Command) -> Vec<String> {
    fn walk(cmd: &clap::Command, out: &mut Vec<String>) {
        for a in cmd.get_arguments() {
            if let (Some(long), true) = (a.get_long(), a.get_action().takes_values()) {
                let opt = format!("--{long}");
                if !out.contains(&opt) {
                    out.push(opt);
                }
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, out);
        }
    }
    let mut out = Vec::new();
    walk(cmd, &mut out);
    out.sort();
    out
}

/// Bash: wrap clap's completer. For the word after any `--ctx` (before `--`), offer the contexts
/// of the effective policy, or of `--policy FILE` when the line has one; for the name after
/// `ctx stop` and `ctx net`, the persistent contexts running now (`ctx list --json`, which needs
/// root as `ctx stop` does). Uses the same program the line names (`COMP_WORDS[0]`), so an uninstalled binary
/// completes its own contexts. Everything else is clap's completion (subcommands, options).
const BASH_CONTEXTS: &str = r#"
# --- added by sbx-exec's generator (tests/unit/docs_gen.rs): context names for --ctx, ctx stop and ctx net ---
_sbx_exec_contexts() {
    local prog="$1" policy="$2"
    local -a args=()
    [[ -n "$policy" ]] && args=(--policy "$policy")
    "$prog" policy show "${args[@]}" 2>/dev/null \
        | sed -n 's/^[[:space:]]*\[context\.\([a-z0-9_-]*\)\][[:space:]]*$/\1/p' \
        | sort -u
}

_sbx_exec_running() {
    "$1" ctx list --json 2>/dev/null \
        | grep -o '"name":"[a-z0-9_-]*"' \
        | sed 's/^"name":"\(.*\)"$/\1/' \
        | sort -u
}

_sbx_exec_with_contexts() {
    local cur="${COMP_WORDS[COMP_CWORD]}" prev="" i w policy="" launch=0 skip=0
    local -a subs=()
    (( COMP_CWORD > 0 )) && prev="${COMP_WORDS[COMP_CWORD-1]}"
    for (( i = 1; i < COMP_CWORD; i++ )); do
        w="${COMP_WORDS[i]}"
        [[ "$w" == "--" ]] && { @CLAP_FN@ "$@"; return; }
        [[ "$w" == "--policy" ]] && policy="${COMP_WORDS[i+1]}"
        [[ "$w" == --policy=* ]] && policy="${w#--policy=}"
        if (( skip )); then
            skip=0
            continue
        fi
        case "$w" in
            @VALUE_OPTS@)
                skip=1
                [[ "$w" != "--policy" && ${#subs[@]} -eq 0 ]] && launch=1
                ;;
            --policy=*) ;;
            -*) [[ ${#subs[@]} -eq 0 ]] && launch=1 ;;
            *) subs+=("$w") ;;
        esac
    done
    local prefix="" names name
    if [[ "$prev" != "--ctx" && "$cur" == --ctx=* ]]; then
        prefix="--ctx="
        cur="${cur#--ctx=}"
    elif [[ "$prev" == "--ctx" ]]; then
        :
    elif (( ! launch )) && [[ "${subs[0]}" == "ctx" && ( "${subs[1]}" == "stop" || "${subs[1]}" == "net" ) \
            && ${#subs[@]} -eq 2 && "$cur" != -* && "$prev" != "--timeout" && "$prev" != "--policy" \
            && "$prev" != "--allow" && "$prev" != "--deny" ]]; then
        COMPREPLY=()
        for name in $(_sbx_exec_running "${COMP_WORDS[0]}"); do
            [[ "$name" == "$cur"* ]] && COMPREPLY+=("$name")
        done
        (( ${#COMPREPLY[@]} )) || @CLAP_FN@ "$@"
        return
    else
        @CLAP_FN@ "$@"
        return
    fi
    names="$(_sbx_exec_contexts "${COMP_WORDS[0]}" "${policy/#\~/$HOME}")"
    COMPREPLY=()
    for name in $names; do
        [[ "$name" == "$cur"* ]] && COMPREPLY+=("$prefix$name")
    done
}

if [[ "${BASH_VERSINFO[0]}" -eq 4 && "${BASH_VERSINFO[1]}" -ge 4 || "${BASH_VERSINFO[0]}" -gt 4 ]]; then
    complete -F _sbx_exec_with_contexts -o nosort -o bashdefault -o default sbx-exec
else
    complete -F _sbx_exec_with_contexts -o bashdefault -o default sbx-exec
fi
"#;

/// Zsh: every `--ctx` value completes with `_sbx_exec_contexts` instead of `_default`.
fn zsh_with_contexts(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("'--ctx=[") && line.contains(":NAME:_default'") {
            out.push_str(&line.replace(":NAME:_default'", ":NAME:_sbx_exec_contexts'"));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    // Defined before the final `compdef`/autoload lines run the completer.
    let func = r#"
# --- added by sbx-exec's generator (tests/unit/docs_gen.rs): context names for --ctx ---
(( $+functions[_sbx_exec_contexts] )) ||
_sbx_exec_contexts() {
    local -a ctxs policy_args
    local i
    for (( i = 1; i < ${#words}; i++ )); do
        [[ "${words[i]}" == "--policy" ]] && policy_args=(--policy "${words[i+1]}")
        [[ "${words[i]}" == --policy=* ]] && policy_args=(--policy "${words[i]#--policy=}")
    done
    # $service is the command being completed; words[1] is a subcommand's name inside one.
    ctxs=(${(f)"$("${service:-sbx-exec}" policy show "${policy_args[@]}" 2>/dev/null \
        | sed -n 's/^[[:space:]]*\[context\.\([a-z0-9_-]*\)\][[:space:]]*$/\1/p' | sort -u)"})
    _describe -t contexts 'context' ctxs
}
"#;
    match out.rfind("\nif [ \"$funcstack[1]\" = \"_sbx-exec\" ]") {
        Some(at) => out.insert_str(at + 1, func.trim_start_matches('\n')),
        None => out.push_str(func),
    }
    out
}

/// Fish: every `-l ctx` completion lists the contexts instead of files.
fn fish_with_contexts(text: &str) -> String {
    let mut out = String::from(
        "# --- added by sbx-exec's generator (tests/unit/docs_gen.rs): context names for --ctx ---\n\
         function __sbx_exec_contexts\n\
         \x20   set -l tokens (commandline -opc)\n\
         \x20   set -l policy\n\
         \x20   set -l i 1\n\
         \x20   while test $i -lt (count $tokens)\n\
         \x20       if test \"$tokens[$i]\" = --policy\n\
         \x20           set policy --policy $tokens[(math $i + 1)]\n\
         \x20       end\n\
         \x20       set i (math $i + 1)\n\
         \x20   end\n\
         \x20   $tokens[1] policy show $policy 2>/dev/null | string match -r -g '^\\s*\\[context\\.([a-z0-9_-]+)\\]\\s*$' | sort -u\n\
         end\n\n",
    );
    for line in text.lines() {
        if line.contains(" -l ctx ") && line.ends_with(" -r") {
            out.push_str(line);
            out.push_str(" -f -a '(__sbx_exec_contexts)'");
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    // clap's conditions fail while `--ctx` still lacks its value (`sbx-exec --ctx <TAB>`).
    out.push_str(
        "complete -c sbx-exec -n 'test (commandline -opc)[-1] = --ctx' -f -a '(__sbx_exec_contexts)'\n",
    );
    out
}

fn crate_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn generated_docs_match_the_code() {
    let regenerate = std::env::var_os("SBX_REGENERATE").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    for g in generate() {
        let path = crate_root().join(&g.path);
        let current = std::fs::read_to_string(&path).ok();
        if current.as_deref() == Some(g.text.as_str()) {
            continue;
        }
        if regenerate {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &g.text).unwrap();
            eprintln!("regenerated {}", g.path.display());
        } else {
            stale.push(g.path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "generated docs differ from the code: {}; run `SBX_REGENERATE=1 cargo test generated_docs` to update",
        stale.join(", ")
    );
}

#[test]
fn generated_docs_have_no_stray_files() {
    // A page whose subcommand was removed must be deleted, not left behind.
    let expected: Vec<PathBuf> = generate().into_iter().map(|g| g.path).collect();
    let dir = crate_root().join("man");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".1") {
            let rel = PathBuf::from("man").join(&name);
            assert!(
                expected.contains(&rel),
                "man/{name} is not generated from the code any more: delete it"
            );
        }
    }
}

#[test]
fn every_subcommand_has_a_page_and_every_ctx_option_completes_contexts() {
    let files = generate();
    let find = |p: &str| files.iter().find(|g| g.path == Path::new(p));
    assert!(find("man/sbx-exec.1").is_some());
    assert!(find("man/sbx-exec-policy.1").is_some());
    assert!(find("man/sbx-exec-policy-show.1").is_some());
    let page = &find("man/sbx-exec.1").unwrap().text;
    assert!(page.contains(".SH EXAMPLES") && page.contains("sbx\\-exec \\-\\-ctx user"));
    assert!(
        !page.contains(sbx_exec::cli::VERSION)
            || sbx_exec::cli::VERSION == env!("CARGO_PKG_VERSION")
    );
    // Every page points at the policy reference, section 5 by number; the `policy` pages too
    // (sbx-exec-policy(1) is the subcommand, sbx-exec-policy(5) the file format).
    for g in files.iter().filter(|g| g.path.starts_with("man")) {
        assert!(
            g.text.contains(".B man 5 sbx\\-exec\\-policy\n"),
            "{:?}",
            g.path
        );
    }
    let policy_page = &find("man/sbx-exec-policy.1").unwrap().text;
    assert!(
        policy_page.contains(".BR sbx-exec-policy (5)"),
        "{policy_page}"
    );
    assert!(
        !policy_page.contains(".BR sbx-exec-policy (1)"),
        "{policy_page}"
    );
    // Bash: every state clap's word loop reaches has the arm that completes it (the subcommands
    // of `ctx` and `policy` included), and the wrapper knows which options take a value.
    let bash = &find("completions/sbx-exec.bash").unwrap().text;
    for arm in [
        "        sbx__exec__subcmd__ctx)",
        "        sbx__exec__subcmd__policy)",
        "        sbx__exec__subcmd__ctx__subcmd__stop)",
    ] {
        assert!(bash.lines().any(|l| l == arm), "{arm}");
    }
    assert!(!bash.contains("sbx__subcmd__exec"));
    assert!(bash.contains("--ctx|") && bash.contains("|--timeout)"));
    let zsh = &find("completions/_sbx-exec").unwrap().text;
    let fish = &find("completions/sbx-exec.fish").unwrap().text;
    // Every --ctx in the CLI (top level and `policy show`) got the context completer.
    let ctx_options = zsh.matches("'--ctx=[").count();
    assert!(ctx_options >= 2, "{zsh}");
    assert_eq!(
        zsh.matches(":NAME:_sbx_exec_contexts'").count(),
        ctx_options
    );
    let fish_ctx = fish.lines().filter(|l| l.contains(" -l ctx ")).count();
    assert!(fish_ctx >= 2);
    // ... plus the one for `--ctx` still waiting for its value.
    assert_eq!(
        fish.matches("-a '(__sbx_exec_contexts)'").count(),
        fish_ctx + 1
    );
}
