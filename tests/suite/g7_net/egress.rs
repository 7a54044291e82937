//! Egress only through the proxy and only to what `net.allow` names, in every spelling; no port
//! squatted for a trusted tool, no abstract socket or connection of the host, no address the
//! container gains later.

use super::*;

pub fn egress_reaches_allowed_hosts_only_through_the_proxy() -> Result<(), String> {
    tools()?;
    let d = TempDir::new("g7egress");
    let p = policy(
        d.path(),
        "mode = \"private\"\nallow = [\"192.0.2.10/32\"]",
        "",
    );
    let inside = user(
        &p,
        "echo curl:$(curl -s -m 5 http://192.0.2.10/who); \
         python3 -c \"import urllib.request as u; print(\\\"urllib:\\\" + u.urlopen(\\\"http://192.0.2.10/who\\\", timeout=5).read().decode().strip())\"; \
         echo direct:$(curl -s -m 3 --noproxy \"*\" http://192.0.2.10/who || echo refused); \
         echo direct-unlisted:$(curl -s -m 3 --noproxy \"*\" http://192.0.2.20/who || echo refused); \
         echo direct-meta:$(curl -s -m 3 --noproxy \"*\" http://169.254.169.254/who || echo refused)",
    );
    let script =
        format!("echo outside:$(curl -s -m 5 --noproxy '*' http://192.0.2.10/who)\n{inside}\n");
    let r = in_test_netns(d.path(), &script);
    r.expect_code(0, "egress scenario")?;
    // Control: the host is there, and reachable directly outside.
    check(r.stdout.contains("outside:internet"), || r.show())?;
    // Through the proxy (curl and Python's urllib read HTTP_PROXY)...
    check(r.stdout.contains("curl:internet"), || r.show())?;
    check(r.stdout.contains("urllib:internet"), || r.show())?;
    // Without the proxy variables the connection is captured and judged the same way: the
    // allowed host is reached, the unlisted one and the metadata address are not (every address
    // is local inside: there is no route around the gate).
    check(r.stdout.contains("direct:internet"), || r.show())?;
    check(r.stdout.contains("direct-unlisted:refused"), || r.show())?;
    check(r.stdout.contains("direct-meta:refused"), || r.show())
}

/// Every spelling of an internal destination, asked through the proxy.
const REFUSED: &[&str] = &[
    "http://169.254.169.254/who",
    "http://127.0.0.1:18080/who",
    "http://2130706433:18080/who",
    "http://0177.0.0.1:18080/who",
    "http://127.1:18080/who",
    "http://[::ffff:127.0.0.1]:18080/who",
    "http://[::]:18080/who",
    "http://0.0.0.0:18080/who",
    "http://192.0.2.20/who",
];

pub fn internal_destinations_are_refused_in_every_spelling() -> Result<(), String> {
    tools()?;
    let d = TempDir::new("g7refuse");
    let log = d.path().join("audit.jsonl");
    let top = format!("audit = \"{}\"", log.display());
    let p = policy(
        d.path(),
        "mode = \"private\"\nallow = [\"192.0.2.10/32\"]",
        &top,
    );
    let mut script = String::new();
    for url in REFUSED {
        let q = format!("{url}?token=SECRET-IN-URL");
        script.push_str(&format!(
            "echo \"outside {url} $(curl -s -m 5 --noproxy '*' '{q}')\"\n"
        ));
        let cmd = format!(
            "echo \"inside {url} $(curl -s -m 5 --noproxy \"\" -w \" code=%{{http_code}}\" \"{q}\" | tr \"\\n\" \" \")\""
        );
        script.push_str(&user(&p, &cmd));
        script.push('\n');
    }
    let r = in_test_netns(d.path(), &script);
    r.expect_code(0, "refusal scenario")?;
    for url in REFUSED {
        let line = |side: &str| {
            r.stdout
                .lines()
                .find(|l| l.starts_with(&format!("{side} {url} ")))
                .unwrap_or("")
                .to_string()
        };
        let (outside, inside) = (line("outside"), line("inside"));
        // Control: from the test's namespace the service answers.
        check(
            ["internet", "unlisted", "metadata", "control-api"]
                .iter()
                .any(|w| outside.ends_with(w)),
            || format!("{url} not reachable outside (control): {}", r.show()),
        )?;
        check(inside.contains("code=403"), || {
            format!("{url} not refused inside: {inside:?}\n{}", r.show())
        })?;
        // The rule, never the address or the class it fell in (the audit log has those).
        check(
            inside.contains("no sandbox may reach") || inside.contains("not in net.allow"),
            || format!("{url}: no reason in the 403 body: {inside:?}"),
        )?;
        check(
            !inside.contains("control-api") && !inside.contains("metadata"),
            || format!("{url} reached the service: {inside:?}"),
        )?;
    }
    // The audit log has a refusal line per request, with host and port, never the URL's data.
    let audit = std::fs::read_to_string(&log).unwrap_or_default();
    let refusals = audit
        .lines()
        .filter(|l| l.contains("\"egress-refused\""))
        .count();
    check(refusals >= REFUSED.len(), || {
        format!("{refusals} refusal lines in the audit log:\n{audit}")
    })?;
    check(
        audit.contains("\"host\":\"169.254.169.254\"") && audit.contains("\"port\":18080"),
        || format!("audit lines lack host/port:\n{audit}"),
    )?;
    check(!audit.contains("SECRET-IN-URL"), || {
        format!("the audit log holds request data:\n{audit}")
    })
}

