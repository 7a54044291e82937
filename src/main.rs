//! sbx-exec: the whole program is [`sbx_exec::commands::main`].
//!
//! C's `main`, not Rust's: the standard runtime's start-up reads /proc/self/maps and installs
//! stack-overflow handlers before `main` on every launch; sbx-exec does the two parts of it that
//! it needs itself ([`sbx_exec::sys::startup`]). `std::env::args` still works (glibc hands
//! argc/argv to the runtime's initializer), and `std::process::exit` still flushes stdout.
//! (The test harness brings its own `main`: this file has no tests.)
#![cfg_attr(not(test), no_main)]
#![deny(unsafe_code)]

#[cfg(not(test))]
// `no_mangle` is the one unsafe attribute outside `sys`: this is C's `main`, called once by the
// C runtime with the arguments it was given.
#[allow(unsafe_code)]
#[no_mangle]
extern "C" fn main(
    _argc: std::ffi::c_int,
    _argv: *const *const std::ffi::c_char,
) -> std::ffi::c_int {
    sbx_exec::sys::startup();
    sbx_exec::commands::main()
}
