//! Contents in and out: one fixed buffer, a chunk at a time, whatever the size of the file.

use std::os::fd::{AsRawFd, BorrowedFd};

/// The size of the one buffer contents stream through.
pub const CHUNK: usize = 128 * 1024;

/// Which side of a copy failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    From,
    To,
}

/// Copy everything from `from` to `to` through `buf`, a chunk at a time (nothing held beyond
/// it); a non-blocking end (a caller's pipe may be one) is waited for with poll. Returns the
/// bytes copied, or the side that failed and its error.
pub fn copy(
    from: BorrowedFd<'_>,
    to: BorrowedFd<'_>,
    buf: &mut [u8],
) -> Result<u64, (Side, std::io::Error)> {
    use nix::errno::Errno;
    let mut total = 0u64;
    loop {
        let n = match nix::unistd::read(from.as_raw_fd(), buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => {
                wait(from, nix::poll::PollFlags::POLLIN).map_err(|e| (Side::From, e))?;
                continue;
            }
            Err(e) => return Err((Side::From, e.into())),
        };
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            match nix::unistd::write(to, rest) {
                Ok(k) => rest = &rest[k..],
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => {
                    wait(to, nix::poll::PollFlags::POLLOUT).map_err(|e| (Side::To, e))?
                }
                Err(e) => return Err((Side::To, e.into())),
            }
        }
        total += n as u64;
    }
}

/// Wait until `fd` is ready for `what`.
fn wait(fd: BorrowedFd<'_>, what: nix::poll::PollFlags) -> std::io::Result<()> {
    let mut fds = [nix::poll::PollFd::new(fd, what)];
    loop {
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;
    use std::os::fd::AsFd;

    #[test]
    fn copy_streams_everything_through_a_small_buffer() {
        use std::io::Read as _;
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (r, w) = std::io::pipe().unwrap();
        let (out_r, out_w) = std::io::pipe().unwrap();
        let feed = {
            let data = data.clone();
            std::thread::spawn(move || {
                let mut w = w;
                w.write_all(&data).unwrap();
            })
        };
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut out_r = out_r;
            out_r.read_to_end(&mut got).unwrap();
            got
        });
        let mut buf = [0u8; 4096];
        let n = copy(r.as_fd(), out_w.as_fd(), &mut buf).unwrap();
        drop(out_w);
        feed.join().unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(reader.join().unwrap(), data);
    }

    #[test]
    fn a_closed_reader_is_an_error_of_the_writing_side() {
        let (r, w) = std::io::pipe().unwrap();
        drop(r);
        let src = std::fs::File::open("/dev/zero").unwrap();
        let mut buf = [0u8; 16];
        // SIGPIPE is ignored by the test harness's runtime: EPIPE comes back.
        let (side, e) = copy(src.as_fd(), w.as_fd(), &mut buf).unwrap_err();
        assert_eq!(side, Side::To);
        assert_eq!(e.raw_os_error(), Some(libc::EPIPE));
    }
}