/// A listener of `user` on 127.0.0.1:15432 waiting 4 s; prints whether anything connected.
const SQUAT: &str = "python3 -c \"import socket; l=socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); l.bind((\\\"127.0.0.1\\\",15432)); l.listen(); l.settimeout(4)\ntry:\n c,_=l.accept(); print(\\\"CAPTURED\\\", c.recv(100))\nexcept socket.timeout: print(\\\"nothing-captured\\\")\"";

/// `platform` (net = host) connects to 127.0.0.1:15432 and sends its "password".
fn platform_client(p: &Path) -> String {
    format!(
        "{} --policy {} --ctx platform -- python3 -c 'import socket,time\nfor i in range(40):\n try:\n  s=socket.create_connection((\"127.0.0.1\",15432),1); s.sendall(b\"PGPASSWORD=hunter2\"); print(\"platform-got\", s.recv(100)); break\n except OSError: time.sleep(0.1)'",
        bin(),
        p.display()
    )
}

pub fn user_cannot_squat_a_port_platform_connects_to() -> Result<(), String> {
    tools()?;
    let d = TempDir::new("g7squat");
    let private = policy(d.path(), "mode = \"private\"", "");
    let hd = TempDir::new("g7squathost");
    let host = policy(hd.path(), "mode = \"host\"", "");
    let real_pg = "python3 -c 'import socket; l=socket.socket(); l.bind((\"127.0.0.1\",15432)); l.listen(); c,_=l.accept(); c.recv(100); c.sendall(b\"REAL-PG\")' &\nsleep 0.3\n";
    let script = format!(
        "{real_pg}{} > {dir}/user.out &\nU=$!\nsleep 0.5\n{}\nwait $U; cat {dir}/user.out\n",
        user(&private, SQUAT),
        platform_client(&private),
        dir = d.path().display()
    );
    let r = in_test_netns(d.path(), &script);
    r.expect_code(0, "squat scenario")?;
    check(r.stdout.contains("platform-got b'REAL-PG'"), || r.show())?;
    check(
        r.stdout.contains("nothing-captured") && !r.stdout.contains("CAPTURED"),
        || format!("user captured platform's connection: {}", r.show()),
    )?;
    // Control: with net = "host" (the old default) and the service down, user code captures it.
    let script = format!(
        "{} > {dir}/user.out &\nU=$!\nsleep 0.8\n{}\nwait $U; cat {dir}/user.out\n",
        user(&host, SQUAT),
        platform_client(&host),
        dir = hd.path().display()
    );
    let r = in_test_netns(hd.path(), &script);
    check(r.stdout.contains("CAPTURED b'PGPASSWORD=hunter2'"), || {
        format!(
            "control: the squat did not work with net = host: {}",
            r.show()
        )
    })
}

