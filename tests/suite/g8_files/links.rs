//! Links, `..` and FIFOs user code plants where the control plane writes for it.

use std::time::{Duration, Instant};

use super::*;

/// User code makes `x` a link to a root-owned sentinel outside its writable areas (and `dangling`
/// a link to a file that does not exist there, `to-own` a link to a file it owns); `file write`
/// through each fails with error `symlink` and changes nothing. A link in a middle component and
/// a `..` path into the root-only directory fail too (the context cannot write there). rm of a link
/// removes the link. Controls: a root-side write through another planted link does reach its
/// sentinel (the deputy the tool replaces), and a plain `file write` works and user code reads it.
pub fn a_planted_link_never_redirects_a_write() -> Result<(), String> {
    needs_isolation()?;
    let w = Work::new("g8flink");
    let sentinel = w.sentinel("sentinel", "SENTINEL-g8-files\n");
    let decoy = w.sentinel("decoy", "DECOY-g8-files\n");
    let planted = w.root_only.join("planted");
    w.user(&format!(
        "ln -s {s} x && ln -s {d} z && ln -s {p} dangling && ln -s {r} d && echo mine > own && ln -s own to-own",
        s = sentinel.path(),
        d = decoy.path(),
        p = planted.display(),
        r = w.root_only.display()
    ))?;
    // The deputy this replaces: root writing z as a path follows user code's link.
    std::fs::write(w.path("z"), "written by root\n").unwrap();
    check(
        std::fs::read_to_string(&decoy.path).unwrap() == "written by root\n",
        || "control: a root-side write through the planted link did not reach the decoy".into(),
    )?;

    for link in ["x", "dangling", "to-own"] {
        for how in [&["write"][..], &["write", "--append"]] {
            let path = w.path(link);
            let args: Vec<&str> = how.iter().copied().chain([path.as_str()]).collect();
            let r = w.file("user", &args, b"EVIL\n");
            let e = typed(&r, 3, &["symlink"], &format!("file {args:?}"))?;
            check(e["errno"] == "ELOOP" && e["op"] == "write", || r.show())?;
        }
    }
    sentinel.unchanged("file write through the link x")?;
    check(!planted.exists(), || {
        "file write through a dangling link created its target".into()
    })?;
    check(
        std::fs::read_to_string(w.dir.join("own")).unwrap() == "mine\n",
        || "file write followed a link to a file of the work area".into(),
    )?;

    // A link in a middle component, and `..`, lead into the root-only directory: the context
    // cannot write there, so nothing is written (its mount is read-only, the files root's).
    let through = format!("{}/d/sentinel", w.dir.display());
    let new = format!("{}/d/new", w.dir.display());
    let name = w
        .root_only
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let up = format!("{}/../{name}/sentinel", w.dir.display());
    let up_new = format!("{}/../{name}/new", w.dir.display());
    for path in [&through, &new, &up, &up_new] {
        for how in ["write", "--append"] {
            let args: Vec<&str> = match how {
                "write" => vec!["write", path],
                _ => vec!["write", "--append", path],
            };
            let r = w.file("user", &args, b"EVIL\n");
            typed(
                &r,
                3,
                &["permission_denied", "refused"],
                &format!("file {args:?}"),
            )?;
        }
    }
    sentinel.unchanged("file write through d/ and ..")?;
    check(!w.root_only.join("new").exists(), || {
        "a write through a middle link created a file in the root-only directory".into()
    })?;

    // rm of a link removes the link, never what it names (d: a link to a directory, even -r).
    for (link, args) in [("x", vec!["rm"]), ("d", vec!["rm", "-r"])] {
        let path = w.path(link);
        let args: Vec<&str> = args.into_iter().chain([path.as_str()]).collect();
        w.file("user", &args, b"")
            .expect_code(0, &format!("file {args:?}"))?;
        check(std::fs::symlink_metadata(&path).is_err(), || {
            format!("{path} is still there")
        })?;
    }
    sentinel.unchanged("file rm of the links")?;
    check(w.root_only.join("decoy").exists(), || {
        "rm -r of a link to a directory removed what is in it".into()
    })?;

    // Control: a plain write works, and user code reads it back.
    let text = "hello from the control plane\n";
    w.file("user", &["write", &w.path("y")], text.as_bytes())
        .expect_code(0, "control: file write y")?;
    let r = w.user("cat y")?;
    check(r.stdout == text, || r.show())
}

/// A FIFO user code plants as the file to write or read, and a device, fail at once with error
/// `not_regular` (opened without blocking, refused by type): nothing waits for a reader or writer
/// that never comes. Control: the same operations on a regular file work.
pub fn fifos_and_devices_never_block_an_operation() -> Result<(), String> {
    needs_isolation()?;
    let w = Work::new("g8ffifo");
    w.user("mkfifo fifo && ln -s fifo to-fifo && echo data > plain")?;
    let fifo = w.path("fifo");
    let to_fifo = w.path("to-fifo");
    for (args, stdin) in [
        (vec!["write", fifo.as_str()], &b"x"[..]),
        (vec!["write", "--append", fifo.as_str()], &b"x"[..]),
        (vec!["read", fifo.as_str()], &b""[..]),
        (vec!["read", to_fifo.as_str()], &b""[..]),
        (vec!["read", "/dev/zero"], &b""[..]),
        (vec!["write", "/dev/null"], &b"x"[..]),
    ] {
        let start = Instant::now();
        let r = w.file("user", &args, stdin);
        check(!r.hung(), || format!("file {args:?} blocked: {}", r.show()))?;
        typed(&r, 3, &["not_regular"], &format!("file {args:?}"))?;
        check(start.elapsed() < Duration::from_secs(20), || {
            format!("file {args:?} took {:?}", start.elapsed())
        })?;
    }
    let plain = w.path("plain");
    let r = w.file("user", &["read", &plain], b"");
    r.expect_code(0, "control: file read of a regular file")?;
    check(r.stdout == "data\n", || r.show())
}
