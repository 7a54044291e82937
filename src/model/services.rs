//! Control mode's services (`supervise.services`): rules that span two contexts, the control
//! context naming a service and the context the service runs in.

use super::*;

impl Policy {
    /// Control mode's services: each names a context of this policy that is not itself a control
    /// context and that lists the service's ports in `listen`; each port is a reserved one and
    /// goes to one service only; the command is an absolute program path.
    pub(super) fn services_rules(&self, ctx: &Context) -> std::result::Result<(), String> {
        let Some(sup) = &ctx.supervise else {
            return Ok(());
        };
        let mut taken: Vec<u16> = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        for svc in &sup.services {
            let what = format!("supervise.services {:?}", svc.name);
            if svc.name.is_empty() || names.contains(&svc.name.as_str()) {
                return Err(format!("{what}: every service needs a name of its own"));
            }
            names.push(&svc.name);
            if !svc.cmd.first().is_some_and(|p| p.starts_with('/')) {
                return Err(format!(
                    "{what}: cmd must start with the program's absolute path"
                ));
            }
            let Some(target) = self.context.get(&svc.ctx) else {
                return Err(format!(
                    "{what}: context {:?} is not in this policy",
                    svc.ctx.0
                ));
            };
            if target.supervise.is_some() {
                return Err(format!(
                    "{what}: a service runs confined, not in a control context"
                ));
            }
            for port in &svc.ports {
                if !sup.ports.contains(port) || taken.contains(port) {
                    return Err(format!("{what}: port {port} must be one of supervise.ports, given to one service only"));
                }
                if !target.listen.contains(port) {
                    return Err(format!("{what}: context {:?} does not allow port {port}; add it to [context.{}] listen", svc.ctx.0, svc.ctx.0));
                }
                taken.push(*port);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<Policy> {
        Policy::parse(text, "test.toml")
    }

    #[test]
    fn services_need_a_context_that_may_listen_on_their_ports() {
        let policy = |svc: &str, listen: &str| {
            format!(
                "version = 1\n[context.control.supervise]\nports = [80, 88]\n\
                 [[context.control.supervise.services]]\nname = \"nb\"\n{svc}\n\
                 [context.nb]\nlisten = [{listen}]\n"
            )
        };
        let ok = "ctx = \"nb\"\ncmd = [\"/bin/serve\"]\nports = [88]";
        assert!(parse(&policy(ok, "88")).is_ok());
        let cases = [
            (ok, "", "does not allow port 88"),
            (ok, "0, 88", "port 0"),
            (
                "ctx = \"nb\"\ncmd = [\"/bin/serve\"]\nports = [99]",
                "99",
                "supervise.ports",
            ),
            (
                "ctx = \"zz\"\ncmd = [\"/bin/serve\"]",
                "",
                "not in this policy",
            ),
            ("ctx = \"control\"\ncmd = [\"/bin/serve\"]", "", "confined"),
            ("ctx = \"nb\"\ncmd = [\"serve\"]", "", "absolute path"),
        ];
        for (svc, listen, want) in cases {
            let err = parse(&policy(svc, listen)).unwrap_err().to_string();
            assert!(err.contains(want), "{svc} / listen [{listen}]: {err}");
        }
    }
}