pub fn abstract_sockets_and_connections_of_the_host_are_invisible() -> Result<(), String> {
    tools()?;
    let d = TempDir::new("g7abstract");
    // scope = false: the network namespace alone separates abstract sockets (Landlock's scope
    // is a second wall where the kernel has it).
    let text = user_net_policy("mode = \"private\"\nallow = [\"192.0.2.10/32\"]", "")
        .replace("scope = true ", "scope = false ");
    let p = write_policy(d.path(), &text);
    let listen = "python3 -c 'import socket,time; s=socket.socket(socket.AF_UNIX); s.bind(b\"\\0sbx-g7-host\"); s.listen(); time.sleep(20)' &\nPIDS=\"$PIDS $!\"\nsleep 0.3\n";
    let probe = "python3 -c \"import socket; s=socket.socket(socket.AF_UNIX)\ntry:\n s.connect(b\\\"\\\\0sbx-g7-host\\\"); print(\\\"abstract-connected\\\")\nexcept OSError as e: print(\\\"abstract-refused\\\", e)\"";
    let hold = "python3 -c 'import socket,time; s=socket.create_connection((\"127.0.0.1\",18080)); time.sleep(20)' &\nPIDS=\"$PIDS $!\"\nsleep 0.3\n";
    let script = format!(
        "{listen}{hold}echo outside:; sh -c '{probe}'; cat /proc/net/tcp /proc/net/tcp6 | grep -c ':46A0 ' | sed s/^/outside-18080-rows=/\n{}\n",
        user(
            &p,
            &format!("echo inside:; {probe}; echo inside-tcp:; cat /proc/net/tcp /proc/net/tcp6; ss -tan")
        )
    );
    let r = in_test_netns(d.path(), &script);
    r.expect_code(0, "abstract scenario")?;
    let (outside, inside) = r.stdout.split_once("inside:").ok_or_else(|| r.show())?;
    check(outside.contains("abstract-connected"), || {
        format!(
            "control: the abstract socket is not reachable outside: {}",
            r.show()
        )
    })?;
    check(inside.contains("abstract-refused"), || {
        format!(
            "the host's abstract socket is reachable inside: {}",
            r.show()
        )
    })?;
    // Outside, the held connection to 18080 is listed; inside, nothing of the host (only the
    // proxy's listener, 0.0.0.0:3128 = 00000000:0C38: every loopback address of its own netns).
    check(!outside.contains("outside-18080-rows=0"), || r.show())?;
    let (_, tcp) = inside.split_once("inside-tcp:").ok_or_else(|| r.show())?;
    check(!tcp.contains(":46A0") && !tcp.contains(":18080"), || {
        format!("a host connection is visible inside: {tcp}")
    })?;
    check(tcp.contains("00000000:0C38"), || {
        format!("no proxy listener: {tcp}")
    })
}

/// An address the container gains after a persistent context's gate started is refused like its
/// others (the gate lists the container's addresses for each connection, not once at its
/// start). A stand-in control API listens on every address (`[::]`, dual-stack); 198.51.100.7 is
/// added to the test's namespace only after the first call (and the gate) ran. Control: from the
/// container the new address reaches the service.
pub fn an_address_the_container_gains_later_is_refused() -> Result<(), String> {
    persistent_tools()?;
    let d = TempDir::new("g7plate");
    let p = persistent_policy(
        d.path(),
        "pnetlate",
        "mode = \"private\"\nallow = [\"0.0.0.0/0\", \"::/0\"]",
        "",
    );
    let script = format!(
        "{}call 'echo first'\nNET=$(field net_pid); alive $NET && echo gate-running\n\
         ip addr add 198.51.100.7/32 dev lo\n\
         echo outside:$(curl -s -m 5 --noproxy '*' http://198.51.100.7:18080/who)\n\
         call 'echo inside:$(curl -s -m 5 -w \" code=%{{http_code}}\" http://198.51.100.7:18080/who)'\n\
         stop; echo stop:$?\n",
        persistent_shell(&p, "pnetlate")
    );
    let r = in_test_netns(d.path(), &script);
    r.expect_code(0, "late address scenario")?;
    check(r.stdout.contains("gate-running"), || r.show())?;
    check(r.stdout.contains("outside:control-api"), || {
        format!(
            "control: the new address does not reach the service outside: {}",
            r.show()
        )
    })?;
    let inside = r
        .stdout
        .lines()
        .find(|l| l.starts_with("inside:"))
        .unwrap_or("");
    check(
        inside.contains("code=403") && !inside.contains("control-api"),
        || {
            format!(
                "the address added later was reachable from the context: {}",
                r.show()
            )
        },
    )?;
    check(r.stdout.contains("stop:0"), || r.show())
}
