//! Capability sets through `capget`/`capset` and the bounding set through `PR_CAPBSET_DROP`, without
//! allocating (safe between fork and exec).

use std::io;

use super::check;

/// The three capability sets of a thread as bit masks (bit n = capability n).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapSets {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `capget(2)` for this thread: all three sets in one call.
pub fn capget() -> io::Result<CapSets> {
    let mut hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: version 3 takes a header and an array of two cap_user_data_t, both valid and
    // writable for the call; the kernel writes at most that.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut hdr as *mut CapHeader,
            data.as_mut_ptr(),
        )
    };
    check(ret)?;
    let join = |f: fn(&CapData) -> u32| u64::from(f(&data[0])) | (u64::from(f(&data[1])) << 32);
    Ok(CapSets {
        effective: join(|d| d.effective),
        permitted: join(|d| d.permitted),
        inheritable: join(|d| d.inheritable),
    })
}

/// `capset(2)` for this thread: all three sets in one call (the kernel also drops from the
/// ambient set whatever is no longer both permitted and inheritable).
pub fn capset(sets: CapSets) -> io::Result<()> {
    let hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let split = |m: u64| [m as u32, (m >> 32) as u32];
    let (e, p, i) = (
        split(sets.effective),
        split(sets.permitted),
        split(sets.inheritable),
    );
    let data = [0, 1].map(|n| CapData {
        effective: e[n],
        permitted: p[n],
        inheritable: i[n],
    });
    // SAFETY: header and the two-element data array are valid for the call; the kernel only
    // reads them.
    let ret = unsafe { libc::syscall(libc::SYS_capset, &hdr as *const CapHeader, data.as_ptr()) };
    check(ret).map(drop)
}

/// `prctl(PR_CAPBSET_DROP, cap)`: remove `cap` from this thread's bounding set (a no-op when it
/// is not in it). EINVAL means the running kernel knows no capability with that number.
pub fn capbset_drop(cap: u32) -> io::Result<()> {
    // SAFETY: PR_CAPBSET_DROP takes a capability number and touches no memory.
    let ret = unsafe {
        libc::prctl(
            libc::PR_CAPBSET_DROP,
            cap as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    check(ret.into()).map(drop)
}
