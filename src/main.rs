//! sbx-exec: the whole program is [`sbx_exec::commands::main`].

fn main() {
    sbx_exec::commands::main()
}
