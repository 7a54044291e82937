//! Control mode's services (`supervise.services`): rules that span two contexts, the control
//! context naming a service and the context the service runs in.

use super::*;

/// A rule of `supervise.services` that a policy breaks; `service` is the service's name as
/// written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceViolation {
    NameNotOwn {
        service: String,
    },
    CmdNotAbsolute {
        service: String,
    },
    UnknownContext {
        service: String,
        context: String,
    },
    RunsInControl {
        service: String,
    },
    PortNotReserved {
        service: String,
        port: u16,
    },
    PortNotListened {
        service: String,
        context: String,
        port: u16,
    },
}

impl ServiceViolation {
    /// The service's name as written.
    fn service(&self) -> &str {
        use ServiceViolation as S;
        match self {
            S::NameNotOwn { service }
            | S::CmdNotAbsolute { service }
            | S::UnknownContext { service, .. }
            | S::RunsInControl { service }
            | S::PortNotReserved { service, .. }
            | S::PortNotListened { service, .. } => service,
        }
    }
}

impl std::fmt::Display for ServiceViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use ServiceViolation as S;
        let what = format!("supervise.services {:?}", self.service());
        match self {
            S::NameNotOwn { .. } => write!(f, "{what}: every service needs a name of its own"),
            S::CmdNotAbsolute { .. } => {
                write!(f, "{what}: cmd must start with the program's absolute path")
            }
            S::UnknownContext { context, .. } => {
                write!(f, "{what}: context {:?} is not in this policy", context)
            }
            S::RunsInControl { .. } => write!(
                f,
                "{what}: a service runs confined, not in a control context"
            ),
            S::PortNotReserved { port, .. } => write!(
                f,
                "{what}: port {port} must be one of supervise.ports, given to one service only"
            ),
            S::PortNotListened { context, port, .. } => write!(
                f,
                "{what}: context {:?} does not allow port {port}; add it to [context.{}] listen",
                context, context
            ),
        }
    }
}

impl Policy {
    /// Control mode's services: each names a context of this policy that is not itself a control
    /// context and that lists the service's ports in `listen`; each port is a reserved one and
    /// goes to one service only; the command is an absolute program path.
    pub(super) fn services_rules(
        &self,
        ctx: &Context,
    ) -> std::result::Result<(), ServiceViolation> {
        let Some(sup) = &ctx.supervise else {
            return Ok(());
        };
        let mut taken: Vec<u16> = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        for svc in &sup.services {
            let service = || svc.name.clone();
            if svc.name.is_empty() || names.contains(&svc.name.as_str()) {
                return Err(ServiceViolation::NameNotOwn { service: service() });
            }
            names.push(&svc.name);
            if !svc.cmd.first().is_some_and(|p| p.starts_with('/')) {
                return Err(ServiceViolation::CmdNotAbsolute { service: service() });
            }
            let Some(target) = self.context.get(&svc.ctx) else {
                return Err(ServiceViolation::UnknownContext {
                    service: service(),
                    context: svc.ctx.0.clone(),
                });
            };
            if target.supervise.is_some() {
                return Err(ServiceViolation::RunsInControl { service: service() });
            }
            for port in &svc.ports {
                if !sup.ports.contains(port) || taken.contains(port) {
                    return Err(ServiceViolation::PortNotReserved {
                        service: service(),
                        port: *port,
                    });
                }
                if !target.listen.contains(port) {
                    return Err(ServiceViolation::PortNotListened {
                        service: service(),
                        context: svc.ctx.0.clone(),
                        port: *port,
                    });
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

    fn parse(text: &str) -> Result<Policy, PolicyError> {
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
